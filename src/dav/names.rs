//! Protocol names of the DAV layer: XML namespaces, element and attribute names, HTTP header names
//! and fixed values, each with the RFC section that defines it. No other file in `dav/` spells one.

use std::borrow::Cow;
use std::fmt;

/// The WebDAV namespace. RFC 4918 §21.
pub const NS_DAV: &str = "DAV:";
/// The CardDAV namespace. RFC 6352 §3 (and §14 for the registration).
pub const NS_CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
/// Apple's calendarserver namespace, home of `getctag` (calendarserver.org "ctag" extension).
pub const NS_CALSERVER: &str = "http://calendarserver.org/ns/";

/// Prefix the writer uses for [`NS_DAV`].
pub const PREFIX_DAV: &str = "d";
/// Prefix the writer uses for [`NS_CARDDAV`].
pub const PREFIX_CARDDAV: &str = "card";
/// Prefix the writer uses for [`NS_CALSERVER`].
pub const PREFIX_CALSERVER: &str = "cs";

/// A namespace-qualified XML name. Matching is by namespace URI and local name, never by prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QName {
    /// Namespace URI; empty when the name is in no namespace.
    pub ns: Cow<'static, str>,
    /// Local part of the name.
    pub local: Cow<'static, str>,
}

impl QName {
    /// A name built from static strings (usable in constants).
    pub const fn new_static(ns: &'static str, local: &'static str) -> Self {
        Self {
            ns: Cow::Borrowed(ns),
            local: Cow::Borrowed(local),
        }
    }

    /// A name built from owned or borrowed strings.
    pub fn new(ns: impl Into<String>, local: impl Into<String>) -> Self {
        Self {
            ns: Cow::Owned(ns.into()),
            local: Cow::Owned(local.into()),
        }
    }

    /// True when this name has namespace `ns` and local part `local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }
}

impl fmt::Display for QName {
    /// Clark notation: `{ns}local`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}{}", self.ns, self.local)
    }
}

const fn dav(local: &'static str) -> QName {
    QName::new_static(NS_DAV, local)
}
const fn card(local: &'static str) -> QName {
    QName::new_static(NS_CARDDAV, local)
}
const fn cs(local: &'static str) -> QName {
    QName::new_static(NS_CALSERVER, local)
}

// ---- RFC 4918 (WebDAV) elements -------------------------------------------------------------

/// RFC 4918 §14.1 `DAV:activelock`.
pub const ACTIVELOCK: QName = dav("activelock");
/// RFC 4918 §14.2 `DAV:allprop`.
pub const ALLPROP: QName = dav("allprop");
/// RFC 4918 §14.7 `DAV:href`.
pub const HREF: QName = dav("href");
/// RFC 4918 §14.8 `DAV:include`.
pub const INCLUDE: QName = dav("include");
/// RFC 4918 §14.12 `DAV:location`.
pub const LOCATION: QName = dav("location");
/// RFC 4918 §14.16 `DAV:multistatus`.
pub const MULTISTATUS: QName = dav("multistatus");
/// RFC 4918 §14.18 `DAV:prop`.
pub const PROP: QName = dav("prop");
/// RFC 4918 §14.19 `DAV:propertyupdate`.
pub const PROPERTYUPDATE: QName = dav("propertyupdate");
/// RFC 4918 §14.20 `DAV:propfind`.
pub const PROPFIND: QName = dav("propfind");
/// RFC 4918 §14.21 `DAV:propname`.
pub const PROPNAME: QName = dav("propname");
/// RFC 4918 §14.22 `DAV:propstat`.
pub const PROPSTAT: QName = dav("propstat");
/// RFC 4918 §14.23 `DAV:remove`.
pub const REMOVE: QName = dav("remove");
/// RFC 4918 §14.24 `DAV:response`.
pub const RESPONSE: QName = dav("response");
/// RFC 4918 §14.25 `DAV:responsedescription`.
pub const RESPONSEDESCRIPTION: QName = dav("responsedescription");
/// RFC 4918 §14.26 `DAV:set`.
pub const SET: QName = dav("set");
/// RFC 4918 §14.28 `DAV:status`.
pub const STATUS: QName = dav("status");
/// RFC 4918 §14.5 `DAV:error`.
pub const ERROR: QName = dav("error");

