//! The [`Provider`] trait, which every external address book implements, and one module per
//! protocol (CardDAV, Google People, Microsoft Graph, EWS).
//!
//! A provider speaks its protocol and maps its items to and from **normalized vCard 4**
//! ([`crate::vcard::VCard`]); from there on the sync engine treats every provider alike.
//! Provider-specific recovery (an expired sync token, a truncated `sync-collection`, a Graph
//! `resyncRequired`) happens inside the provider: the engine only sees pages of changes, and
//! a page that is part of a *full listing* when the provider had to start over.
//!
//! Architecture invariant: a provider never touches the store or the CRM; the engine persists
//! the cursor it returns, in the same atomic step as the items the page covers.

use std::time::Duration;

use async_trait::async_trait;

use crate::vcard::{VCard, VCardEntry};

pub mod carddav;
pub mod ews;
pub mod google;
pub mod graph;
pub mod http;
pub mod oauth;

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any CardDAV server (RFC 6352).
    Carddav,
    /// iCloud, over CardDAV with its profile.
    Icloud,
    /// Google People API.
    Google,
    /// Microsoft Graph (Outlook.com, Office 365).
    Graph,
    /// Exchange Web Services (on-premises Exchange).
    Ews,
}

/// What a sync group is called at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncGroupKind {
    /// A whole address book (CardDAV collection).
    AddressBook,
    /// A group of contacts inside an address book (iCloud group card, Google contact group).
    Group,
    /// A contact folder (Graph, EWS).
    Folder,
}

/// A sync group the user can choose for a connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncGroup {
    /// Provider-specific identifier (collection URL, group resource name, folder id).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What kind of group this is.
    pub kind: SyncGroupKind,
    /// False when the account may only read this group (two-way sync is then refused).
    pub writable: bool,
}

/// One item as the provider holds it, already mapped to normalized vCard 4.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteItem {
    /// Provider-specific item id (CardDAV href, People resource name, Graph/EWS item id).
    pub id: String,
    /// The version tag (ETag, People etag, Graph `@odata.etag`/changeKey, EWS ChangeKey).
    pub etag: Option<String>,
    /// The card, normalized to vCard 4.
    pub card: VCard,
}

/// One change reported by a pull.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteChange {
    /// Created or changed remotely (the engine tells which from its stored state).
    Upsert(RemoteItem),
    /// Deleted remotely (or left the sync group).
    Delete {
        /// The item id.
        id: String,
    },
    /// The item exists but could not be read; it is reported and skipped, never deleted.
    Invalid {
        /// The item id.
        id: String,
        /// Why it could not be read.
        reason: String,
    },
}

/// Whether a pull is incremental or a full listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullKind {
    /// Only changes since the cursor.
    Incremental,
    /// Every item in the group. When the last page of a full listing has been seen, every
    /// stored item the listing did not mention was deleted remotely. The engine must not
    /// conclude deletions from a listing it did not see to the end.
    FullListing,
}

/// One page of a pull.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The changes this page carries.
    pub changes: Vec<RemoteChange>,
    /// Incremental or full listing.
    pub kind: PullKind,
    /// The opaque cursor to pass to the next [`Provider::pull`]. When `complete`, it is the
    /// cursor for the next sync run; otherwise it resumes this run.
    pub cursor: Option<String>,
    /// True on the last page of this pull.
    pub complete: bool,
}

/// The result of a write: what the provider now holds, so the engine does not mistake its
/// own write for a remote change next time.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The item id (for a create: where the provider put it, e.g. from `Location`).
    pub id: String,
    /// The new version tag.
    pub etag: Option<String>,
    /// The card as the provider stores it (read back when the provider rewrote it).
    pub card: VCard,
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The item changed remotely since `etag` (412, stale etag, ChangeKey conflict).
    #[error("conflict: the item changed at the provider")]
    Conflict,
    /// The item does not exist (any more).
    #[error("item not found at the provider")]
    NotFound,
    /// The server refused the credentials (401). Not retried.
    #[error("credentials rejected by the provider")]
    CredentialsRejected,
    /// The OAuth grant was revoked or expired (`invalid_grant`); a user must re-authorize.
    #[error("needs re-authorization: {0}")]
    NeedsReauthorization(String),
    /// Still throttled after the bounded retries.
    #[error("throttled by the provider (retry after {retry_after:?})")]
    Throttled {
        /// When the provider said to come back.
        retry_after: Option<Duration>,
    },
    /// The provider refused the request (4xx other than the above).
    #[error("provider refused the request ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's explanation.
        message: String,
    },
    /// The provider failed (5xx) after the bounded retries.
    #[error("provider failed ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The provider's explanation.
        message: String,
    },
    /// Network failure (timeout, dropped connection, TLS) after the bounded retries.
    #[error("transport failed: {0}")]
    Transport(String),
    /// The provider answered something we cannot read.
    #[error("malformed response from the provider: {0}")]
    Protocol(String),
    /// The operation is not possible with this provider or group (e.g. a read-only book).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The SSRF guard ([`http::NetworkPolicy`]) refused to send to `url`: it is, or resolves
    /// to, an address the private-network policy does not allow (a redirect hop, an
    /// Autodiscover redirect and a configured endpoint included). Never retried; the message
    /// names the `allow_private_networks` setting.
    #[error("request to {url} refused (SSRF guard): {reason}")]
    Refused {
        /// The URL that was not sent to.
        url: String,
        /// Which address, and the setting that would allow it.
        #[source]
        reason: crate::config::UrlPolicyError,
    },
}

