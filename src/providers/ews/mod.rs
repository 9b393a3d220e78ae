//! The Exchange Web Services provider (on-premises Exchange 2013/2016/2019): contact folders as
//! sync groups, `SyncFolderItems` for changes, `GetItem` in batches for contents, and
//! `CreateItem`/`UpdateItem`/`DeleteItem` for writes, over SOAP 1.1.
//!
//! Wire behaviour (providers.md §4):
//! - Sync groups: `GetFolder` on the distinguished `contacts` folder, then `FindFolder` with
//!   `Traversal="Deep"` below it, paged by [`names::FIND_COUNT_LIMIT`]; only folders whose
//!   `FolderClass` is exactly `IPF.Contact` (hidden system subclasses such as
//!   `IPF.Contact.RecipientCache` are not user folders), named by their path. The group id
//!   `contacts` also works and means the default folder.
//! - Pull: `SyncFolderItems` (`IdOnly`, `MaxChangesReturned` ≤ 512, `SyncScope=NormalItems`,
//!   no `SyncState` on the first call), one call per [`Page`], until
//!   `IncludesLastItemInRange=true`. Creates and updates are read with `GetItem` in batches
//!   (a contact gone meanwhile becomes a deletion; an unreadable one is reported
//!   [`RemoteChange::Invalid`]); `t:Delete` is a deletion; non-contacts are skipped. The cursor is
//!   the whole SyncState, prefixed with the kind of run ([`CURSOR_FULL`] / [`CURSOR_DELTA`]).
//! - `ErrorInvalidSyncStateData` restarts the pull once without a state, as a
//!   [`PullKind::FullListing`]; the engine matches items by their stable ItemId, so the resync
//!   creates no duplicates.
//! - Writes: `CreateItem` (the CRM id in an extended property), `UpdateItem` with the
//!   ChangeKey and `ConflictResolution="NeverOverwrite"` (`ErrorIrresolvableConflict` /
//!   `ErrorStaleObject` → [`ProviderError::Conflict`], so the engine's policy re-merges), and
//!   `DeleteItem` (`MoveToDeletedItems`, after checking the ChangeKey). Each write reads the
//!   item back so the engine stores the ChangeKey and card the server holds.
//! - Throttling and auth: see [`client`]; NTLM's connection-bound handshake: see [`ntlm`].
//!
//! - Photos (providers.md §4): the contact photo is the file attachment with `IsContactPhoto`
//!   true that `GetItem` lists (`item:Attachments`). A pull reads the bytes with one
//!   `GetAttachment` per `GetItem` batch, only for the created/updated contacts that have one,
//!   and puts them on the card as an inline `PHOTO` ([`crate::vcard::photo`]; one over
//!   `MAX_PHOTO_BYTES` is left off with a warning). A write compares the card's photo with the
//!   one Exchange holds (the engine's stored card, [`Provider::update_with_base`]): unchanged →
//!   no attachment request; changed → `DeleteAttachment` of the old photo, then
//!   `CreateAttachment` (`ContactPicture.jpg`, `IsContactPhoto` true, base64 `Content`);
//!   removed → `DeleteAttachment`. An attachment change gives the item a new ChangeKey: the
//!   written etag is the `RootItemChangeKey` the last attachment call answered, so the next
//!   `UpdateItem` is no false conflict, and the provider remembers it with the photo so the
//!   `SyncFolderItems` echo of its own write reads no attachment.
//!
//! Slot overflow: as for Graph, [`Written::card`] is the stored card plus what EWS cannot hold,
//! and [`mapping::reattach_overflow`] lets the engine do the same for pulled cards.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::http::{AccessTokenSource, NetworkPolicy, RetryPolicy};
use super::{
    OwnPhotoWrites, Page, Provider, ProviderError, ProviderKind, PullKind, RemoteChange,
    RemoteItem, SyncGroup, SyncGroupKind, Written,
};
use crate::vcard::photo::{inline_entry, photo_change, photo_entry, with_photo, PhotoChange};
use crate::vcard::{VCard, VCardEntry};

pub mod autodiscover;
pub mod autodiscover_parse;
pub mod client;
pub mod mapping;
pub mod names;
pub mod ntlm;
pub mod soap;