/// RFC 4918 §15.1 `DAV:creationdate`.
pub const CREATIONDATE: QName = dav("creationdate");
/// RFC 4918 §15.2 `DAV:displayname`.
pub const DISPLAYNAME: QName = dav("displayname");
/// RFC 4918 §15.3 `DAV:getcontentlanguage`.
pub const GETCONTENTLANGUAGE: QName = dav("getcontentlanguage");
/// RFC 4918 §15.4 `DAV:getcontentlength`.
pub const GETCONTENTLENGTH: QName = dav("getcontentlength");
/// RFC 4918 §15.5 `DAV:getcontenttype`.
pub const GETCONTENTTYPE: QName = dav("getcontenttype");
/// RFC 4918 §15.6 `DAV:getetag`.
pub const GETETAG: QName = dav("getetag");
/// RFC 4918 §15.7 `DAV:getlastmodified`.
pub const GETLASTMODIFIED: QName = dav("getlastmodified");
/// RFC 4918 §15.8 `DAV:lockdiscovery`.
pub const LOCKDISCOVERY: QName = dav("lockdiscovery");
/// RFC 4918 §15.9 `DAV:resourcetype`.
pub const RESOURCETYPE: QName = dav("resourcetype");
/// RFC 4918 §15.10 `DAV:supportedlock`.
pub const SUPPORTEDLOCK: QName = dav("supportedlock");
/// RFC 4918 §14.3 `DAV:collection` (a `resourcetype` value).
pub const COLLECTION: QName = dav("collection");

// ---- RFC 3253 §3.1.5 / RFC 6578 -------------------------------------------------------------

/// RFC 3253 §3.1.5 `DAV:supported-report-set`.
pub const SUPPORTED_REPORT_SET: QName = dav("supported-report-set");
/// RFC 3253 §3.1.5 `DAV:supported-report`.
pub const SUPPORTED_REPORT: QName = dav("supported-report");
/// RFC 3253 §3.1.5 `DAV:report`.
pub const REPORT: QName = dav("report");

/// RFC 6578 §6.1 `DAV:sync-collection` (the REPORT body).
pub const SYNC_COLLECTION: QName = dav("sync-collection");
/// RFC 6578 §6.2 `DAV:sync-token` (element and property, §4).
pub const SYNC_TOKEN: QName = dav("sync-token");
/// RFC 6578 §6.3 `DAV:sync-level`.
pub const SYNC_LEVEL: QName = dav("sync-level");
/// RFC 6578 §6.4 `DAV:limit` (RFC 5323 §5.17).
pub const LIMIT: QName = dav("limit");
/// RFC 5323 §5.17 `DAV:nresults`.
pub const NRESULTS: QName = dav("nresults");
/// RFC 6578 §3.7 precondition `DAV:valid-sync-token`.
pub const VALID_SYNC_TOKEN: QName = dav("valid-sync-token");
/// RFC 6578 §3.7 precondition `DAV:number-of-matches-within-limits` (from RFC 5323 §5.17).
pub const NUMBER_OF_MATCHES_WITHIN_LIMITS: QName = dav("number-of-matches-within-limits");

// ---- RFC 5397 -------------------------------------------------------------------------------

/// RFC 5397 §3 `DAV:current-user-principal`.
pub const CURRENT_USER_PRINCIPAL: QName = dav("current-user-principal");
/// RFC 5397 §3 `DAV:unauthenticated`.
pub const UNAUTHENTICATED: QName = dav("unauthenticated");

// ---- RFC 3744 (ACL) -------------------------------------------------------------------------

/// RFC 3744 §4 `DAV:principal` (a `resourcetype` value).
pub const PRINCIPAL: QName = dav("principal");
/// RFC 3744 §4.2 `DAV:principal-URL`.
pub const PRINCIPAL_URL: QName = dav("principal-URL");
/// RFC 3744 §5.1 `DAV:owner`.
pub const OWNER: QName = dav("owner");
/// RFC 3744 §5.4 `DAV:current-user-privilege-set`.
pub const CURRENT_USER_PRIVILEGE_SET: QName = dav("current-user-privilege-set");
/// RFC 3744 §5.3 `DAV:supported-privilege-set`.
pub const SUPPORTED_PRIVILEGE_SET: QName = dav("supported-privilege-set");
/// RFC 3744 §5.4 `DAV:privilege`.
pub const PRIVILEGE: QName = dav("privilege");
/// RFC 3744 §3.1 `DAV:read`.
pub const READ: QName = dav("read");
/// RFC 3744 §3.2 `DAV:write`.
pub const WRITE: QName = dav("write");
/// RFC 3744 §3.3 `DAV:write-properties`.
pub const WRITE_PROPERTIES: QName = dav("write-properties");
/// RFC 3744 §3.4 `DAV:write-content`.
pub const WRITE_CONTENT: QName = dav("write-content");
/// RFC 3744 §3.5 `DAV:unlock`.
pub const UNLOCK: QName = dav("unlock");
/// RFC 3744 §3.7 `DAV:read-current-user-privilege-set`.
pub const READ_CURRENT_USER_PRIVILEGE_SET: QName = dav("read-current-user-privilege-set");
/// RFC 3744 §3.8 `DAV:bind`.
pub const BIND: QName = dav("bind");
/// RFC 3744 §3.9 `DAV:unbind`.
pub const UNBIND: QName = dav("unbind");
/// RFC 3744 §3.12 `DAV:all`.
pub const ALL: QName = dav("all");
/// RFC 3744 §7.1.1 precondition `DAV:need-privileges`.
pub const NEED_PRIVILEGES: QName = dav("need-privileges");

