//! The Microsoft Graph provider (Outlook.com, Exchange Online, Office 365): contact folders as
//! sync groups, delta queries for changes, `POST`/`PATCH`/`DELETE` for writes.
//!
//! Wire behaviour (providers.md §3):
//! - Sync groups are `GET /me/contactFolders` and, recursively, each folder's `childFolders`.
//! - A pull starts with `GET …/contactFolders/{id}/contacts/delta?$select=…` and the header
//!   `Prefer: odata.maxpagesize=N`; query parameters go on that first call only. Later calls
//!   use the `@odata.nextLink` / `@odata.deltaLink` verbatim. The whole link is the cursor,
//!   prefixed with the kind of run it belongs to ([`CURSOR_FULL`] / [`CURSOR_DELTA`]), because
//!   a `nextLink` does not say whether it pages a full listing or an incremental one.
//! - `@removed` entries (reason `deleted` or `changed`, i.e. moved out) are deletions.
//!   Duplicates inside a page collapse to the last occurrence; replays across pages are plain
//!   upserts. A row without `changeKey` (a partial "changed properties only" row) is re-read.
//! - 410 with `SyncStateNotFound` or `resyncRequired` (or any 410 on a delta link) restarts
//!   the pull as a [`PullKind::FullListing`].
//! - Writes: `POST` creates (with the CRM id in [`mapping::CRM_ID_PROPERTY_ID`]), `PATCH` with
//!   `If-Match: <@odata.etag>` updates (412 `ErrorIrresolvableConflict` → conflict), `DELETE`
//!   deletes.
//! - Throttling: 429 honours `Retry-After` through the shared retry policy; at most
//!   [`client::MAX_CONCURRENT_PER_MAILBOX`] requests are in flight per mailbox, across every
//!   provider instance for that mailbox.
//!
//! - Photos (providers.md §3, Graph `profilePhoto`): a contact's photo is
//!   `GET …/contactFolders/{fid}/contacts/{id}/photo/$value` (binary, 404 when it has none). A
//!   pull reads it only for the contacts a delta page returned as created or updated (and on
//!   [`Provider::fetch`]), after collapsing duplicates, through the same per-mailbox cap and
//!   retry policy, and puts it on the card as an inline `PHOTO` ([`crate::vcard::photo`]); one
//!   larger than [`crate::vcard::photo::MAX_PHOTO_BYTES`] is left off with a warning naming the contact. A write
//!   compares the card's photo with the one Graph holds (the engine's stored card, see
//!   [`Provider::update_with_base`]) and `PUT`s the bytes with their `Content-Type` only when
//!   they differ, then reads the contact's new `changeKey` (the upload changes it), so the
//!   next write's `If-Match` is not a false conflict. Graph cannot delete an Outlook
//!   contact's photo (the profilePhoto delete supports users and groups only), so a removed
//!   photo is logged and kept: the written card says Graph still holds it. The provider
//!   remembers the etag and photo of its own writes, so when the next delta returns that very
//!   version its photo is not read again (no echo request).
//!
//! Slot overflow: [`mapping::to_graph`] reports what Graph cannot hold. The [`Written`] card of
//! a create/update is the card Graph stored **plus** that overflow, and
//! [`mapping::reattach_overflow`] lets the engine do the same for pulled cards, so that a push
//! never deletes the overflow in the CRM.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::http::{AccessTokenSource, RetryPolicy};
use super::{
    OwnPhotoWrites, Page, Provider, ProviderError, ProviderKind, PullKind, RemoteChange,
    RemoteItem, SyncGroup, SyncGroupKind, Written,
};
use crate::vcard::photo::{inline_entry, photo_change, photo_entry, with_photo, PhotoChange};
use crate::vcard::{VCard, VCardEntry};

pub mod client;
pub mod mapping;

use client::{GraphClient, GraphResponse, RawBody, Segment, IF_MATCH, PREFER};
use mapping::{from_graph, reattach_overflow, to_graph, to_graph_create, GraphContact};