pub use autodiscover::{autodiscover, Discovered};
pub use client::EwsAuth;
use client::{ews_error, EwsClient};
use mapping::{
    contact_element, from_ews, reattach_overflow, to_ews, updates, EwsContact, PhotoAttachment,
};
use names::{code, op, DISTINGUISHED_CONTACTS, FIND_COUNT_LIMIT, FOLDER_CLASS_CONTACT};
use soap::{ConflictResolution, EwsError, SyncChange};

/// Cursor prefix: the SyncState pages a full listing (the first run, or a resync).
pub const CURSOR_FULL: &str = "full:";
/// Cursor prefix: the SyncState pages (or ends) an incremental run.
pub const CURSOR_DELTA: &str = "delta:";

/// How to reach one mailbox over EWS.
#[derive(Debug, Clone)]
pub struct EwsConfig {
    /// The EWS endpoint, e.g. `https://mail.contoso.com/EWS/Exchange.asmx` (see
    /// [`autodiscover()`]).
    pub url: String,
    /// Credentials.
    pub auth: EwsAuth,
    /// `X-AnchorMailbox` (the mailbox's SMTP address), for servers behind a load balancer or
    /// app-only access.
    pub anchor_mailbox: Option<String>,
    /// `MaxChangesReturned` per SyncFolderItems page (clamped to 1..=512).
    pub page_size: u32,
    /// Items per `GetItem` request.
    pub get_item_batch: usize,
    /// Retry policy for 503/429/`ErrorServerBusy`/transport failures.
    pub retry: RetryPolicy,
    /// The addresses requests may reach: the endpoint is checked when the provider is built,
    /// and the NTLM connection's own client is built under it. The client given to
    /// [`EwsProvider::with_http`] should be built under the same policy
    /// ([`NetworkPolicy::client_builder`]).
    pub network: NetworkPolicy,
}

impl EwsConfig {
    /// Basic authentication against `url`.
    pub fn basic(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self::with_auth(
            url,
            EwsAuth::Basic {
                username: username.into(),
                password: password.into(),
            },
        )
    }

    /// NTLM authentication against `url` (`DOMAIN\\user` or the UPN).
    pub fn ntlm(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self::with_auth(
            url,
            EwsAuth::Ntlm {
                username: username.into(),
                password: password.into(),
            },
        )
    }

    /// OAuth bearer authentication against `url`.
    pub fn bearer(url: impl Into<String>, tokens: Arc<dyn AccessTokenSource>) -> Self {
        Self::with_auth(url, EwsAuth::Bearer(tokens))
    }

    /// `auth` against `url`, with the default page sizes and retry policy.
    pub fn with_auth(url: impl Into<String>, auth: EwsAuth) -> Self {
        Self {
            url: url.into(),
            auth,
            anchor_mailbox: None,
            page_size: 100,
            get_item_batch: 50,
            retry: RetryPolicy::default(),
            network: NetworkPolicy::unrestricted(),
        }
    }
}

/// An Exchange mailbox's contacts as a [`Provider`].
pub struct EwsProvider {
    client: EwsClient,
    page_size: u32,
    batch: usize,
    /// Our own writes not yet seen by SyncFolderItems (their photo is known).
    own_writes: OwnPhotoWrites,
}

fn parse_cursor(cursor: &str) -> (PullKind, &str) {
    if let Some(s) = cursor.strip_prefix(CURSOR_FULL) {
        (PullKind::FullListing, s)
    } else if let Some(s) = cursor.strip_prefix(CURSOR_DELTA) {
        (PullKind::Incremental, s)
    } else {
        (PullKind::Incremental, cursor)
    }
}

