//! Typed readings and renderings of the property values this layer knows: `getetag`, `resourcetype`,
//! `supported-address-data`, `current-user-privilege-set`, `supported-report-set`, href-valued
//! properties and plain text properties. Everything else stays a raw [`Element`].

use super::names::{self, QName};
use super::xml::Element;

/// A text-valued property element (e.g. `displayname`, `getetag`, `getctag`, `sync-token`).
pub fn text(name: &QName, value: impl Into<String>) -> Element {
    Element::new(name).with_text(value)
}

/// The trimmed text of a text-valued property, `None` when empty.
pub fn text_of(prop: &Element) -> Option<String> {
    let t = prop.text_trimmed();
    (!t.is_empty()).then(|| t.to_string())
}

/// An href-valued property (e.g. `current-user-principal`, `addressbook-home-set`, RFC 5397 §3,
/// RFC 6352 §7.1.1).
pub fn hrefs_prop(name: &QName, hrefs: &[&str]) -> Element {
    Element::new(name).with_children(
        hrefs
            .iter()
            .map(|h| Element::new(&names::HREF).with_text(*h)),
    )
}

/// The `DAV:href`s inside a property, trimmed and non-empty.
pub fn hrefs_of(prop: &Element) -> Vec<String> {
    prop.children_named(&names::HREF)
        .map(|h| h.text_trimmed().to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

/// `DAV:resourcetype` (RFC 4918 §15.9) as flags plus any other types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceType {
    /// RFC 4918 §14.3 `DAV:collection`.
    pub collection: bool,
    /// RFC 6352 §5.2 `CARDDAV:addressbook`.
    pub addressbook: bool,
    /// RFC 3744 §4 `DAV:principal`.
    pub principal: bool,
    /// Any other resource type element, by name.
    pub other: Vec<QName>,
}

impl ResourceType {
    /// The type of an address book collection.
    pub fn addressbook() -> Self {
        Self {
            collection: true,
            addressbook: true,
            ..Self::default()
        }
    }

    /// The type of a plain collection.
    pub fn collection() -> Self {
        Self {
            collection: true,
            ..Self::default()
        }
    }

    /// Reads a `DAV:resourcetype` element.
    pub fn from_element(prop: &Element) -> Self {
        let mut rt = Self::default();
        for c in &prop.children {
            if c.is(&names::COLLECTION) {
                rt.collection = true;
            } else if c.is(&names::ADDRESSBOOK) {
                rt.addressbook = true;
            } else if c.is(&names::PRINCIPAL) {
                rt.principal = true;
            } else {
                rt.other.push(c.qname());
            }
        }
        rt
    }

    /// The `DAV:resourcetype` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new(&names::RESOURCETYPE);
        if self.collection {
            el.push(Element::new(&names::COLLECTION));
        }
        if self.addressbook {
            el.push(Element::new(&names::ADDRESSBOOK));
        }
        if self.principal {
            el.push(Element::new(&names::PRINCIPAL));
        }
        for o in &self.other {
            el.push(Element::new(o));
        }
        el
    }
}

/// One `CARDDAV:address-data-type` (RFC 6352 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressDataType {
    /// Media type, `text/vcard` by default.
    pub content_type: String,
    /// vCard version, `3.0` by default.
    pub version: String,
}

impl AddressDataType {
    /// `text/vcard` with the given version.
    pub fn vcard(version: &str) -> Self {
        Self {
            content_type: names::CONTENT_TYPE_VCARD.to_string(),
            version: version.to_string(),
        }
    }
}

/// Reads `CARDDAV:supported-address-data` (RFC 6352 §6.2.2); absent attributes take the RFC 6352
/// §10.3 defaults (`text/vcard`, `3.0`).
pub fn supported_address_data_of(prop: &Element) -> Vec<AddressDataType> {
    prop.children_named(&names::ADDRESS_DATA_TYPE)
        .map(|t| AddressDataType {
            content_type: t
                .attr(names::ATTR_CONTENT_TYPE)
                .unwrap_or(names::CONTENT_TYPE_VCARD)
                .to_string(),
            version: t
                .attr(names::ATTR_VERSION)
                .unwrap_or(names::VCARD_VERSION_3)
                .to_string(),
        })
        .collect()
}

/// Renders `CARDDAV:supported-address-data`.
pub fn supported_address_data(types: &[AddressDataType]) -> Element {
    Element::new(&names::SUPPORTED_ADDRESS_DATA).with_children(types.iter().map(|t| {
        Element::new(&names::ADDRESS_DATA_TYPE)
            .with_attr(names::ATTR_CONTENT_TYPE, t.content_type.clone())
            .with_attr(names::ATTR_VERSION, t.version.clone())
    }))
}