/// The public Graph service root (global cloud).
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
/// Cursor prefix: the link pages a full listing (the first run, or a resync).
pub const CURSOR_FULL: &str = "full:";
/// Cursor prefix: the link pages (or is) an incremental delta.
pub const CURSOR_DELTA: &str = "delta:";

/// OData annotation `@odata.nextLink` (OData JSON format §4.5.5).
pub const ODATA_NEXT_LINK: &str = "@odata.nextLink";
/// OData annotation `@odata.deltaLink` (OData JSON format §4.5.6).
pub const ODATA_DELTA_LINK: &str = "@odata.deltaLink";
/// Graph error code: the delta token fell out of the sync-state cache (410).
pub const ERR_SYNC_STATE_NOT_FOUND: &str = "SyncStateNotFound";
/// Graph error code: the delta must be restarted (410).
pub const ERR_RESYNC_REQUIRED: &str = "resyncRequired";
/// Graph error code: stale `If-Match` on a write (412).
pub const ERR_IRRESOLVABLE_CONFLICT: &str = "ErrorIrresolvableConflict";
/// Query option `$select` (OData URL conventions §5.1.3).
pub const QUERY_SELECT: &str = "$select";
/// Query option `$expand` (OData URL conventions §5.1.2).
pub const QUERY_EXPAND: &str = "$expand";

/// How to reach one mailbox.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Service root including the version (national clouds differ), e.g. [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// The mailbox (UPN or user id). Keys the 4-request concurrency cap; with `app_only` it
    /// also forms the path `/users/{mailbox}`.
    pub mailbox: String,
    /// Application permissions: address `/users/{mailbox}` instead of `/me`.
    pub app_only: bool,
    /// `Prefer: odata.maxpagesize` for delta pages.
    pub page_size: u32,
    /// Retry policy for 429/5xx/transport failures.
    pub retry: RetryPolicy,
}

impl GraphConfig {
    /// Delegated access to the signed-in user's mailbox at the global Graph endpoint.
    pub fn new(mailbox: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            mailbox: mailbox.into(),
            app_only: false,
            page_size: 100,
            retry: RetryPolicy::default(),
        }
    }
}

/// A Graph mailbox's contacts as a [`Provider`].
pub struct GraphProvider {
    client: GraphClient,
    user: String,
    page_size: u32,
    /// Our own writes not yet seen in a delta: a delta row at the `@odata.etag` a write left
    /// is that write coming back, and its photo is known without a `GET`.
    own_writes: OwnPhotoWrites,
}

/// One page of a delta or folder listing.
#[derive(Debug, Deserialize)]
struct ODataPage {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

/// A `contactFolder`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContactFolder {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
}

impl GraphProvider {
    /// A provider for the mailbox in `config`, authenticating with `tokens`.
    pub fn new(
        config: GraphConfig,
        tokens: Arc<dyn AccessTokenSource>,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        Self::with_http(config, tokens, http)
    }

    /// Like [`GraphProvider::new`] with a caller-supplied HTTP client.
    pub fn with_http(
        config: GraphConfig,
        tokens: Arc<dyn AccessTokenSource>,
        http: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let client = GraphClient::new(
            http,
            &config.base_url,
            &config.mailbox,
            tokens,
            config.retry,
        )?;
        let user = if config.app_only {
            format!("users/{}", config.mailbox)
        } else {
            "me".to_string()
        };
        Ok(Self {
            client,
            user,
            page_size: config.page_size.max(1),
            own_writes: OwnPhotoWrites::default(),
        })
    }