impl ProviderError {
    /// True when retrying the same run later may succeed without a human.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Throttled { .. }
                | ProviderError::Server { .. }
                | ProviderError::Transport(_)
        )
    }
}

/// One external address book, bound to its account and credentials.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The protocol.
    fn kind(&self) -> ProviderKind;
    /// The groups the account offers.
    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError>;
    /// The next page of changes in `group` since `cursor` (`None`: start with a full listing).
    async fn pull(&self, group: &str, cursor: Option<&str>) -> Result<Page, ProviderError>;
    /// One item, freshly read (used to re-merge after a conflict).
    async fn fetch(&self, group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError>;
    /// Creates an item in `group`; `crm_id` is recorded at the provider where it can hold one.
    async fn create(
        &self,
        group: &str,
        card: &VCard,
        crm_id: &str,
    ) -> Result<Written, ProviderError>;
    /// Replaces an item if its version is still `etag`; [`ProviderError::Conflict`] otherwise.
    async fn update(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        card: &VCard,
    ) -> Result<Written, ProviderError>;
    /// [`Provider::update`] knowing `held`: the card as the provider held it when the engine
    /// last agreed with it (its stored remote card). A provider that keeps part of a contact
    /// behind its own endpoint (the photo of Graph, EWS and Google) compares `card` with `held`
    /// and sends that part only when it changed, so that an edit of a phone never re-uploads or
    /// deletes the photo. `None` means nothing is known: such a provider then writes what
    /// `card` carries and removes nothing. The engine calls this; the default is
    /// [`Provider::update`], for providers whose card carries everything.
    async fn update_with_base(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        let _ = held;
        self.update(group, id, etag, card).await
    }
    /// Deletes an item if its version is still `etag`.
    async fn delete(&self, group: &str, id: &str, etag: Option<&str>) -> Result<(), ProviderError>;
}

/// The photos a provider wrote itself, by item id, with the version tag the write left: when a
/// pull sees that very version again (our own write coming back), the photo is known without
/// a photo request. Graph and EWS keep one per provider instance; bounded, so a run that
/// writes more than [`OwnPhotoWrites::MAX`] items only re-reads a few more photos.
#[derive(Debug, Default)]
pub struct OwnPhotoWrites {
    by_id: std::sync::Mutex<std::collections::HashMap<String, (String, Option<VCardEntry>)>>,
}

impl OwnPhotoWrites {
    /// At most this many remembered writes.
    pub const MAX: usize = 10_000;

    /// Remembers that `id` is at `etag` holding `photo` (nothing without an etag).
    pub fn remember(&self, id: &str, etag: Option<&str>, photo: Option<VCardEntry>) {
        let Some(etag) = etag else { return };
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(id.to_owned(), (etag.to_owned(), photo));
    }

    /// The photo of our own write of `id` when the provider now reports it at that same
    /// `etag`; forgets the entry either way.
    pub fn take(&self, id: &str, etag: Option<&str>) -> Option<Option<VCardEntry>> {
        let (known, photo) = self
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)?;
        (etag == Some(known.as_str())).then_some(photo)
    }
}

/// `remote` (a card read back from a provider) with `overflow` (the properties of the base card
/// the provider could never hold) re-added, without duplicating entries already on it, so that
/// their absence from the provider's copy is never read as a deletion. Graph and EWS share it.
pub fn reattach_entries(remote: &VCard, overflow: impl IntoIterator<Item = VCardEntry>) -> VCard {
    let mut out = remote.clone();
    for entry in overflow {
        if !out.entries.contains(&entry) {
            out.entries.push(entry);
        }
    }
    out
}