// ---- RFC 5689 (extended MKCOL) ----------------------------------------------------------------

/// RFC 5689 §5.1 `DAV:mkcol` (request body).
pub const MKCOL: QName = dav("mkcol");
/// RFC 5689 §5.2 `DAV:mkcol-response`.
pub const MKCOL_RESPONSE: QName = dav("mkcol-response");
/// RFC 5689 §3 precondition `DAV:valid-resourcetype`.
pub const VALID_RESOURCETYPE: QName = dav("valid-resourcetype");
/// RFC 4918 §9.3.1 precondition `DAV:resource-must-be-null` (used by MKCOL).
pub const RESOURCE_MUST_BE_NULL: QName = dav("resource-must-be-null");

// ---- RFC 6352 (CardDAV) ---------------------------------------------------------------------

/// RFC 6352 §5.2 `CARDDAV:addressbook` (a `resourcetype` value).
pub const ADDRESSBOOK: QName = card("addressbook");
/// RFC 6352 §6.2.1 `CARDDAV:addressbook-description`.
pub const ADDRESSBOOK_DESCRIPTION: QName = card("addressbook-description");
/// RFC 6352 §6.2.2 `CARDDAV:supported-address-data`.
pub const SUPPORTED_ADDRESS_DATA: QName = card("supported-address-data");
/// RFC 6352 §6.2.3 `CARDDAV:max-resource-size`.
pub const MAX_RESOURCE_SIZE: QName = card("max-resource-size");
/// RFC 6352 §7.1.1 `CARDDAV:addressbook-home-set`.
pub const ADDRESSBOOK_HOME_SET: QName = card("addressbook-home-set");
/// RFC 6352 §7.1.2 `CARDDAV:principal-address`.
pub const PRINCIPAL_ADDRESS: QName = card("principal-address");
/// RFC 6352 §8.6 `CARDDAV:addressbook-query` (REPORT body).
pub const ADDRESSBOOK_QUERY: QName = card("addressbook-query");
/// RFC 6352 §8.7 `CARDDAV:addressbook-multiget` (REPORT body).
pub const ADDRESSBOOK_MULTIGET: QName = card("addressbook-multiget");
/// RFC 6352 §10.3 `CARDDAV:address-data-type`.
pub const ADDRESS_DATA_TYPE: QName = card("address-data-type");
/// RFC 6352 §10.4 `CARDDAV:address-data`.
pub const ADDRESS_DATA: QName = card("address-data");
/// RFC 6352 §10.4.1 `CARDDAV:allprop` (inside `address-data`).
pub const CARD_ALLPROP: QName = card("allprop");
/// RFC 6352 §10.4.2 `CARDDAV:prop` (inside `address-data`).
pub const CARD_PROP: QName = card("prop");
/// RFC 6352 §10.5 `CARDDAV:filter`.
pub const FILTER: QName = card("filter");
/// RFC 6352 §10.5.1 `CARDDAV:prop-filter`.
pub const PROP_FILTER: QName = card("prop-filter");
/// RFC 6352 §10.5.2 `CARDDAV:param-filter`.
pub const PARAM_FILTER: QName = card("param-filter");
/// RFC 6352 §10.5.3 `CARDDAV:is-not-defined`.
pub const IS_NOT_DEFINED: QName = card("is-not-defined");
/// RFC 6352 §10.5.4 `CARDDAV:text-match`.
pub const TEXT_MATCH: QName = card("text-match");
/// RFC 6352 §8.6.1 `CARDDAV:limit`.
pub const CARD_LIMIT: QName = card("limit");
/// RFC 6352 §8.6.1 `CARDDAV:nresults`.
pub const CARD_NRESULTS: QName = card("nresults");
/// RFC 6352 §6.3.2.1 precondition `CARDDAV:supported-address-data`.
pub const PRE_SUPPORTED_ADDRESS_DATA: QName = card("supported-address-data");
/// RFC 6352 §6.3.2.1 precondition `CARDDAV:valid-address-data`.
pub const VALID_ADDRESS_DATA: QName = card("valid-address-data");
/// RFC 6352 §6.3.2.1 precondition `CARDDAV:no-uid-conflict`.
pub const NO_UID_CONFLICT: QName = card("no-uid-conflict");
/// RFC 6352 §6.3.2.1 precondition `CARDDAV:max-resource-size`.
pub const PRE_MAX_RESOURCE_SIZE: QName = card("max-resource-size");
/// RFC 6352 §8.3 precondition `CARDDAV:supported-collation`.
pub const SUPPORTED_COLLATION: QName = card("supported-collation");
/// RFC 6352 §8.3.1 `CARDDAV:supported-collation-set` property.
pub const SUPPORTED_COLLATION_SET: QName = card("supported-collation-set");
/// RFC 6352 §8.6 precondition `CARDDAV:supported-filter`.
pub const SUPPORTED_FILTER: QName = card("supported-filter");
/// RFC 6352 §8.7 precondition `CARDDAV:supported-address-data-conversion`.
pub const SUPPORTED_ADDRESS_DATA_CONVERSION: QName = card("supported-address-data-conversion");

