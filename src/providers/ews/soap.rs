//! Pure SOAP for EWS: building the request envelopes of the operations the provider uses
//! (FindFolder, GetFolder, SyncFolderItems, GetItem, CreateItem, UpdateItem, DeleteItem, and for
//! the contact photo GetAttachment, CreateAttachment, DeleteAttachment) and
//! reading their responses into typed values. No I/O; parsing never panics: hostile or broken
//! XML becomes an [`EwsError`] (the XML layer is the bounded, DTD-refusing reader of
//! [`crate::dav::xml`]).
//!
//! Every response message carries `ResponseClass` and `ResponseCode` (MS-OXWSCDATA
//! `ResponseMessageType`); a throttled server answers either a SOAP fault `ErrorServerBusy` or a
//! response message with that code, both with `MessageXml/Value Name="BackOffMilliseconds"`
//! (providers.md §4), which [`EwsError::back_off`] reads.

use std::time::Duration;

use crate::dav::names::QName;
use crate::dav::xml::{self, Element, XmlError};

use super::names::{
    attr, class, code, el, op, BACK_OFF_MILLISECONDS, DISTINGUISHED_CONTACTS, NS_ERRORS,
    NS_MESSAGES, NS_SOAP, NS_TYPES, SERVER_VERSION, SYNC_SCOPE_NORMAL_ITEMS,
};

/// Why an EWS response could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EwsError {
    /// The body is not well-formed (or hostile) XML.
    #[error("EWS response is not readable XML: {0}")]
    Xml(#[from] XmlError),
    /// A SOAP fault (HTTP 500 usually).
    #[error("EWS SOAP fault {code}: {message}")]
    Fault {
        /// The EWS response code (`ErrorServerBusy`, …) or the bare faultcode.
        code: String,
        /// `faultstring`.
        message: String,
        /// `BackOffMilliseconds`, when the fault carried one.
        back_off: Option<Duration>,
    },
    /// A response message with `ResponseClass="Error"`.
    #[error("EWS error {code}: {message}")]
    Response {
        /// `ResponseCode`.
        code: String,
        /// `MessageText`.
        message: String,
        /// `BackOffMilliseconds`, when present.
        back_off: Option<Duration>,
    },
    /// The XML is well-formed but not the shape the operation answers with.
    #[error("unexpected EWS response shape: {0}")]
    Shape(String),
}

impl EwsError {
    /// The EWS response code, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            EwsError::Fault { code, .. } | EwsError::Response { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The server-requested back-off for a throttling error (`ErrorServerBusy`, or an
    /// `ErrorInternalServerError` wrapping one, or `ErrorExceededConnectionCount`).
    pub fn back_off(&self) -> Option<Option<Duration>> {
        match self {
            EwsError::Fault {
                code: c,
                message,
                back_off,
            }
            | EwsError::Response {
                code: c,
                message,
                back_off,
            } => {
                let busy = c == code::SERVER_BUSY
                    || c == code::EXCEEDED_CONNECTION_COUNT
                    || (c == code::INTERNAL_SERVER_ERROR
                        && (back_off.is_some() || message.contains(code::SERVER_BUSY)));
                busy.then_some(*back_off)
            }
            _ => None,
        }
    }
}

fn t(local: &'static str) -> QName {
    QName::new_static(NS_TYPES, local)
}

fn m(local: &'static str) -> QName {
    QName::new_static(NS_MESSAGES, local)
}

fn soap(local: &'static str) -> QName {
    QName::new_static(NS_SOAP, local)
}

/// A `t:` element.
pub fn t_el(local: &'static str) -> Element {
    Element::new(&t(local))
}

fn m_el(local: &'static str) -> Element {
    Element::new(&m(local))
}

/// The SOAPAction of an operation (MS-OXWSCDATA: `<messages namespace>/<operation>`).
pub fn soap_action(operation: &str) -> String {
    format!("{NS_MESSAGES}/{operation}")
}

/// Wraps an operation element in the SOAP envelope with `RequestServerVersion`.
pub fn envelope(operation: Element) -> String {
    let header = Element::new(&soap("Header"))
        .with_child(t_el("RequestServerVersion").with_attr("Version", SERVER_VERSION));
    let root = Element::new(&soap(el::ENVELOPE))
        .with_child(header)
        .with_child(Element::new(&soap(el::BODY)).with_child(operation));
    xml::render(&root)
}

