//! Per-server quirks as data: a [`Profile`] says which vCard version to write, which `Depth` to put
//! on `sync-collection`, whether `If-Match` is honoured, whether the account has one address book,
//! whether group cards are sync groups, and which other hosts may receive the credentials. The
//! client code reads these fields; it never asks which server it talks to.

use crate::dav::discovery::AddressBookInfo;
use crate::dav::names;
use crate::dav::propfind::Depth;

use super::client::HostPattern;

/// Which vCard version a server gets on PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteVersion {
    /// RFC 2426 vCard 3.0.
    V3,
    /// RFC 6350 vCard 4.0.
    V4,
}

/// How a server behaves, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Short name for logs and the CLI.
    pub name: &'static str,
    /// The vCard version to write.
    pub write_version: WriteVersion,
    /// The `Depth` header on `sync-collection` (RFC 6578 says none/0; Google wants 1).
    pub sync_depth: Option<Depth>,
    /// False when the server ignores `If-Match` (Google): updates then compare the current
    /// ETag first and report a conflict themselves.
    pub honours_if_match: bool,
    /// True when the account has exactly one address book (iCloud): no MKCOL, no choice.
    pub single_book: bool,
    /// True when group vCards (`X-ADDRESSBOOKSERVER-KIND:group`) are offered as sync groups and
    /// are not contacts themselves (iCloud).
    pub group_cards: bool,
    /// Hosts besides the configured origin that receive the credentials (iCloud partitions).
    pub credential_hosts: Vec<HostPattern>,
    /// Hrefs per `addressbook-multiget`.
    pub multiget_batch: usize,
    /// `addressbook-multiget` requests in flight at once: the next one is out while we parse
    /// the previous answer. More can only pay against a server with several workers (against
    /// Xandikos, 1, 2 and 4 took the same time: docs/BENCHMARKS.md).
    pub multiget_concurrency: usize,
}

/// iCloud's partition hosts (`pNN-contacts.icloud.com`), where the home set lives.
pub const ICLOUD_PARTITION_HOSTS: &[&str] =
    &["p*-contacts.icloud.com", "p*-contacts.icloud.com.cn"];

/// Default hrefs per multiget.
pub const DEFAULT_MULTIGET_BATCH: usize = 100;

/// Default multigets in flight.
pub const DEFAULT_MULTIGET_CONCURRENCY: usize = 2;

impl Profile {
    /// Any RFC 6352 server; adjust with [`Profile::adapt_to`] once the book is known.
    pub fn generic() -> Self {
        Self {
            name: "generic",
            write_version: WriteVersion::V4,
            sync_depth: None,
            honours_if_match: true,
            single_book: false,
            group_cards: false,
            credential_hosts: Vec::new(),
            multiget_batch: DEFAULT_MULTIGET_BATCH,
            multiget_concurrency: DEFAULT_MULTIGET_CONCURRENCY,
        }
    }

    /// iCloud: one book, vCard 3.0 only, group cards are sync groups, partition-host home set.
    pub fn icloud() -> Self {
        Self {
            name: "icloud",
            write_version: WriteVersion::V3,
            single_book: true,
            group_cards: true,
            credential_hosts: ICLOUD_PARTITION_HOSTS
                .iter()
                .map(|h| HostPattern((*h).to_string()))
                .collect(),
            ..Self::generic()
        }
    }

    /// Google's CardDAV: `Depth: 1` on sync-collection, a server-chosen href (`Location`),
    /// `If-Match` not honoured; vCard 3.0.
    pub fn google() -> Self {
        Self {
            name: "google",
            write_version: WriteVersion::V3,
            sync_depth: Some(Depth::One),
            honours_if_match: false,
            ..Self::generic()
        }
    }

    /// This profile, adjusted to what the address book advertises: a book whose
    /// `supported-address-data` lists vCard types but not 4.0 gets 3.0.
    pub fn adapt_to(&self, book: &AddressBookInfo) -> Self {
        let mut p = self.clone();
        let vcard_versions: Vec<&str> = book
            .supported_address_data
            .iter()
            .filter(|t| {
                t.content_type
                    .eq_ignore_ascii_case(names::CONTENT_TYPE_VCARD)
            })
            .map(|t| t.version.as_str())
            .collect();
        if !vcard_versions.is_empty() && !vcard_versions.contains(&names::VCARD_VERSION_4) {
            p.write_version = WriteVersion::V3;
        }
        p
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::prop::{AddressDataType, ResourceType};

    fn book(types: &[&str]) -> AddressBookInfo {
        AddressBookInfo {
            href: "/b/".into(),
            displayname: None,
            resourcetype: ResourceType::addressbook(),
            supported_address_data: types.iter().map(|v| AddressDataType::vcard(v)).collect(),
            ctag: None,
            sync_token: None,
            privileges: None,
            supported_reports: vec![],
            max_resource_size: None,
        }
    }

    #[test]
    fn generic_follows_advertised_versions() {
        let g = Profile::generic();
        assert_eq!(g.adapt_to(&book(&["3.0"])).write_version, WriteVersion::V3);
        assert_eq!(
            g.adapt_to(&book(&["3.0", "4.0"])).write_version,
            WriteVersion::V4
        );
        assert_eq!(g.adapt_to(&book(&[])).write_version, WriteVersion::V4);
    }

    #[test]
    fn icloud_and_google_quirks() {
        let i = Profile::icloud();
        assert_eq!(i.write_version, WriteVersion::V3);
        assert!(i.single_book && i.group_cards);
        assert_eq!(
            i.adapt_to(&book(&["3.0", "4.0"])).write_version,
            WriteVersion::V3
        );
        let g = Profile::google();
        assert_eq!(g.sync_depth, Some(Depth::One));
        assert!(!g.honours_if_match);
    }
}