/// Reads `DAV:current-user-privilege-set` (RFC 3744 §5.4) into privilege names.
pub fn privileges_of(prop: &Element) -> Vec<QName> {
    prop.children_named(&names::PRIVILEGE)
        .flat_map(|p| p.children.iter().map(Element::qname))
        .collect()
}

/// Renders `DAV:current-user-privilege-set`.
pub fn privilege_set(privileges: &[QName]) -> Element {
    Element::new(&names::CURRENT_USER_PRIVILEGE_SET).with_children(
        privileges
            .iter()
            .map(|p| Element::new(&names::PRIVILEGE).with_child(Element::new(p))),
    )
}

/// True when the privilege list grants `wanted`, directly or through an aggregate (RFC 3744 §3.12
/// `all`, §3.2 `write` covering `write-content`/`write-properties`/`bind`/`unbind`).
pub fn grants(privileges: &[QName], wanted: &QName) -> bool {
    privileges.iter().any(|p| {
        p == wanted
            || *p == names::ALL
            || (*p == names::WRITE
                && [
                    names::WRITE_CONTENT,
                    names::WRITE_PROPERTIES,
                    names::BIND,
                    names::UNBIND,
                ]
                .contains(wanted))
    })
}

/// Reads `DAV:supported-report-set` (RFC 3253 §3.1.5) into report names.
pub fn supported_reports_of(prop: &Element) -> Vec<QName> {
    prop.children_named(&names::SUPPORTED_REPORT)
        .filter_map(|s| s.child(&names::REPORT))
        .flat_map(|r| r.children.iter().map(Element::qname))
        .collect()
}

/// Renders `DAV:supported-report-set`.
pub fn supported_report_set(reports: &[QName]) -> Element {
    Element::new(&names::SUPPORTED_REPORT_SET).with_children(reports.iter().map(|r| {
        Element::new(&names::SUPPORTED_REPORT)
            .with_child(Element::new(&names::REPORT).with_child(Element::new(r)))
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::xml;

    #[test]
    fn resourcetype_round_trip_and_unknown_types() {
        let el = xml::parse(br#"<d:resourcetype xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav" xmlns:x="urn:x"><d:collection/><c:addressbook/><x:shared/></d:resourcetype>"#).unwrap();
        let rt = ResourceType::from_element(&el);
        assert!(rt.collection && rt.addressbook && !rt.principal);
        assert_eq!(rt.other, vec![QName::new("urn:x", "shared")]);
        assert_eq!(ResourceType::from_element(&rt.to_element()), rt);
        assert_eq!(
            ResourceType::from_element(&ResourceType::addressbook().to_element()),
            ResourceType::addressbook()
        );
    }

    #[test]
    fn supported_address_data_defaults_and_round_trip() {
        let el = xml::parse(br#"<C:supported-address-data xmlns:C="urn:ietf:params:xml:ns:carddav"><C:address-data-type content-type="text/vcard" version="4.0"/><C:address-data-type/></C:supported-address-data>"#).unwrap();
        let types = supported_address_data_of(&el);
        assert_eq!(
            types,
            vec![AddressDataType::vcard("4.0"), AddressDataType::vcard("3.0")]
        );
        assert_eq!(
            supported_address_data_of(&supported_address_data(&types)),
            types
        );
    }

    #[test]
    fn privileges_and_grants() {
        let el = xml::parse(br#"<d:current-user-privilege-set xmlns:d="DAV:"><d:privilege><d:read/></d:privilege><d:privilege><d:write/></d:privilege></d:current-user-privilege-set>"#).unwrap();
        let p = privileges_of(&el);
        assert_eq!(p, vec![names::READ, names::WRITE]);
        assert!(grants(&p, &names::BIND));
        assert!(grants(&p, &names::WRITE_CONTENT));
        assert!(!grants(&[names::READ], &names::WRITE_CONTENT));
        assert!(grants(&[names::ALL], &names::UNBIND));
        assert_eq!(privileges_of(&privilege_set(&p)), p);
    }

    #[test]
    fn reports_and_hrefs() {
        let r = vec![names::SYNC_COLLECTION, names::ADDRESSBOOK_MULTIGET];
        assert_eq!(supported_reports_of(&supported_report_set(&r)), r);
        let h = hrefs_prop(&names::ADDRESSBOOK_HOME_SET, &["/a/", " "]);
        assert_eq!(hrefs_of(&h), vec!["/a/".to_string()]);
        assert_eq!(
            text_of(&text(&names::GETETAG, " \"x\" ")),
            Some("\"x\"".into())
        );
        assert_eq!(text_of(&text(&names::GETETAG, "  ")), None);
    }
}