/// A folder reference: the distinguished `contacts` folder or a folder id.
pub fn folder_ref(folder: &str) -> Element {
    if folder.eq_ignore_ascii_case(DISTINGUISHED_CONTACTS) {
        t_el("DistinguishedFolderId").with_attr(attr::ID, DISTINGUISHED_CONTACTS)
    } else {
        t_el(el::FOLDER_ID).with_attr(attr::ID, folder)
    }
}

fn field_uri(uri: &str) -> Element {
    t_el("FieldURI").with_attr("FieldURI", uri)
}

fn folder_shape() -> Element {
    m_el("FolderShape")
        .with_child(t_el("BaseShape").with_text("IdOnly"))
        .with_child(t_el("AdditionalProperties").with_children([
            field_uri("folder:DisplayName"),
            field_uri("folder:FolderClass"),
            field_uri("folder:ParentFolderId"),
        ]))
}

/// `FindFolder` with deep traversal under the distinguished contacts folder, one indexed page
/// (MS-OXWSFOLD §3.1.4.6; providers.md §4 "Folders").
pub fn find_folder(offset: u32, max: u32) -> String {
    envelope(
        m_el(op::FIND_FOLDER)
            .with_attr("Traversal", "Deep")
            .with_child(folder_shape())
            .with_child(
                m_el("IndexedPageFolderView")
                    .with_attr("MaxEntriesReturned", max.to_string())
                    .with_attr("Offset", offset.to_string())
                    .with_attr("BasePoint", "Beginning"),
            )
            .with_child(m_el("ParentFolderIds").with_child(folder_ref(DISTINGUISHED_CONTACTS))),
    )
}

/// `GetFolder` for one folder (MS-OXWSFOLD §3.1.4.7).
pub fn get_folder(folder: &str) -> String {
    envelope(
        m_el(op::GET_FOLDER)
            .with_child(folder_shape())
            .with_child(m_el("FolderIds").with_child(folder_ref(folder))),
    )
}

/// `SyncFolderItems` (MS-OXWSSYNC §3.1.4.2): `IdOnly`, the folder, the state (left out on the
/// first call), `MaxChangesReturned`, `SyncScope=NormalItems`.
pub fn sync_folder_items(folder: &str, state: Option<&str>, max_changes: u32) -> String {
    let mut req = m_el(op::SYNC_FOLDER_ITEMS)
        .with_child(m_el("ItemShape").with_child(t_el("BaseShape").with_text("IdOnly")))
        .with_child(m_el("SyncFolderId").with_child(folder_ref(folder)));
    if let Some(state) = state.filter(|s| !s.is_empty()) {
        req.push(m_el(el::SYNC_STATE).with_text(state));
    }
    req.push(m_el("MaxChangesReturned").with_text(max_changes.to_string()));
    req.push(m_el("SyncScope").with_text(SYNC_SCOPE_NORMAL_ITEMS));
    envelope(req)
}

/// The `ExtendedFieldURI` of our CRM id property.
pub fn crm_id_field_uri() -> Element {
    t_el(el::EXTENDED_FIELD_URI)
        .with_attr(attr::PROPERTY_SET_ID, super::names::CRM_ID_PROPERTY_SET)
        .with_attr(attr::PROPERTY_NAME, super::names::CRM_ID_PROPERTY_NAME)
        .with_attr("PropertyType", "String")
}

/// `GetItem` for a batch of ids with every contact property, the body as text and our CRM id
/// property (MS-OXWSCORE §3.1.4.4).
pub fn get_item(ids: &[&str]) -> String {
    envelope(
        m_el(op::GET_ITEM)
            .with_child(
                m_el("ItemShape")
                    .with_child(t_el("BaseShape").with_text("AllProperties"))
                    .with_child(t_el("BodyType").with_text("Text"))
                    .with_child(t_el("AdditionalProperties").with_children([
                        field_uri(super::names::FIELD_ITEM_ATTACHMENTS),
                        crm_id_field_uri(),
                    ])),
            )
            .with_child(
                m_el("ItemIds").with_children(
                    ids.iter()
                        .map(|id| t_el(el::ITEM_ID).with_attr(attr::ID, *id)),
                ),
            ),
    )
}

/// `CreateItem` of one `t:Contact` in `folder` (MS-OXWSCORE §3.1.4.2).
pub fn create_item(folder: &str, contact: Element) -> String {
    envelope(
        m_el(op::CREATE_ITEM)
            .with_child(m_el("SavedItemFolderId").with_child(folder_ref(folder)))
            .with_child(m_el(el::ITEMS).with_child(contact)),
    )
}