    fn user_segments(&self) -> Vec<Segment<'_>> {
        match self.user.strip_prefix("users/") {
            Some(id) => vec![Segment::Path("users"), Segment::Id(id)],
            None => vec![Segment::Path("me")],
        }
    }

    fn folder_url(&self, folder: &str, rest: &[Segment<'_>]) -> url::Url {
        let mut segs = self.user_segments();
        segs.push(Segment::Path("contactFolders"));
        segs.push(Segment::Id(folder));
        segs.extend_from_slice(rest);
        self.client.url_with_ids(&segs)
    }

    fn item_url(&self, folder: &str, id: &str) -> url::Url {
        self.folder_url(folder, &[Segment::Path("contacts"), Segment::Id(id)])
    }

    /// `…/contacts/{id}/photo/$value`, the documented path for a contact in a folder.
    fn photo_url(&self, folder: &str, id: &str) -> url::Url {
        self.folder_url(
            folder,
            &[
                Segment::Path("contacts"),
                Segment::Id(id),
                Segment::Path(mapping::field::PHOTO),
                Segment::Path(mapping::field::VALUE),
            ],
        )
    }

    /// The contact's photo as an inline `PHOTO` entry; `None` when it has none (404), when
    /// it is larger than we accept, or when Graph refuses to serve it with a 4xx (a warning
    /// names the contact; the card goes on without it, so one unreadable photo never stops
    /// the sync). Throttling and server errors, once the retries are spent, fail the page.
    async fn read_photo(
        &self,
        folder: &str,
        id: &str,
    ) -> Result<Option<VCardEntry>, ProviderError> {
        let resp = self
            .client
            .send_raw(Method::GET, self.photo_url(folder, id), &[], None)
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status.is_success() {
            let e = resp.into_error();
            if e.is_transient() {
                return Err(e);
            }
            tracing::warn!(contact = id, error = %e, "Graph contact photo unreadable; left off the card");
            return Ok(None);
        }
        let content_type = resp.content_type().map(str::to_string);
        match inline_entry(resp.body.to_vec(), content_type.as_deref()) {
            Ok(e) => Ok(Some(e)),
            Err(e) => {
                tracing::warn!(contact = id, error = %e, "Graph contact photo left off the card");
                Ok(None)
            }
        }
    }

    /// `item` with the contact's photo on its card.
    async fn with_read_photo(
        &self,
        folder: &str,
        mut item: RemoteItem,
    ) -> Result<RemoteItem, ProviderError> {
        let photo = match self.own_writes.take(&item.id, item.etag.as_deref()) {
            Some(photo) => photo,
            None => self.read_photo(folder, &item.id).await?,
        };
        item.card = with_photo(&item.card, photo);
        Ok(item)
    }

    /// Brings Graph's photo in line with `card`'s when it differs from `held`'s (what Graph
    /// holds). Returns the photo Graph holds afterwards and whether it was written.
    async fn write_photo(
        &self,
        folder: &str,
        id: &str,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<(Option<VCardEntry>, bool), ProviderError> {
        let kept = || held.and_then(photo_entry);
        match photo_change(held, card) {
            PhotoChange::Unchanged => Ok((photo_entry(card), false)),
            PhotoChange::Set { media_type, bytes } => {
                let body = RawBody {
                    content_type: media_type.to_string(),
                    bytes: bytes.to_vec(),
                };
                let resp = self
                    .client
                    .send_raw(Method::PUT, self.photo_url(folder, id), &[], Some(&body))
                    .await?;
                if resp.status.is_success() {
                    return Ok((photo_entry(card), true));
                }
                let e = resp.into_error();
                if e.is_transient() {
                    return Err(e);
                }
                tracing::warn!(contact = id, error = %e, "Graph refused the contact photo; it keeps its own");
                Ok((kept(), false))
            }
            PhotoChange::Remove => {
                tracing::info!(
                    contact = id,
                    "Graph cannot delete an Outlook contact's photo; it keeps it"
                );
                Ok((kept(), false))
            }
            PhotoChange::Unwritable(reason) => {
                tracing::warn!(contact = id, %reason, "contact photo not written to Graph");
                Ok((kept(), false))
            }
        }
    }

    /// The contact's current `@odata.etag` (after a photo upload changed its `changeKey`).
    async fn current_etag(&self, folder: &str, id: &str) -> Result<Option<String>, ProviderError> {
        let mut url = self.item_url(folder, id);
        url.query_pairs_mut()
            .append_pair(QUERY_SELECT, mapping::field::CHANGE_KEY);
        let resp = self.get(url).await?;
        if !resp.status.is_success() {
            return Err(resp.into_error());
        }
        let contact = GraphContact::from_value(&resp.json()?).map_err(ProviderError::Protocol)?;
        Ok(contact.etag())
    }

    /// Writes the photo after a `POST`/`PATCH` answered `resp`, and what Graph then holds.
    async fn finish_write(
        &self,
        folder: &str,
        resp: GraphResponse,
        held: Option<&VCard>,
        sent: &VCard,
    ) -> Result<Written, ProviderError> {
        let mut w = self.written(resp, sent)?;
        let (photo, uploaded) = self.write_photo(folder, &w.id, held, sent).await?;
        if uploaded {
            w.etag = self.current_etag(folder, &w.id).await?;
        }
        self.own_writes
            .remember(&w.id, w.etag.as_deref(), photo.clone());
        // The photo replaces every PHOTO; a second one (overflow) is re-added.
        w.card = reattach_overflow(&with_photo(&w.card, photo), sent);
        Ok(w)
    }

    /// The first delta request of a run: `$select` goes here and nowhere else.
    fn initial_delta_url(&self, folder: &str) -> url::Url {
        let mut url = self.folder_url(folder, &[Segment::Path("contacts/delta")]);
        url.query_pairs_mut()
            .append_pair(QUERY_SELECT, &mapping::SELECT_FIELDS.join(","));
        url
    }

    fn prefer(&self) -> (reqwest::header::HeaderName, String) {
        (PREFER, format!("odata.maxpagesize={}", self.page_size))
    }

    async fn get(&self, url: url::Url) -> Result<GraphResponse, ProviderError> {
        self.client.send(Method::GET, url, &[], None).await
    }

    /// All pages of a folder collection (`contactFolders`, `childFolders`).
    async fn list_folders(&self, first: url::Url) -> Result<Vec<ContactFolder>, ProviderError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let resp = self.get(url).await?;
            if !resp.status.is_success() {
                return Err(resp.into_error());
            }
            let page: ODataPage = serde_json::from_str(&resp.body)
                .map_err(|e| ProviderError::Protocol(format!("folder page: {e}")))?;
            for v in page.value {
                match serde_json::from_value::<ContactFolder>(v) {
                    Ok(f) => out.push(f),
                    Err(e) => tracing::warn!(error = %e, "skipping unreadable contactFolder"),
                }
            }
            if let Some(link) = page.next_link {
                next = Some(self.client.check_link(&link)?);
            }
        }
        Ok(out)
    }

    fn parse_cursor(&self, cursor: &str) -> Result<(PullKind, url::Url), ProviderError> {
        let (kind, link) = if let Some(link) = cursor.strip_prefix(CURSOR_FULL) {
            (PullKind::FullListing, link)
        } else if let Some(link) = cursor.strip_prefix(CURSOR_DELTA) {
            (PullKind::Incremental, link)
        } else {
            // A bare link (stored by hand or by an older version): treat as incremental.
            (PullKind::Incremental, cursor)
        };
        Ok((kind, self.client.check_link(link)?))
    }

    /// Turns the rows of one delta page into changes: partial rows are re-read whole (photo
    /// included), the created/updated contacts get their photo, at most
    /// MAX_CONCURRENT_PER_MAILBOX requests at once (the client's limiter holds the rest back).
    async fn changes_of(
        &self,
        folder: &str,
        rows: Vec<Value>,
    ) -> Result<Vec<RemoteChange>, ProviderError> {
        futures::future::try_join_all(rows_of(rows).into_iter().map(|row| async move {
            Ok(match row {
                Row::Ready(c) => c,
                Row::Photo(item) => RemoteChange::Upsert(self.with_read_photo(folder, item).await?),
                Row::Fetch(id) => match self.fetch(folder, &id).await? {
                    Some(item) => RemoteChange::Upsert(item),
                    None => RemoteChange::Delete { id },
                },
            })
        }))
        .await
    }

    fn written(&self, resp: GraphResponse, sent: &VCard) -> Result<Written, ProviderError> {
        let json = resp.json()?;
        let contact = GraphContact::from_value(&json).map_err(ProviderError::Protocol)?;
        let id = contact
            .id
            .clone()
            .ok_or_else(|| ProviderError::Protocol("Graph returned a contact without id".into()))?;
        Ok(Written {
            id,
            etag: contact.etag(),
            card: reattach_overflow(&from_graph(&contact).card, sent),
        })
    }
}