impl EwsProvider {
    /// A provider for the mailbox in `config`.
    pub fn new(config: EwsConfig) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        Self::with_http(config, http)
    }

    /// Like [`EwsProvider::new`] with a caller-supplied HTTP client.
    pub fn with_http(config: EwsConfig, http: reqwest::Client) -> Result<Self, ProviderError> {
        Ok(Self {
            client: EwsClient::new(
                http,
                &config.url,
                config.auth,
                config.anchor_mailbox,
                config.retry,
                &config.network,
            )?,
            page_size: config.page_size.clamp(1, names::MAX_CHANGES_RETURNED_LIMIT),
            batch: config.get_item_batch.max(1),
            own_writes: OwnPhotoWrites::default(),
        })
    }

    /// Reads items by id, in batches; one result per id (`None`: the item is gone), with the
    /// contact-photo attachment it lists (its bytes are not read here).
    async fn get_items(&self, ids: &[String]) -> Result<HashMap<String, ItemRead>, ProviderError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(self.batch) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let body = self
                .client
                .call(op::GET_ITEM, &soap::get_item(&refs))
                .await?;
            let results = soap::parse_get_item(&body).map_err(ews_error)?;
            if results.len() != chunk.len() {
                return Err(ProviderError::Protocol(format!(
                    "GetItem answered {} messages for {} ids",
                    results.len(),
                    chunk.len()
                )));
            }
            for (id, result) in chunk.iter().zip(results) {
                let value = match result {
                    Ok(element) => match EwsContact::from_element(&element) {
                        Ok(contact) => Ok(Some((
                            RemoteItem {
                                id: contact
                                    .item_id
                                    .as_ref()
                                    .map_or_else(|| id.clone(), |i| i.id.clone()),
                                etag: contact.etag(),
                                card: from_ews(&contact).card,
                            },
                            contact.photo.clone(),
                        ))),
                        Err(reason) => Err(reason),
                    },
                    Err(e) if e.code() == Some(code::ITEM_NOT_FOUND) => Ok(None),
                    Err(e) => Err(e.to_string()),
                };
                out.insert(id.clone(), value);
            }
        }
        Ok(out)
    }

    /// Puts each item's photo on its card: known from our own write at that ChangeKey, else
    /// read with one `GetAttachment` per batch. A photo that cannot be read or is too large is
    /// left off with a warning; the item goes on.
    async fn with_photos(
        &self,
        items: Vec<(RemoteItem, Option<PhotoAttachment>)>,
    ) -> Result<Vec<RemoteItem>, ProviderError> {
        let mut photos: HashMap<String, Option<VCardEntry>> = HashMap::new();
        let mut to_read: Vec<(String, PhotoAttachment)> = Vec::new();
        for (item, att) in &items {
            match (self.own_writes.take(&item.id, item.etag.as_deref()), att) {
                (Some(known), _) => {
                    photos.insert(item.id.clone(), known);
                }
                (None, Some(att)) => to_read.push((item.id.clone(), att.clone())),
                (None, None) => {}
            }
        }
        for chunk in to_read.chunks(self.batch) {
            let ids: Vec<&str> = chunk.iter().map(|(_, a)| a.id.as_str()).collect();
            let body = self
                .client
                .call(op::GET_ATTACHMENT, &soap::get_attachment(&ids))
                .await?;
            let files = soap::parse_get_attachment(&body).map_err(ews_error)?;
            for ((item_id, att), file) in chunk.iter().zip(files) {
                let entry = file.map_err(|e| e.to_string()).and_then(|f| {
                    let ct = f.content_type.or_else(|| att.content_type.clone());
                    inline_entry(f.bytes, ct.as_deref()).map_err(|e| e.to_string())
                });
                match entry {
                    Ok(e) => {
                        photos.insert(item_id.clone(), Some(e));
                    }
                    Err(error) => {
                        tracing::warn!(contact = %item_id, %error, "EWS contact photo left off the card");
                    }
                }
            }
        }
        Ok(items
            .into_iter()
            .map(|(mut item, _)| {
                if let Some(photo) = photos.remove(&item.id) {
                    item.card = with_photo(&item.card, photo);
                }
                item
            })
            .collect())
    }

    /// Brings the contact photo of `id` in line with `card`'s when it differs from `held`'s.
    /// `current` is the photo attachment the item has now. Returns the photo Exchange then
    /// holds and the item's ChangeKey after the last attachment change (if any).
    async fn write_photo(
        &self,
        id: &str,
        current: Option<&PhotoAttachment>,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<(Option<VCardEntry>, Option<String>), ProviderError> {
        match photo_change(held, card) {
            PhotoChange::Unchanged => Ok((photo_entry(card), None)),
            PhotoChange::Unwritable(reason) => {
                tracing::warn!(contact = id, %reason, "contact photo not written to EWS");
                Ok((held.and_then(photo_entry), None))
            }
            PhotoChange::Remove => Ok((None, self.remove_photo(id, current).await?)),
            PhotoChange::Set { media_type, bytes } => {
                self.remove_photo(id, current).await?;
                let req = soap::create_photo_attachment(id, media_type, bytes);
                let body = self.client.call(op::CREATE_ATTACHMENT, &req).await?;
                let root =
                    soap::parse_attachment_root(&body, op::CREATE_ATTACHMENT).map_err(ews_error)?;
                Ok((photo_entry(card), root.change_key))
            }
        }
    }

    /// `DeleteAttachment` of the item's photo, if it has one; the item's ChangeKey after it.
    async fn remove_photo(
        &self,
        id: &str,
        current: Option<&PhotoAttachment>,
    ) -> Result<Option<String>, ProviderError> {
        let Some(att) = current else {
            return Ok(None);
        };
        let body = self
            .client
            .call(op::DELETE_ATTACHMENT, &soap::delete_attachment(&att.id))
            .await?;
        match soap::parse_attachment_root(&body, op::DELETE_ATTACHMENT) {
            Ok(root) => Ok(root.change_key),
            // Already gone.
            Err(e) if e.code() == Some(code::ITEM_NOT_FOUND) => {
                tracing::debug!(contact = id, "the photo attachment was already gone");
                Ok(None)
            }
            Err(e) => Err(ews_error(e)),
        }
    }

    /// Turns SyncFolderItems changes into engine changes, reading creates/updates in batches.
    async fn changes_of(
        &self,
        changes: Vec<SyncChange>,
    ) -> Result<Vec<RemoteChange>, ProviderError> {
        // The same item twice in one page: the last occurrence is the newest state.
        let mut last: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<(String, bool)> = Vec::new();
        for ch in changes {
            let (id, upsert) = match ch {
                SyncChange::Create(i) | SyncChange::Update(i) => (i.id, true),
                SyncChange::Delete(id) => (id, false),
                SyncChange::NotAContact(i) => {
                    tracing::debug!(id = %i.id, "skipping a non-contact item");
                    continue;
                }
            };
            last.insert(id.clone(), order.len());
            order.push((id, upsert));
        }
        let order: Vec<(String, bool)> = order
            .into_iter()
            .enumerate()
            .filter(|(i, (id, _))| last.get(id) == Some(i))
            .map(|(_, x)| x)
            .collect();
        let to_read: Vec<String> = order
            .iter()
            .filter(|(_, up)| *up)
            .map(|(id, _)| id.clone())
            .collect();
        let read = self.get_items(&to_read).await?;
        let mut found = Vec::new();
        let mut read: HashMap<String, Result<Option<RemoteItem>, String>> = read
            .into_iter()
            .filter_map(|(id, r)| match r {
                Ok(Some(pair)) => {
                    found.push(pair);
                    None
                }
                Ok(None) => Some((id, Ok(None))),
                Err(e) => Some((id, Err(e))),
            })
            .collect();
        for item in self.with_photos(found).await? {
            read.insert(item.id.clone(), Ok(Some(item)));
        }
        Ok(order
            .into_iter()
            .map(|(id, upsert)| {
                if !upsert {
                    return RemoteChange::Delete { id };
                }
                match read.remove(&id) {
                    Some(Ok(Some(item))) => RemoteChange::Upsert(item),
                    Some(Ok(None)) => RemoteChange::Delete { id },
                    Some(Err(reason)) => RemoteChange::Invalid { id, reason },
                    None => RemoteChange::Invalid {
                        id,
                        reason: "not returned by GetItem".into(),
                    },
                }
            })
            .collect())
    }

    /// Reads one item back after a write (its attachments listed, not read), then writes the
    /// photo when it differs from `held`'s.
    async fn written(
        &self,
        id: soap::ItemId,
        held: Option<&VCard>,
        sent: &VCard,
        mapped: &EwsContact,
    ) -> Result<Written, ProviderError> {
        let (mut w, current) = match self
            .get_items(std::slice::from_ref(&id.id))
            .await?
            .remove(&id.id)
        {
            Some(Ok(Some((item, photo)))) => (
                Written {
                    id: item.id,
                    etag: item.etag,
                    card: item.card,
                },
                photo,
            ),
            _ => (
                Written {
                    etag: id.change_key,
                    id: id.id,
                    card: from_ews(mapped).card,
                },
                None,
            ),
        };
        let (photo, change_key) = self
            .write_photo(&w.id, current.as_ref(), held, sent)
            .await?;
        if change_key.is_some() {
            w.etag = change_key;
        }
        self.own_writes
            .remember(&w.id, w.etag.as_deref(), photo.clone());
        // The photo replaces every PHOTO; what EWS cannot hold (a second one too) is re-added.
        w.card = reattach_overflow(&with_photo(&w.card, photo), sent);
        Ok(w)
    }
}