/// `ConflictResolution` of UpdateItem (MS-OXWSCORE `ConflictResolutionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictResolution {
    /// A stale ChangeKey fails with `ErrorIrresolvableConflict`.
    NeverOverwrite,
    /// The server merges non-conflicting changes (the EWS default).
    AutoResolve,
    /// Our values win whatever the ChangeKey.
    AlwaysOverwrite,
}

impl ConflictResolution {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictResolution::NeverOverwrite => "NeverOverwrite",
            ConflictResolution::AutoResolve => "AutoResolve",
            ConflictResolution::AlwaysOverwrite => "AlwaysOverwrite",
        }
    }
}

/// One change of an `UpdateItem` (MS-OXWSCORE `SetItemFieldType` / `DeleteItemFieldType`).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldUpdate {
    /// `SetItemField`: the field path and a `t:Contact` holding the new value.
    Set {
        /// `FieldURI`, `IndexedFieldURI` or `ExtendedFieldURI`.
        path: Element,
        /// `t:Contact` with just that value.
        contact: Element,
    },
    /// `DeleteItemField`.
    Delete {
        /// The field path.
        path: Element,
    },
}

/// A plain field path.
pub fn path(uri: &str) -> Element {
    field_uri(uri)
}

/// An indexed field path (`contacts:EmailAddress` + `EmailAddress1`, …).
pub fn indexed_path(uri: &str, index: &str) -> Element {
    t_el("IndexedFieldURI")
        .with_attr("FieldURI", uri)
        .with_attr("FieldIndex", index)
}

/// `UpdateItem` of one item with its ChangeKey and an explicit `ConflictResolution`
/// (MS-OXWSCORE §3.1.4.9).
pub fn update_item(
    id: &str,
    change_key: &str,
    resolution: ConflictResolution,
    updates: Vec<FieldUpdate>,
) -> String {
    let updates = updates.into_iter().map(|u| match u {
        FieldUpdate::Set { path, contact } => {
            t_el("SetItemField").with_child(path).with_child(contact)
        }
        FieldUpdate::Delete { path } => t_el("DeleteItemField").with_child(path),
    });
    envelope(
        m_el(op::UPDATE_ITEM)
            .with_attr("ConflictResolution", resolution.as_str())
            .with_child(
                m_el("ItemChanges").with_child(
                    t_el("ItemChange")
                        .with_child(
                            t_el(el::ITEM_ID)
                                .with_attr(attr::ID, id)
                                .with_attr(attr::CHANGE_KEY, change_key),
                        )
                        .with_child(t_el("Updates").with_children(updates)),
                ),
            ),
    )
}

/// `DeleteItem` of one item (MS-OXWSCORE §3.1.4.3); `MoveToDeletedItems` keeps it recoverable.
pub fn delete_item(id: &str) -> String {
    envelope(
        m_el(op::DELETE_ITEM)
            .with_attr("DeleteType", "MoveToDeletedItems")
            .with_child(m_el("ItemIds").with_child(t_el(el::ITEM_ID).with_attr(attr::ID, id))),
    )
}

// ---------------------------------------------------------------------------------------
// Responses

/// Reads the `BackOffMilliseconds` value below `el` (a `MessageXml` or a fault `detail`).
fn back_off_in(el_: &Element) -> Option<Duration> {
    fn walk(e: &Element) -> Option<Duration> {
        if e.name == el::VALUE && e.attr(attr::NAME) == Some(BACK_OFF_MILLISECONDS) {
            return e
                .text_trimmed()
                .parse::<u64>()
                .ok()
                .map(Duration::from_millis);
        }
        e.children.iter().find_map(walk)
    }
    walk(el_)
}

/// Parses a SOAP response and returns its `Body` element, or the fault as an error.
pub fn parse_body(body: &[u8]) -> Result<Element, EwsError> {
    let root = xml::parse(body)?.expect_root(&soap(el::ENVELOPE))?;
    let body = root
        .children
        .into_iter()
        .find(|c| c.is(&soap(el::BODY)))
        .ok_or_else(|| EwsError::Shape("SOAP envelope without Body".into()))?;
    if let Some(fault) = body.child(&soap(el::FAULT)) {
        return Err(fault_error(fault));
    }
    Ok(body)
}