/// What one delta row still needs.
#[derive(Debug, Clone, PartialEq)]
enum Row {
    /// A deletion or an unreadable row: nothing to read.
    Ready(RemoteChange),
    /// A whole contact: its photo is to be read.
    Photo(RemoteItem),
    /// Only changed properties came back: the whole contact is to be read.
    Fetch(String),
}

/// The rows of one delta page, mapped, with duplicates collapsed to their last occurrence
/// (the newest state). Pure: the reads they need come after.
fn rows_of(rows: Vec<Value>) -> Vec<Row> {
    let mut out: Vec<(String, Row)> = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row
            .get(mapping::field::ID)
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(id) = id else {
            tracing::warn!("delta row without an id ignored");
            continue;
        };
        if row.get(mapping::field::REMOVED).is_some() {
            out.push((id.clone(), Row::Ready(RemoteChange::Delete { id })));
            continue;
        }
        let r = match GraphContact::from_value(&row) {
            Err(reason) => Row::Ready(RemoteChange::Invalid {
                id: id.clone(),
                reason,
            }),
            Ok(contact) if contact.change_key.is_none() => Row::Fetch(id.clone()),
            Ok(contact) => Row::Photo(RemoteItem {
                id: id.clone(),
                etag: contact.etag(),
                card: from_graph(&contact).card,
            }),
        };
        out.push((id, r));
    }
    let mut last: HashMap<String, usize> = HashMap::new();
    for (i, (id, _)) in out.iter().enumerate() {
        last.insert(id.clone(), i);
    }
    out.into_iter()
        .enumerate()
        .filter(|(i, (id, _))| last.get(id) == Some(i))
        .map(|(_, (_, r))| r)
        .collect()
}