// ---- calendarserver.org ---------------------------------------------------------------------

/// calendarserver.org "ctag" extension (caldav-ctag-02 §4.1) `CS:getctag`.
pub const GETCTAG: QName = cs("getctag");

// ---- attribute names (unqualified) ------------------------------------------------------------

/// RFC 6352 §10.3 / §10.4 attribute `content-type`.
pub const ATTR_CONTENT_TYPE: &str = "content-type";
/// RFC 6352 §10.3 / §10.4 attribute `version`.
pub const ATTR_VERSION: &str = "version";
/// RFC 6352 §10.4.2 / §10.5.1 / §10.5.2 attribute `name`.
pub const ATTR_NAME: &str = "name";
/// RFC 6352 §10.4.2 attribute `novalue`.
pub const ATTR_NOVALUE: &str = "novalue";
/// RFC 6352 §10.5 / §10.5.1 attribute `test`.
pub const ATTR_TEST: &str = "test";
/// RFC 6352 §10.5.4 attribute `collation`.
pub const ATTR_COLLATION: &str = "collation";
/// RFC 6352 §10.5.4 attribute `negate-condition`.
pub const ATTR_NEGATE_CONDITION: &str = "negate-condition";
/// RFC 6352 §10.5.4 attribute `match-type`.
pub const ATTR_MATCH_TYPE: &str = "match-type";

// ---- HTTP header names and fixed values ----------------------------------------------------

/// RFC 4918 §10.1 `DAV` header (compliance classes).
pub const HEADER_DAV: &str = "DAV";
/// RFC 4918 §10.2 `Depth` header.
pub const HEADER_DEPTH: &str = "Depth";
/// RFC 4918 §10.3 `Destination` header.
pub const HEADER_DESTINATION: &str = "Destination";
/// RFC 4918 §10.4 `If` header.
pub const HEADER_IF: &str = "If";
/// RFC 4918 §10.6 `Overwrite` header.
pub const HEADER_OVERWRITE: &str = "Overwrite";
/// RFC 7232 §3.1 `If-Match` header.
pub const HEADER_IF_MATCH: &str = "If-Match";
/// RFC 7232 §3.2 `If-None-Match` header.
pub const HEADER_IF_NONE_MATCH: &str = "If-None-Match";
/// RFC 7231 §7.1.2 `Location` header.
pub const HEADER_LOCATION: &str = "Location";
/// RFC 7240 §2 `Prefer` header (`return=minimal`, used by Apple clients).
pub const HEADER_PREFER: &str = "Prefer";
/// RFC 4918 §9.1 method `PROPFIND`.
pub const METHOD_PROPFIND: &str = "PROPFIND";
/// RFC 4918 §9.2 method `PROPPATCH`.
pub const METHOD_PROPPATCH: &str = "PROPPATCH";
/// RFC 4918 §9.3 / RFC 5689 §3 method `MKCOL`.
pub const METHOD_MKCOL: &str = "MKCOL";
/// RFC 3253 §3.6 method `REPORT` (used by RFC 6578 and RFC 6352).
pub const METHOD_REPORT: &str = "REPORT";
/// RFC 4918 §10.2 `Depth: 0`.
pub const DEPTH_ZERO: &str = "0";
/// RFC 4918 §10.2 `Depth: 1`.
pub const DEPTH_ONE: &str = "1";
/// RFC 4918 §10.2 `Depth: infinity`.
pub const DEPTH_INFINITY: &str = "infinity";
/// RFC 6352 §6.1 DAV compliance class `addressbook`.
pub const DAV_CLASS_ADDRESSBOOK: &str = "addressbook";
/// RFC 4918 §18 DAV compliance classes this layer speaks (`1, 3`) plus RFC 3744 §7.2 `access-control`.
pub const DAV_CLASSES_BASE: &str = "1, 3, access-control";
/// RFC 5397/6578 have no class; RFC 5689 §3.1 `extended-mkcol`.
pub const DAV_CLASS_EXTENDED_MKCOL: &str = "extended-mkcol";