fn fault_error(fault: &Element) -> EwsError {
    let find = |name: &str| fault.children.iter().find(|c| c.name == name);
    let faultcode = find(el::FAULTCODE)
        .map(|c| c.text_trimmed().to_string())
        .unwrap_or_default();
    let message = find(el::FAULTSTRING)
        .map(|c| c.text_trimmed().to_string())
        .unwrap_or_default();
    let detail = find(el::DETAIL);
    // The EWS code is in detail/e:ResponseCode; else the local part of faultcode (`a:Error…`).
    let code = detail
        .and_then(|d| {
            d.children
                .iter()
                .find(|c| c.name == el::RESPONSE_CODE && (c.ns == NS_ERRORS || c.ns.is_empty()))
        })
        .map(|c| c.text_trimmed().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| faultcode.rsplit(':').next().unwrap_or_default().to_string());
    EwsError::Fault {
        code,
        message,
        back_off: detail.and_then(back_off_in),
    }
}

/// One response message of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMessage {
    /// `ResponseClass`.
    pub class: String,
    /// `ResponseCode`.
    pub code: String,
    /// `MessageText`.
    pub text: String,
    /// `BackOffMilliseconds`, when present.
    pub back_off: Option<Duration>,
    /// The whole `…ResponseMessage` element.
    pub element: Element,
}

impl ResponseMessage {
    /// True for `Success` and `Warning` (warnings are logged).
    pub fn is_ok(&self) -> bool {
        self.class == class::SUCCESS || self.class == class::WARNING
    }

    /// The error this message stands for.
    pub fn error(&self) -> EwsError {
        EwsError::Response {
            code: self.code.clone(),
            message: self.text.clone(),
            back_off: self.back_off,
        }
    }

    /// `Ok(self)` when successful, else the error.
    pub fn ok(self) -> Result<Self, EwsError> {
        if self.is_ok() {
            if self.class == class::WARNING {
                tracing::info!(code = %self.code, text = %self.text, "EWS warning");
            }
            Ok(self)
        } else {
            Err(self.error())
        }
    }
}

/// The response messages of `operation` in a SOAP `Body`.
pub fn response_messages(
    body: &Element,
    operation: &str,
) -> Result<Vec<ResponseMessage>, EwsError> {
    let resp_name = format!("{operation}Response");
    let resp = body
        .children
        .iter()
        .find(|c| c.ns == NS_MESSAGES && c.name == resp_name)
        .ok_or_else(|| EwsError::Shape(format!("no m:{resp_name} in the SOAP body")))?;
    let msgs = resp
        .child(&m(el::RESPONSE_MESSAGES))
        .ok_or_else(|| EwsError::Shape(format!("m:{resp_name} without m:ResponseMessages")))?;
    Ok(msgs
        .children
        .iter()
        .map(|msg| {
            let text_of = |name: &'static str| {
                msg.child(&m(name))
                    .map(|c| c.text_trimmed().to_string())
                    .unwrap_or_default()
            };
            let code_ = text_of(el::RESPONSE_CODE);
            ResponseMessage {
                class: msg
                    .attr(attr::RESPONSE_CLASS)
                    .unwrap_or_default()
                    .to_string(),
                code: if code_.is_empty() {
                    code::NO_ERROR.to_string()
                } else {
                    code_
                },
                text: text_of(el::MESSAGE_TEXT),
                back_off: msg.child(&m(el::MESSAGE_XML)).and_then(back_off_in),
                element: msg.clone(),
            }
        })
        .collect())
}

/// The single response message of a one-item request.
pub fn single_message(body: &Element, operation: &str) -> Result<ResponseMessage, EwsError> {
    response_messages(body, operation)?
        .into_iter()
        .next()
        .ok_or_else(|| EwsError::Shape(format!("{operation} answered no response message")))
}

/// The first throttling error among the response messages, if any (HTTP 200 with
/// `ErrorServerBusy`, providers.md §4).
pub fn busy_message(body: &Element) -> Option<EwsError> {
    let resp = body.children.iter().find(|c| c.ns == NS_MESSAGES)?;
    let msgs = resp.child(&m(el::RESPONSE_MESSAGES))?;
    msgs.children.iter().find_map(|msg| {
        let code_ = msg
            .child(&m(el::RESPONSE_CODE))
            .map(|c| c.text_trimmed().to_string())?;
        let err = EwsError::Response {
            code: code_,
            message: msg
                .child(&m(el::MESSAGE_TEXT))
                .map(|c| c.text_trimmed().to_string())
                .unwrap_or_default(),
            back_off: msg.child(&m(el::MESSAGE_XML)).and_then(back_off_in),
        };
        err.back_off().is_some().then_some(err)
    })
}

