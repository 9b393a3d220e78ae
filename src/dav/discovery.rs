//! CardDAV discovery requests and readings (RFC 6764, RFC 5397, RFC 6352 §7.1): the PROPFINDs for
//! `current-user-principal`, `addressbook-home-set` and the address books of a home set, and the pure
//! reading of their answers. Following redirects, DNS SRV/TXT and host changes belong to the client.

use super::multistatus::Multistatus;
use super::names::{self, QName};
use super::prop::{self, AddressDataType, ResourceType};
use super::propfind::{Depth, Propfind};

/// PROPFIND Depth 0 for `current-user-principal` (RFC 5397 §3) and `principal-URL` (RFC 3744 §4.2).
pub fn principal_request() -> Propfind {
    Propfind::props(
        Depth::Zero,
        &[names::CURRENT_USER_PRINCIPAL, names::PRINCIPAL_URL],
    )
}

/// The principal href from a [`principal_request`] answer (`current-user-principal` first).
pub fn parse_principal(ms: &Multistatus) -> Option<String> {
    ms.responses.iter().find_map(|r| {
        r.prop(&names::CURRENT_USER_PRINCIPAL)
            .or_else(|| r.prop(&names::PRINCIPAL_URL))
            .and_then(|p| prop::hrefs_of(p).into_iter().next())
    })
}

/// PROPFIND Depth 0 on the principal for `addressbook-home-set` (RFC 6352 §7.1.1).
pub fn home_set_request() -> Propfind {
    Propfind::props(Depth::Zero, &[names::ADDRESSBOOK_HOME_SET])
}

/// The home-set hrefs (possibly absolute URLs on another host, as iCloud sends).
pub fn parse_home_set(ms: &Multistatus) -> Vec<String> {
    ms.responses
        .iter()
        .filter_map(|r| r.prop(&names::ADDRESSBOOK_HOME_SET))
        .flat_map(prop::hrefs_of)
        .collect()
}

/// The properties listed for each address book.
pub const ADDRESSBOOK_PROPS: [QName; 8] = [
    names::RESOURCETYPE,
    names::DISPLAYNAME,
    names::SUPPORTED_ADDRESS_DATA,
    names::GETCTAG,
    names::SYNC_TOKEN,
    names::CURRENT_USER_PRIVILEGE_SET,
    names::SUPPORTED_REPORT_SET,
    names::MAX_RESOURCE_SIZE,
];

/// PROPFIND Depth 1 on a home set listing its address books.
pub fn addressbooks_request() -> Propfind {
    Propfind::props(Depth::One, &ADDRESSBOOK_PROPS)
}

/// What discovery knows about one address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressBookInfo {
    /// Its href.
    pub href: String,
    /// `DAV:displayname`.
    pub displayname: Option<String>,
    /// `DAV:resourcetype`.
    pub resourcetype: ResourceType,
    /// `CARDDAV:supported-address-data` (empty when not advertised).
    pub supported_address_data: Vec<AddressDataType>,
    /// `CS:getctag`.
    pub ctag: Option<String>,
    /// `DAV:sync-token`.
    pub sync_token: Option<String>,
    /// `DAV:current-user-privilege-set` (`None` when not advertised).
    pub privileges: Option<Vec<QName>>,
    /// `DAV:supported-report-set` (empty when not advertised).
    pub supported_reports: Vec<QName>,
    /// `CARDDAV:max-resource-size`.
    pub max_resource_size: Option<u64>,
}

impl AddressBookInfo {
    /// True when the server advertises `sync-collection` or hands out a sync token.
    pub fn supports_sync_collection(&self) -> bool {
        self.sync_token.is_some() || self.supported_reports.contains(&names::SYNC_COLLECTION)
    }
}