fn log_overflow(overflow: &[mapping::Overflow]) {
    if !overflow.is_empty() {
        tracing::info!(
            count = overflow.len(),
            "card properties do not fit Graph's slots; they stay in the CRM only"
        );
    }
}

#[async_trait]
impl Provider for GraphProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Graph
    }

    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        let mut segs = self.user_segments();
        segs.push(Segment::Path("contactFolders"));
        let top = self.list_folders(self.client.url_with_ids(&segs)).await?;
        let mut groups = Vec::new();
        // Depth-first, parents before children; names are paths ("Parent / Child").
        let mut stack: Vec<(ContactFolder, String)> = top
            .into_iter()
            .rev()
            .map(|f| {
                let name = f.display_name.clone().unwrap_or_default();
                (f, name)
            })
            .collect();
        while let Some((folder, name)) = stack.pop() {
            let children = self
                .list_folders(self.folder_url(&folder.id, &[Segment::Path("childFolders")]))
                .await?;
            for child in children.into_iter().rev() {
                let child_name = format!(
                    "{name} / {}",
                    child.display_name.clone().unwrap_or_default()
                );
                stack.push((child, child_name));
            }
            groups.push(SyncGroup {
                id: folder.id,
                name,
                kind: SyncGroupKind::Folder,
                writable: true,
            });
        }
        Ok(groups)
    }

    async fn pull(&self, group: &str, cursor: Option<&str>) -> Result<Page, ProviderError> {
        let (mut kind, mut url) = match cursor {
            None => (PullKind::FullListing, self.initial_delta_url(group)),
            Some(c) => self.parse_cursor(c)?,
        };
        let mut restarted = false;
        loop {
            let resp = self
                .client
                .send(Method::GET, url.clone(), &[self.prefer()], None)
                .await?;
            if resp.status == StatusCode::GONE && !restarted {
                let code = resp.error_code().unwrap_or_default();
                tracing::info!(%code, group, "Graph delta state lost; restarting with a full listing");
                restarted = true;
                kind = PullKind::FullListing;
                url = self.initial_delta_url(group);
                continue;
            }
            if !resp.status.is_success() {
                return Err(resp.into_error());
            }
            let page: ODataPage = serde_json::from_str(&resp.body)
                .map_err(|e| ProviderError::Protocol(format!("delta page: {e}")))?;
            let changes = self.changes_of(group, page.value).await?;
            let prefix = match kind {
                PullKind::FullListing => CURSOR_FULL,
                PullKind::Incremental => CURSOR_DELTA,
            };
            return match (page.next_link, page.delta_link) {
                (Some(next), _) => {
                    self.client.check_link(&next)?;
                    Ok(Page {
                        changes,
                        kind,
                        cursor: Some(format!("{prefix}{next}")),
                        complete: false,
                    })
                }
                (None, Some(delta)) => {
                    self.client.check_link(&delta)?;
                    Ok(Page {
                        changes,
                        kind,
                        cursor: Some(format!("{CURSOR_DELTA}{delta}")),
                        complete: true,
                    })
                }
                (None, None) => Err(ProviderError::Protocol(
                    "delta page has neither @odata.nextLink nor @odata.deltaLink".into(),
                )),
            };
        }
    }

    async fn fetch(&self, group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError> {
        let mut url = self.item_url(group, id);
        url.query_pairs_mut()
            .append_pair(QUERY_SELECT, &mapping::SELECT_FIELDS.join(","))
            .append_pair(
                QUERY_EXPAND,
                &format!(
                    "singleValueExtendedProperties($filter=id eq '{}')",
                    mapping::CRM_ID_PROPERTY_ID
                ),
            );
        let resp = self.get(url).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status.is_success() {
            return Err(resp.into_error());
        }
        let contact = GraphContact::from_value(&resp.json()?).map_err(ProviderError::Protocol)?;
        let item = RemoteItem {
            id: contact.id.clone().unwrap_or_else(|| id.to_string()),
            etag: contact.etag(),
            card: from_graph(&contact).card,
        };
        Ok(Some(self.with_read_photo(group, item).await?))
    }

    async fn create(
        &self,
        group: &str,
        card: &VCard,
        crm_id: &str,
    ) -> Result<Written, ProviderError> {
        let mapped = to_graph_create(card, crm_id);
        log_overflow(&mapped.overflow);
        let url = self.folder_url(group, &[Segment::Path("contacts")]);
        let body = Value::Object(mapped.body);
        let resp = self
            .client
            .send(Method::POST, url, &[], Some(&body))
            .await?;
        if !resp.status.is_success() {
            return Err(resp.into_error());
        }
        self.finish_write(group, resp, None, card).await
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
        let mapped = to_graph(card);
        log_overflow(&mapped.overflow);
        let headers: Vec<_> = etag
            .map(|e| (IF_MATCH, e.to_string()))
            .into_iter()
            .collect();
        let body = Value::Object(mapped.body);
        let resp = self
            .client
            .send(
                Method::PATCH,
                self.item_url(group, id),
                &headers,
                Some(&body),
            )
            .await?;
        if !resp.status.is_success() {
            return Err(resp.into_error());
        }
        self.finish_write(group, resp, held, card).await
    }

    async fn delete(&self, group: &str, id: &str, etag: Option<&str>) -> Result<(), ProviderError> {
        let headers: Vec<_> = etag
            .map(|e| (IF_MATCH, e.to_string()))
            .into_iter()
            .collect();
        let resp = self
            .client
            .send(Method::DELETE, self.item_url(group, id), &headers, None)
            .await?;
        match resp.status {
            s if s.is_success() => Ok(()),
            // Already gone: the goal of the delete is reached.
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(resp.into_error()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct NoTokens;
    #[async_trait]
    impl AccessTokenSource for NoTokens {
        async fn access_token(&self) -> Result<String, ProviderError> {
            Ok("t".into())
        }
        async fn invalidate(&self, _token: &str) {}
    }

    fn provider(base: &str) -> GraphProvider {
        let mut cfg = GraphConfig::new("jane@contoso.com");
        cfg.base_url = base.into();
        GraphProvider::new(cfg, Arc::new(NoTokens)).unwrap()
    }

    #[test]
    fn urls_encode_ids_and_keep_the_version_root() {
        let p = provider("https://graph.microsoft.us/v1.0");
        let u = p.item_url("AAMk/x=", "AB+c/d=");
        assert_eq!(
            u.as_str(),
            "https://graph.microsoft.us/v1.0/me/contactFolders/AAMk%2Fx=/contacts/AB+c%2Fd="
        );
        let d = p.initial_delta_url("F1");
        assert!(d.as_str().starts_with(
            "https://graph.microsoft.us/v1.0/me/contactFolders/F1/contacts/delta?%24select=changeKey%2CdisplayName"
        ));
    }

    #[test]
    fn duplicates_in_a_page_collapse_to_the_last_occurrence() {
        let rows = vec![
            serde_json::json!({"id": "a", "changeKey": "1", "displayName": "Old"}),
            serde_json::json!({"id": "b", "changeKey": "1", "displayName": "B"}),
            serde_json::json!({"id": "a", "changeKey": "2", "displayName": "New"}),
            serde_json::json!({"id": "b", "@removed": {"reason": "changed"}}),
            serde_json::json!({"id": "c", "changeKey": 5}),
            serde_json::json!({"displayName": "no id"}),
        ];
        let changes = rows_of(rows);
        assert_eq!(changes.len(), 3, "{changes:?}");
        match &changes[0] {
            // A whole contact: only its photo is still to be read.
            Row::Photo(i) => {
                assert_eq!(i.id, "a");
                assert_eq!(i.etag.as_deref(), Some("W/\"2\""));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            changes[1],
            Row::Ready(RemoteChange::Delete { id: "b".into() })
        );
        assert!(matches!(&changes[2], Row::Ready(RemoteChange::Invalid { id, .. }) if id == "c"));
        // A partial row is read whole.
        assert_eq!(
            rows_of(vec![serde_json::json!({"id": "d", "displayName": "D"})]),
            vec![Row::Fetch("d".into())]
        );
    }

    #[test]
    fn app_only_uses_users_path() {
        let mut cfg = GraphConfig::new("jane@contoso.com");
        cfg.app_only = true;
        let p = GraphProvider::new(cfg, Arc::new(NoTokens)).unwrap();
        assert_eq!(
            p.item_url("F", "I").as_str(),
            "https://graph.microsoft.com/v1.0/users/jane@contoso.com/contactFolders/F/contacts/I"
        );
    }

    #[test]
    fn cursors_carry_the_run_kind_and_stay_on_host() {
        let p = provider("https://graph.microsoft.com/v1.0");
        let (k, _) = p
            .parse_cursor("full:https://graph.microsoft.com/v1.0/me/contactFolders/F/contacts/delta?$skiptoken=a")
            .unwrap();
        assert_eq!(k, PullKind::FullListing);
        let (k, _) = p
            .parse_cursor("delta:https://graph.microsoft.com/v1.0/x?$deltatoken=b")
            .unwrap();
        assert_eq!(k, PullKind::Incremental);
        assert!(matches!(
            p.parse_cursor("delta:https://evil.example/v1.0/x?$deltatoken=b"),
            Err(ProviderError::Protocol(_))
        ));
    }
}