/// An item id with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemId {
    /// `Id`.
    pub id: String,
    /// `ChangeKey` (absent on deletions).
    pub change_key: Option<String>,
}

/// Reads a `t:ItemId` element.
pub fn item_id(e: &Element) -> Option<ItemId> {
    let id = e.attr(attr::ID).filter(|s| !s.is_empty())?.to_string();
    Some(ItemId {
        id,
        change_key: e
            .attr(attr::CHANGE_KEY)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

/// One change reported by SyncFolderItems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncChange {
    /// `t:Create` of a contact.
    Create(ItemId),
    /// `t:Update` of a contact.
    Update(ItemId),
    /// `t:Delete`.
    Delete(String),
    /// A Create/Update of something that is not a contact (distribution list, …), skipped.
    NotAContact(ItemId),
}

/// A parsed SyncFolderItems response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPage {
    /// The new `SyncState`.
    pub sync_state: String,
    /// `IncludesLastItemInRange`.
    pub last: bool,
    /// The changes, in order.
    pub changes: Vec<SyncChange>,
}

/// Reads a SyncFolderItems response. An `ErrorInvalidSyncStateData` (or any error message)
/// comes back as [`EwsError::Response`].
pub fn parse_sync_folder_items(body: &Element) -> Result<SyncPage, EwsError> {
    let msg = single_message(body, op::SYNC_FOLDER_ITEMS)?.ok()?;
    let e = &msg.element;
    let sync_state = e
        .child(&m(el::SYNC_STATE))
        .map(|s| s.text_trimmed().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| EwsError::Shape("SyncFolderItems answered no SyncState".into()))?;
    let last = match e
        .child(&m(el::INCLUDES_LAST_ITEM_IN_RANGE))
        .map(|s| s.text_trimmed().to_ascii_lowercase())
    {
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        other => {
            return Err(EwsError::Shape(format!(
                "IncludesLastItemInRange is {other:?}"
            )))
        }
    };
    let mut changes = Vec::new();
    if let Some(list) = e.child(&m(el::CHANGES)) {
        for ch in &list.children {
            if ch.ns != NS_TYPES {
                continue;
            }
            match ch.name.as_str() {
                el::CREATE | el::UPDATE => {
                    let Some(item) = ch.children.first() else {
                        continue;
                    };
                    let Some(id) = item.child(&t(el::ITEM_ID)).and_then(item_id) else {
                        tracing::warn!("SyncFolderItems change without an ItemId ignored");
                        continue;
                    };
                    changes.push(if item.name != el::CONTACT {
                        SyncChange::NotAContact(id)
                    } else if ch.name == el::CREATE {
                        SyncChange::Create(id)
                    } else {
                        SyncChange::Update(id)
                    });
                }
                el::DELETE => {
                    if let Some(id) = ch.child(&t(el::ITEM_ID)).and_then(item_id) {
                        changes.push(SyncChange::Delete(id.id));
                    }
                }
                // ReadFlagChange only concerns mail.
                _ => {}
            }
        }
    }
    Ok(SyncPage {
        sync_state,
        last,
        changes,
    })
}

/// The result of one item of a GetItem batch: the `t:Contact` (or other item) element, or
/// the per-item error.
pub type ItemResult = Result<Element, EwsError>;

/// Reads a GetItem response: one result per requested id, in request order.
pub fn parse_get_item(body: &Element) -> Result<Vec<ItemResult>, EwsError> {
    Ok(response_messages(body, op::GET_ITEM)?
        .into_iter()
        .map(|msg| {
            let msg = msg.ok()?;
            msg.element
                .child(&m(el::ITEMS))
                .and_then(|items| items.children.first().cloned())
                .ok_or_else(|| EwsError::Shape("GetItem message without an item".into()))
        })
        .collect())
}

/// Reads the id of the item a CreateItem or UpdateItem response reports.
pub fn parse_written_id(body: &Element, operation: &str) -> Result<ItemId, EwsError> {
    let msg = single_message(body, operation)?.ok()?;
    msg.element
        .child(&m(el::ITEMS))
        .and_then(|items| items.children.first())
        .and_then(|item| item.child(&t(el::ITEM_ID)))
        .and_then(item_id)
        .ok_or_else(|| EwsError::Shape(format!("{operation} answered no ItemId")))
}

/// `GetAttachment` of a batch of attachments (MS-OXWSATT §3.1.4.3).
pub fn get_attachment(ids: &[&str]) -> String {
    envelope(
        m_el(op::GET_ATTACHMENT).with_child(
            m_el(el::ATTACHMENT_IDS).with_children(
                ids.iter()
                    .map(|id| t_el(el::ATTACHMENT_ID).with_attr(attr::ID, *id)),
            ),
        ),
    )
}

/// `CreateAttachment` of a contact photo on `item` (MS-OXWSATT §3.1.4.1): a `FileAttachment`
/// named [`super::names::CONTACT_PHOTO_NAME`] with `IsContactPhoto` true and the bytes as
/// base64 `Content`, in schema order.
pub fn create_photo_attachment(item: &str, content_type: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    envelope(
        m_el(op::CREATE_ATTACHMENT)
            .with_child(m_el(el::PARENT_ITEM_ID).with_attr(attr::ID, item))
            .with_child(
                m_el(el::ATTACHMENTS).with_child(
                    t_el(el::FILE_ATTACHMENT)
                        .with_child(
                            t_el(el::ATTACHMENT_NAME).with_text(super::names::CONTACT_PHOTO_NAME),
                        )
                        .with_child(t_el(el::CONTENT_TYPE).with_text(content_type))
                        .with_child(t_el(el::IS_CONTACT_PHOTO).with_text("true"))
                        .with_child(
                            t_el(el::CONTENT)
                                .with_text(base64::prelude::BASE64_STANDARD.encode(bytes)),
                        ),
                ),
            ),
    )
}

/// `DeleteAttachment` of one attachment (MS-OXWSATT §3.1.4.2).
pub fn delete_attachment(id: &str) -> String {
    envelope(m_el(op::DELETE_ATTACHMENT).with_child(
        m_el(el::ATTACHMENT_IDS).with_child(t_el(el::ATTACHMENT_ID).with_attr(attr::ID, id)),
    ))
}

/// A file attachment read by GetAttachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// `AttachmentId Id`.
    pub id: String,
    /// `ContentType`.
    pub content_type: Option<String>,
    /// `Content`, decoded.
    pub bytes: Vec<u8>,
}