/// The address books (resources whose type includes `CARDDAV:addressbook`) in an
/// [`addressbooks_request`] answer.
pub fn parse_addressbooks(ms: &Multistatus) -> Vec<AddressBookInfo> {
    ms.responses
        .iter()
        .filter_map(|r| {
            let resourcetype = r
                .prop(&names::RESOURCETYPE)
                .map(ResourceType::from_element)
                .unwrap_or_default();
            if !resourcetype.addressbook {
                return None;
            }
            Some(AddressBookInfo {
                href: r.href.clone(),
                displayname: r.prop_text(&names::DISPLAYNAME).map(str::to_string),
                resourcetype,
                supported_address_data: r
                    .prop(&names::SUPPORTED_ADDRESS_DATA)
                    .map(prop::supported_address_data_of)
                    .unwrap_or_default(),
                ctag: r.prop_text(&names::GETCTAG).map(str::to_string),
                sync_token: r.prop_text(&names::SYNC_TOKEN).map(str::to_string),
                privileges: r
                    .prop(&names::CURRENT_USER_PRIVILEGE_SET)
                    .map(prop::privileges_of),
                supported_reports: r
                    .prop(&names::SUPPORTED_REPORT_SET)
                    .map(prop::supported_reports_of)
                    .unwrap_or_default(),
                max_resource_size: r
                    .prop_text(&names::MAX_RESOURCE_SIZE)
                    .and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// The context path from an RFC 6764 §4 TXT record (`path=/dav/`); `None` when absent or not
/// absolute.
pub fn txt_path(txt: &str) -> Option<String> {
    txt.split_whitespace()
        .filter_map(|kv| kv.trim_matches('"').split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(names::TXT_PATH_KEY))
        .map(|(_, v)| v.to_string())
        .filter(|v| v.starts_with('/'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dav");

    fn ms(path: &str) -> Multistatus {
        Multistatus::parse(&std::fs::read(format!("{FIX}/{path}")).unwrap()).unwrap()
    }

    #[test]
    fn builds_requests() {
        assert_eq!(principal_request().body(), "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:propfind xmlns:d=\"DAV:\"><d:prop><d:current-user-principal/><d:principal-URL/></d:prop></d:propfind>");
        assert_eq!(
            home_set_request().build_request("/p/").unwrap().headers()["Depth"],
            "0"
        );
        assert_eq!(
            addressbooks_request()
                .build_request("/h/")
                .unwrap()
                .headers()["Depth"],
            "1"
        );
    }

    #[test]
    fn icloud_principal_and_partition_home_set() {
        assert_eq!(
            parse_principal(&ms("responses/icloud/principal.xml")).as_deref(),
            Some("/1234567/principal/")
        );
        assert_eq!(
            parse_home_set(&ms("responses/icloud/home-set.xml")),
            vec!["https://p42-contacts.icloud.com:443/1234567/carddavhome/".to_string()]
        );
    }

    #[test]
    fn sabre_addressbooks() {
        let books = parse_addressbooks(&ms("responses/sabre/addressbooks.xml"));
        assert_eq!(
            books.len(),
            1,
            "the home collection itself is not an address book"
        );
        let b = &books[0];
        assert_eq!(b.href, "/remote.php/dav/addressbooks/users/alice/contacts/");
        assert_eq!(b.displayname.as_deref(), Some("Contacts"));
        assert_eq!(b.ctag.as_deref(), Some("http://sabre.io/ns/sync/12"));
        assert!(b.supports_sync_collection());
        assert_eq!(
            b.supported_address_data,
            vec![AddressDataType::vcard("3.0"), AddressDataType::vcard("4.0")]
        );
        assert!(prop::grants(
            b.privileges.as_ref().unwrap(),
            &names::WRITE_CONTENT
        ));
        assert_eq!(b.max_resource_size, Some(10_000_000));
    }

    #[test]
    fn txt_records() {
        assert_eq!(txt_path("path=/dav/").as_deref(), Some("/dav/"));
        assert_eq!(txt_path("\"path=/x\"").as_deref(), Some("/x"));
        assert_eq!(txt_path("path=relative"), None);
        assert_eq!(txt_path("other=1"), None);
    }
}