/// One item as `GetItem` read it: the item and its contact-photo attachment, `None` when gone,
/// or why it could not be read.
type ItemRead = Result<Option<(RemoteItem, Option<PhotoAttachment>)>, String>;

fn log_overflow(overflow: &[mapping::Overflow]) {
    if !overflow.is_empty() {
        tracing::info!(
            count = overflow.len(),
            "card properties do not fit EWS's slots; they stay in the CRM only"
        );
    }
}

#[async_trait]
impl Provider for EwsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Ews
    }

    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        let body = self
            .client
            .call(op::GET_FOLDER, &soap::get_folder(DISTINGUISHED_CONTACTS))
            .await?;
        let root = soap::parse_get_folder(&body).map_err(ews_error)?;
        let mut folders = Vec::new();
        let mut offset = 0;
        loop {
            let body = self
                .client
                .call(
                    op::FIND_FOLDER,
                    &soap::find_folder(offset, FIND_COUNT_LIMIT),
                )
                .await?;
            let page = soap::parse_find_folder(&body).map_err(ews_error)?;
            let n = page.folders.len();
            folders.extend(page.folders);
            match page.next_offset {
                Some(next) if next > offset && n > 0 => offset = next,
                _ => break,
            }
        }
        // User folders only, and only below included folders.
        let mut included: HashSet<String> = HashSet::from([root.id.clone()]);
        loop {
            let before = included.len();
            for f in &folders {
                if f.class == FOLDER_CLASS_CONTACT
                    && f.parent.as_ref().is_some_and(|p| included.contains(p))
                {
                    included.insert(f.id.clone());
                }
            }
            if included.len() == before {
                break;
            }
        }
        let mut groups = Vec::new();
        let mut stack = vec![(root.id.clone(), root.name.clone())];
        let mut seen = HashSet::new();
        while let Some((id, name)) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            for child in folders
                .iter()
                .rev()
                .filter(|f| f.parent.as_deref() == Some(id.as_str()) && included.contains(&f.id))
            {
                stack.push((child.id.clone(), format!("{name} / {}", child.name)));
            }
            groups.push(SyncGroup {
                id,
                name,
                kind: SyncGroupKind::Folder,
                writable: true,
            });
        }
        Ok(groups)
    }

    async fn pull(&self, group: &str, cursor: Option<&str>) -> Result<Page, ProviderError> {
        let (mut kind, mut state) = match cursor {
            None => (PullKind::FullListing, None),
            Some(c) => {
                let (k, s) = parse_cursor(c);
                (k, Some(s.to_string()))
            }
        };
        let mut restarted = false;
        loop {
            let body = self
                .client
                .call(
                    op::SYNC_FOLDER_ITEMS,
                    &soap::sync_folder_items(group, state.as_deref(), self.page_size),
                )
                .await?;
            let page = match soap::parse_sync_folder_items(&body) {
                Err(e) if e.code() == Some(code::INVALID_SYNC_STATE_DATA) && !restarted => {
                    tracing::info!(
                        group,
                        "EWS SyncState invalid; restarting with a full listing"
                    );
                    restarted = true;
                    kind = PullKind::FullListing;
                    state = None;
                    continue;
                }
                Err(e) => return Err(ews_error(e)),
                Ok(page) => page,
            };
            let changes = self.changes_of(page.changes).await?;
            let prefix = match (page.last, kind) {
                (true, _) | (false, PullKind::Incremental) => CURSOR_DELTA,
                (false, PullKind::FullListing) => CURSOR_FULL,
            };
            return Ok(Page {
                changes,
                kind,
                cursor: Some(format!("{prefix}{}", page.sync_state)),
                complete: page.last,
            });
        }
    }

    async fn fetch(&self, _group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError> {
        match self.get_items(&[id.to_string()]).await?.remove(id) {
            Some(Ok(Some(pair))) => Ok(self.with_photos(vec![pair]).await?.pop()),
            Some(Ok(None)) | None => Ok(None),
            Some(Err(reason)) => Err(ProviderError::Protocol(reason)),
        }
    }

    async fn create(
        &self,
        group: &str,
        card: &VCard,
        crm_id: &str,
    ) -> Result<Written, ProviderError> {
        let mapped = to_ews(card);
        log_overflow(&mapped.overflow);
        let req = soap::create_item(group, contact_element(&mapped.contact, Some(crm_id)));
        let body = self.client.call(op::CREATE_ITEM, &req).await?;
        let id = soap::parse_written_id(&body, op::CREATE_ITEM).map_err(ews_error)?;
        self.written(id, None, card, &mapped.contact).await
    }

    async fn update(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        self.update_with_base(group, id, etag, None, card).await
    }

    async fn update_with_base(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        let (change_key, resolution) = match etag {
            Some(ck) => (ck.to_string(), ConflictResolution::NeverOverwrite),
            // No version known: overwrite what is there now.
            None => {
                let current = self
                    .fetch(group, id)
                    .await?
                    .ok_or(ProviderError::NotFound)?;
                let ck = current.etag.ok_or_else(|| {
                    ProviderError::Protocol("EWS item without a ChangeKey".into())
                })?;
                (ck, ConflictResolution::AlwaysOverwrite)
            }
        };
        let mapped = to_ews(card);
        log_overflow(&mapped.overflow);
        let req = soap::update_item(id, &change_key, resolution, updates(&mapped.contact));
        let body = self.client.call(op::UPDATE_ITEM, &req).await?;
        let written = match soap::parse_written_id(&body, op::UPDATE_ITEM) {
            Ok(w) => w,
            Err(EwsError::Shape(_)) => soap::ItemId {
                id: id.to_string(),
                change_key: None,
            },
            Err(e) => return Err(ews_error(e)),
        };
        self.written(written, held, card, &mapped.contact).await
    }

    async fn delete(&self, group: &str, id: &str, etag: Option<&str>) -> Result<(), ProviderError> {
        // DeleteItem takes no ChangeKey check: compare first.
        if let Some(etag) = etag {
            let _ = group;
            match self.get_items(&[id.to_string()]).await?.remove(id) {
                Some(Ok(None)) | None => return Ok(()),
                Some(Ok(Some((item, _)))) if item.etag.as_deref() != Some(etag) => {
                    return Err(ProviderError::Conflict)
                }
                Some(Ok(Some(_))) => {}
                Some(Err(reason)) => return Err(ProviderError::Protocol(reason)),
            }
        }
        let body = self
            .client
            .call(op::DELETE_ITEM, &soap::delete_item(id))
            .await?;
        match soap::parse_delete_item(&body) {
            Ok(()) => Ok(()),
            // Already gone: the goal of the delete is reached.
            Err(e) if e.code() == Some(code::ITEM_NOT_FOUND) => Ok(()),
            Err(e) => Err(ews_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_carry_the_run_kind() {
        assert_eq!(parse_cursor("full:H4s="), (PullKind::FullListing, "H4s="));
        assert_eq!(parse_cursor("delta:H4s="), (PullKind::Incremental, "H4s="));
        assert_eq!(parse_cursor("H4s="), (PullKind::Incremental, "H4s="));
    }

    #[test]
    fn page_size_is_clamped_to_the_server_limit() {
        let mut cfg = EwsConfig::basic("https://mail.contoso.com/EWS/Exchange.asmx", "u", "p");
        cfg.page_size = 5000;
        cfg.get_item_batch = 0;
        let p = EwsProvider::new(cfg).expect("valid config");
        assert_eq!(p.page_size, 512);
        assert_eq!(p.batch, 1);
        assert!(EwsProvider::new(EwsConfig::basic("not a url", "u", "p")).is_err());
    }
}