/// Reads a GetAttachment response: one result per requested id, in request order.
pub fn parse_get_attachment(
    body: &Element,
) -> Result<Vec<Result<FileContent, EwsError>>, EwsError> {
    use base64::Engine as _;
    Ok(response_messages(body, op::GET_ATTACHMENT)?
        .into_iter()
        .map(|msg| {
            let msg = msg.ok()?;
            let file = msg
                .element
                .child(&m(el::ATTACHMENTS))
                .and_then(|a| a.child(&t(el::FILE_ATTACHMENT)))
                .ok_or_else(|| EwsError::Shape("GetAttachment message without a file".into()))?;
            let id = file
                .child(&t(el::ATTACHMENT_ID))
                .and_then(|i| i.attr(attr::ID))
                .unwrap_or_default()
                .to_string();
            let content = file
                .child(&t(el::CONTENT))
                .map(|c| c.text_trimmed().to_string())
                .unwrap_or_default();
            let bytes = base64::prelude::BASE64_STANDARD
                .decode(content.as_bytes())
                .map_err(|e| EwsError::Shape(format!("attachment content is not base64: {e}")))?;
            Ok(FileContent {
                id,
                content_type: file
                    .child(&t(el::CONTENT_TYPE))
                    .map(|c| c.text_trimmed().to_string())
                    .filter(|c| !c.is_empty()),
                bytes,
            })
        })
        .collect())
}

/// The item an attachment change left: `RootItemId` / `RootItemChangeKey` of a
/// CreateAttachment's `AttachmentId` or of a DeleteAttachment's `RootItemId`.
pub fn parse_attachment_root(body: &Element, operation: &str) -> Result<ItemId, EwsError> {
    let msg = single_message(body, operation)?.ok()?;
    let holder = msg
        .element
        .child(&m(el::ATTACHMENTS))
        .and_then(|a| a.children.first())
        .and_then(|f| f.child(&t(el::ATTACHMENT_ID)))
        .or_else(|| msg.element.child(&m(el::ROOT_ITEM_ID)))
        .ok_or_else(|| EwsError::Shape(format!("{operation} answered no RootItemId")))?;
    let id = holder
        .attr(attr::ROOT_ITEM_ID)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| EwsError::Shape(format!("{operation} answered no RootItemId")))?;
    Ok(ItemId {
        id: id.to_string(),
        change_key: holder
            .attr(attr::ROOT_ITEM_CHANGE_KEY)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

/// A contact folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// `FolderId Id`.
    pub id: String,
    /// `ParentFolderId Id`.
    pub parent: Option<String>,
    /// `DisplayName`.
    pub name: String,
    /// `FolderClass`.
    pub class: String,
}

fn folder_info(f: &Element) -> Option<FolderInfo> {
    let id = f.child(&t(el::FOLDER_ID))?.attr(attr::ID)?.to_string();
    let text_of = |name: &'static str| {
        f.child(&t(name))
            .map(|c| c.text_trimmed().to_string())
            .unwrap_or_default()
    };
    Some(FolderInfo {
        id,
        parent: f
            .child(&t(el::PARENT_FOLDER_ID))
            .and_then(|p| p.attr(attr::ID))
            .map(str::to_string),
        name: text_of(el::DISPLAY_NAME),
        class: text_of(el::FOLDER_CLASS),
    })
}

