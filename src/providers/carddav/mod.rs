//! The CardDAV client provider (iCloud and any RFC 6352 server): transport and auth
//! ([`client`]), discovery ([`discovery`]), per-server [`profile`]s, the opaque pull
//! [`cursor`], pulling ([`pull`]: `sync-collection` with truncation and token recovery, or a
//! `getctag` + ETag diff), pushing ([`push`]: conditional PUT/DELETE) and card helpers
//! ([`cards`]).
//!
//! Sync-group ids: an address book is its absolute URL; an iCloud group is
//! `<book URL>#group=<percent-encoded group UID>`. Item ids are the cards' absolute paths.

use async_trait::async_trait;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use url::Url;

use crate::dav::names;
use crate::dav::prop;
use crate::providers::http::NetworkPolicy;
use crate::providers::{
    Page, Provider, ProviderError, ProviderKind, RemoteItem, SyncGroup, SyncGroupKind, Written,
};
use crate::vcard::VCard;

pub mod cards;
pub mod client;
pub mod cursor;
pub mod discovery;
pub mod profile;
pub mod pull;
pub mod push;

pub use client::{Auth, DavClient, DavResponse, HostPattern};
pub use cursor::Cursor;
pub use discovery::{discover, Discovery, DiscoveryStart, HickoryResolver, NoDns, SrvResolver};
pub use profile::{Profile, WriteVersion};

/// The fragment key marking a group inside an address book in a sync-group id.
pub const GROUP_FRAGMENT: &str = "group=";

/// A sync group as the provider reads its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// The address book.
    pub book: Url,
    /// The group card's UID when the sync group is a group inside the book.
    pub group_uid: Option<String>,
}

impl GroupRef {
    /// Reads a sync-group id.
    pub fn parse(id: &str) -> Result<Self, ProviderError> {
        let mut book = Url::parse(id)
            .map_err(|e| ProviderError::Unsupported(format!("bad sync group {id}: {e}")))?;
        let group_uid = book
            .fragment()
            .and_then(|f| f.strip_prefix(GROUP_FRAGMENT))
            .map(|u| percent_decode_str(u).decode_utf8_lossy().into_owned());
        book.set_fragment(None);
        if !book.path().ends_with('/') {
            let p = format!("{}/", book.path());
            book.set_path(&p);
        }
        Ok(Self { book, group_uid })
    }

    /// The id of a group inside `book`.
    pub fn group_id(book: &Url, uid: &str) -> String {
        let mut u = book.clone();
        u.set_fragment(Some(&format!(
            "{GROUP_FRAGMENT}{}",
            utf8_percent_encode(uid, NON_ALPHANUMERIC)
        )));
        u.to_string()
    }
}

/// A CardDAV account: the transport, where its address books are, and the server's profile.
#[derive(Debug)]
pub struct CarddavProvider {
    client: DavClient,
    profile: Profile,
    kind: ProviderKind,
    /// Where `sync_groups` starts discovery (server root, context path or principal).
    account_url: Url,
}

impl CarddavProvider {
    /// A provider speaking to `account_url` through `client` with `profile`.
    pub fn new(client: DavClient, profile: Profile, account_url: Url) -> Self {
        let kind = if profile.name == Profile::icloud().name {
            ProviderKind::Icloud
        } else {
            ProviderKind::Carddav
        };
        Self {
            client,
            profile,
            kind,
            account_url,
        }
    }

    /// Builds the client too: credentials go to `account_url`'s origin and the profile's hosts.
    /// Any address may be reached; see [`CarddavProvider::connect_with_policy`].
    pub fn connect(account_url: Url, auth: Auth, profile: Profile) -> Result<Self, ProviderError> {
        Self::connect_with_policy(account_url, auth, profile, NetworkPolicy::unrestricted())
    }

    /// [`CarddavProvider::connect`], reaching only the addresses `network` permits (the
    /// configuration's private-network policy), redirects included.
    pub fn connect_with_policy(
        account_url: Url,
        auth: Auth,
        profile: Profile,
        network: NetworkPolicy,
    ) -> Result<Self, ProviderError> {
        let client = DavClient::new(account_url.clone(), auth)?
            .with_credential_hosts(profile.credential_hosts.clone())
            .with_network_policy(network)?;
        Ok(Self::new(client, profile, account_url))
    }

    /// The transport (e.g. to count requests).
    pub fn client(&self) -> &DavClient {
        &self.client
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

#[async_trait]
impl Provider for CarddavProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        let found = discover(
            &self.client,
            &DiscoveryStart::Url(self.account_url.clone()),
            &NoDns,
        )
        .await?;
        let mut out = Vec::new();
        let books = if self.profile.single_book {
            found.books.into_iter().take(1).collect()
        } else {
            found.books
        };
        for b in books {
            let writable = b
                .info
                .privileges
                .as_ref()
                .is_none_or(|p| prop::grants(p, &names::WRITE_CONTENT));
            let name = b
                .info
                .displayname
                .clone()
                .unwrap_or_else(|| b.url.path().to_string());
            if self.profile.group_cards {
                for (uid, gname) in pull::group_cards(self, &b.url).await? {
                    out.push(SyncGroup {
                        id: GroupRef::group_id(&b.url, &uid),
                        name: gname,
                        kind: SyncGroupKind::Group,
                        writable,
                    });
                }
            }
            out.push(SyncGroup {
                id: b.url.to_string(),
                name,
                kind: SyncGroupKind::AddressBook,
                writable,
            });
        }
        Ok(out)
    }

    async fn pull(&self, group: &str, cursor: Option<&str>) -> Result<Page, ProviderError> {
        pull::pull(self, &GroupRef::parse(group)?, cursor).await
    }

    async fn fetch(&self, group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError> {
        push::fetch(self, &GroupRef::parse(group)?, id).await
    }

    async fn create(
        &self,
        group: &str,
        card: &VCard,
        crm_id: &str,
    ) -> Result<Written, ProviderError> {
        push::create(self, &GroupRef::parse(group)?, card, crm_id).await
    }

    async fn update(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        push::update(self, &GroupRef::parse(group)?, id, etag, card).await
    }

    async fn delete(&self, group: &str, id: &str, etag: Option<&str>) -> Result<(), ProviderError> {
        push::delete(self, &GroupRef::parse(group)?, id, etag).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_round_trip() {
        let book = Url::parse("https://p1-contacts.icloud.com/1/carddavhome/card/").unwrap();
        let id = GroupRef::group_id(&book, "A B/C");
        let g = GroupRef::parse(&id).unwrap();
        assert_eq!(g.book, book);
        assert_eq!(g.group_uid.as_deref(), Some("A B/C"));
        let plain = GroupRef::parse("http://h/alice/contacts").unwrap();
        assert_eq!(plain.book.as_str(), "http://h/alice/contacts/");
        assert_eq!(plain.group_uid, None);
    }
}