/// RFC 4918 §8.2 / RFC 7303 media type for XML bodies.
pub const CONTENT_TYPE_XML: &str = "application/xml; charset=utf-8";
/// RFC 6350 §10.1 / RFC 6352 §5.1 media type of vCard data.
pub const CONTENT_TYPE_VCARD: &str = "text/vcard";
/// RFC 6352 §5.1.1: vCard versions this layer names.
pub const VCARD_VERSION_3: &str = "3.0";
/// RFC 6352 §5.1.1 / RFC 6350 §6.7.9 vCard 4.0.
pub const VCARD_VERSION_4: &str = "4.0";

/// RFC 6578 §3.4 sync-level `1`.
pub const SYNC_LEVEL_ONE: &str = "1";
/// RFC 6578 §3.3 sync-level `infinite`.
pub const SYNC_LEVEL_INFINITE: &str = "infinite";

/// RFC 4790 §9.3 collation `i;octet`.
pub const COLLATION_OCTET: &str = "i;octet";
/// RFC 4790 §9.2 collation `i;ascii-casemap`.
pub const COLLATION_ASCII_CASEMAP: &str = "i;ascii-casemap";
/// RFC 5051 collation `i;unicode-casemap` (RFC 6352 §8.3: the CardDAV default).
pub const COLLATION_UNICODE_CASEMAP: &str = "i;unicode-casemap";

/// RFC 6352 §10.5.4 `match-type="equals"`.
pub const MATCH_EQUALS: &str = "equals";
/// RFC 6352 §10.5.4 `match-type="contains"` (the default).
pub const MATCH_CONTAINS: &str = "contains";
/// RFC 6352 §10.5.4 `match-type="starts-with"`.
pub const MATCH_STARTS_WITH: &str = "starts-with";
/// RFC 6352 §10.5.4 `match-type="ends-with"`.
pub const MATCH_ENDS_WITH: &str = "ends-with";
/// RFC 6352 §10.5 `test="anyof"` (the default).
pub const TEST_ANYOF: &str = "anyof";
/// RFC 6352 §10.5 `test="allof"`.
pub const TEST_ALLOF: &str = "allof";
/// RFC 6352 §10.5.4 `negate-condition="yes"`.
pub const YES: &str = "yes";
/// RFC 6352 §10.5.4 `negate-condition="no"`.
pub const NO: &str = "no";

/// RFC 6764 §5 well-known URI path for CardDAV.
pub const WELL_KNOWN_CARDDAV: &str = "/.well-known/carddav";
/// RFC 6764 §3 SRV service label for CardDAV over TLS.
pub const SRV_CARDDAVS: &str = "_carddavs._tcp";
/// RFC 6764 §3 SRV service label for CardDAV without TLS.
pub const SRV_CARDDAV: &str = "_carddav._tcp";
/// RFC 6764 §4 TXT record key carrying the context path.
pub const TXT_PATH_KEY: &str = "path";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clark_notation() {
        assert_eq!(GETETAG.to_string(), "{DAV:}getetag");
        assert_eq!(
            GETCTAG.to_string(),
            "{http://calendarserver.org/ns/}getctag"
        );
    }

    #[test]
    fn owned_and_static_names_compare_equal() {
        assert_eq!(QName::new("DAV:", "getetag"), GETETAG);
        assert!(ADDRESS_DATA.is(NS_CARDDAV, "address-data"));
        assert!(!ADDRESS_DATA.is(NS_DAV, "address-data"));
    }
}