fn folders_in(list: Option<&Element>) -> Vec<FolderInfo> {
    list.map(|l| l.children.iter().filter_map(folder_info).collect())
        .unwrap_or_default()
}

/// One FindFolder page: the folders, and the next offset when more remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPage {
    /// Folders of this page (every class; the caller filters).
    pub folders: Vec<FolderInfo>,
    /// `IndexedPagingOffset` when `IncludesLastItemInRange` is false.
    pub next_offset: Option<u32>,
}

/// Reads a FindFolder response.
pub fn parse_find_folder(body: &Element) -> Result<FolderPage, EwsError> {
    let msg = single_message(body, op::FIND_FOLDER)?.ok()?;
    let root = msg
        .element
        .child(&m(el::ROOT_FOLDER))
        .ok_or_else(|| EwsError::Shape("FindFolder answered no RootFolder".into()))?;
    let last = root
        .attr(attr::INCLUDES_LAST_ITEM_IN_RANGE)
        .is_none_or(|v| v.eq_ignore_ascii_case("true"));
    let next_offset = if last {
        None
    } else {
        root.attr(attr::INDEXED_PAGING_OFFSET)
            .and_then(|v| v.parse().ok())
    };
    Ok(FolderPage {
        folders: folders_in(root.child(&t(el::FOLDERS))),
        next_offset,
    })
}

/// Reads a GetFolder response (one folder).
pub fn parse_get_folder(body: &Element) -> Result<FolderInfo, EwsError> {
    let msg = single_message(body, op::GET_FOLDER)?.ok()?;
    folders_in(msg.element.child(&m(el::FOLDERS)))
        .into_iter()
        .next()
        .ok_or_else(|| EwsError::Shape("GetFolder answered no folder".into()))
}

/// Checks a DeleteItem response.
pub fn parse_delete_item(body: &Element) -> Result<(), EwsError> {
    single_message(body, op::DELETE_ITEM)?.ok().map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/ews")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn photo_attachment_requests_match_golden_and_answers_are_read() {
        let photo = fixture("photo.jpg");
        let req = create_photo_attachment("AAMkPHOTO=", "image/jpeg", &photo);
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/ews/create-attachment-photo.expected.xml");
        if std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &req).unwrap();
        }
        assert_eq!(req, std::fs::read_to_string(&path).unwrap());
        let get = get_attachment(&["a1", "a2"]);
        assert!(
            get.contains(":GetAttachment>") && get.contains(":AttachmentId Id=\"a2\"/>"),
            "{get}"
        );
        assert!(delete_attachment("a1").contains(":DeleteAttachment>"));

        let files =
            parse_get_attachment(&parse_body(&fixture("get-attachment-photo.xml")).unwrap())
                .unwrap();
        assert_eq!(files.len(), 2);
        let first = files[0].as_ref().unwrap();
        assert_eq!(first.bytes, photo);
        assert_eq!(first.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(
            files[1].as_ref().unwrap_err().code(),
            Some("ErrorItemNotFound")
        );

        let root = parse_attachment_root(
            &parse_body(&fixture("create-attachment-response.xml")).unwrap(),
            op::CREATE_ATTACHMENT,
        )
        .unwrap();
        assert_eq!(root.id, "AAMkPHOTO=");
        assert_eq!(root.change_key.as_deref(), Some("EQAAABYAAAPH2"));
        let root = parse_attachment_root(
            &parse_body(&fixture("delete-attachment-response.xml")).unwrap(),
            op::DELETE_ATTACHMENT,
        )
        .unwrap();
        assert_eq!(root.change_key.as_deref(), Some("EQAAABYAAAPH4"));
    }

    #[test]
    fn sync_folder_items_fixture_reads_create_update_delete() {
        let body = parse_body(&fixture("sync-folder-items.xml")).unwrap();
        let page = parse_sync_folder_items(&body).unwrap();
        assert!(!page.last);
        assert!(page.sync_state.starts_with("H4sIAAA"));
        assert_eq!(page.changes.len(), 3, "{:?}", page.changes);
        assert!(matches!(&page.changes[0], SyncChange::Create(i) if i.change_key.is_some()));
        assert!(matches!(&page.changes[1], SyncChange::Update(_)));
        assert!(matches!(&page.changes[2], SyncChange::Delete(_)));
    }

    #[test]
    fn invalid_sync_state_fixture_is_a_typed_error() {
        let body = parse_body(&fixture("sync-invalid-state.xml")).unwrap();
        let err = parse_sync_folder_items(&body).unwrap_err();
        assert_eq!(err.code(), Some(code::INVALID_SYNC_STATE_DATA));
        assert!(err.back_off().is_none());
    }

    #[test]
    fn server_busy_fault_fixture_carries_the_back_off() {
        let err = parse_body(&fixture("fault-server-busy.xml")).unwrap_err();
        assert_eq!(err.code(), Some(code::SERVER_BUSY));
        assert_eq!(err.back_off(), Some(Some(Duration::from_millis(5000))));
    }

    #[test]
    fn busy_inside_a_200_response_is_found() {
        let body = parse_body(&fixture("get-item-server-busy.xml")).unwrap();
        let busy = busy_message(&body).unwrap();
        assert_eq!(busy.back_off(), Some(Some(Duration::from_millis(5000))));
        let body = parse_body(&fixture("sync-folder-items.xml")).unwrap();
        assert!(busy_message(&body).is_none());
    }

    #[test]
    fn conflict_fixture_is_a_typed_error() {
        let body = parse_body(&fixture("update-item-conflict.xml")).unwrap();
        let err = parse_written_id(&body, op::UPDATE_ITEM).unwrap_err();
        assert_eq!(err.code(), Some(code::IRRESOLVABLE_CONFLICT));
    }

    #[test]
    fn find_folder_fixture_pages_and_reads_classes() {
        let body = parse_body(&fixture("find-folder.xml")).unwrap();
        let page = parse_find_folder(&body).unwrap();
        assert_eq!(page.next_offset, None);
        let classes: Vec<&str> = page.folders.iter().map(|f| f.class.as_str()).collect();
        assert!(classes.contains(&"IPF.Contact"));
        assert!(classes.iter().any(|c| c.starts_with("IPF.Contact.")));
    }

    #[test]
    fn requests_are_well_formed_and_name_their_parts() {
        let req = sync_folder_items("AAMk=", None, 100);
        let root = xml::parse(req.as_bytes()).unwrap();
        let body = root.child(&soap(el::BODY)).unwrap();
        let op_el = body.child(&m(op::SYNC_FOLDER_ITEMS)).unwrap();
        assert!(op_el.child(&m(el::SYNC_STATE)).is_none());
        assert_eq!(op_el.child(&m("MaxChangesReturned")).unwrap().text, "100");
        let req = sync_folder_items("contacts", Some("H4s<&>"), 5);
        assert!(req.contains("DistinguishedFolderId"));
        assert!(req.contains("H4s&lt;&amp;&gt;"));
        let req = update_item(
            "I\"d",
            "CK",
            ConflictResolution::NeverOverwrite,
            vec![FieldUpdate::Delete {
                path: indexed_path("contacts:EmailAddress", "EmailAddress2"),
            }],
        );
        let root = xml::parse(req.as_bytes()).unwrap();
        let upd = root
            .child(&soap(el::BODY))
            .unwrap()
            .child(&m(op::UPDATE_ITEM))
            .unwrap();
        assert_eq!(upd.attr("ConflictResolution"), Some("NeverOverwrite"));
        assert!(req.contains("I&quot;d"));
    }

    #[test]
    fn garbage_never_panics() {
        for input in [
            &b""[..],
            b"<x/>",
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>",
            b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"/>",
            b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body/></s:Envelope>",
            b"\xff\xfe",
        ] {
            if let Ok(body) = parse_body(input) {
                assert!(parse_sync_folder_items(&body).is_err());
                assert!(parse_get_item(&body).is_err());
                assert!(parse_find_folder(&body).is_err());
            }
        }
    }
}
