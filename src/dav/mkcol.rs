//! Extended MKCOL (RFC 5689 §5) for creating an address book (RFC 6352 §6.3.1), both halves:
//! the client builds the `DAV:mkcol` body with the resource type and initial properties; the
//! server parses it and renders the `DAV:mkcol-response` on failure.

use http::StatusCode;

use super::error::{DavError, Precondition};
use super::names;
use super::prop::ResourceType;
use super::propfind::xml_request;
use super::xml::{self, Element};

/// An extended MKCOL request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mkcol {
    /// The resource type to create (RFC 5689 §3).
    pub resourcetype: ResourceType,
    /// Other properties to set, e.g. `DAV:displayname`.
    pub props: Vec<Element>,
}

impl Mkcol {
    /// An address book with this display name.
    pub fn addressbook(displayname: &str) -> Self {
        Self {
            resourcetype: ResourceType::addressbook(),
            props: vec![Element::new(&names::DISPLAYNAME).with_text(displayname)],
        }
    }

    /// Client half: the XML body.
    pub fn body(&self) -> String {
        let prop = Element::new(&names::PROP)
            .with_child(self.resourcetype.to_element())
            .with_children(self.props.iter().cloned());
        xml::render(
            &Element::new(&names::MKCOL).with_child(Element::new(&names::SET).with_child(prop)),
        )
    }

    /// Client half: the request for `uri`.
    pub fn build_request(&self, uri: &str) -> Result<http::Request<String>, http::Error> {
        xml_request(names::METHOD_MKCOL, uri, None, self.body())
    }

    /// Client half: a 201 is success; otherwise the server's `mkcol-response` or `error` body,
    /// when it sent one, names what was refused.
    pub fn parse_response(status: StatusCode, body: &[u8]) -> Result<(), String> {
        if status == StatusCode::CREATED {
            return Ok(());
        }
        let detail = xml::parse(body).map(|e| e.clark()).unwrap_or_default();
        Err(format!("MKCOL answered {status} {detail}")
            .trim_end()
            .to_string())
    }

    /// Server half: reads the body; an empty body is a plain MKCOL (RFC 4918 §9.3).
    pub fn parse_request(body: &[u8]) -> Result<Self, DavError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self {
                resourcetype: ResourceType::collection(),
                props: Vec::new(),
            });
        }
        let root = xml::parse(body)?.expect_root(&names::MKCOL)?;
        let mut out = Self {
            resourcetype: ResourceType::collection(),
            props: Vec::new(),
        };
        for set in root.children_named(&names::SET) {
            let prop = set.require_child(&names::PROP)?;
            for p in &prop.children {
                if p.is(&names::RESOURCETYPE) {
                    out.resourcetype = ResourceType::from_element(p);
                } else {
                    out.props.push(p.clone());
                }
            }
        }
        Ok(out)
    }

    /// Server half: refuses a resource type the server cannot create (RFC 5689 §3,
    /// `DAV:valid-resourcetype`).
    pub fn refuse_resourcetype() -> DavError {
        DavError::with_precondition(
            StatusCode::FORBIDDEN,
            Precondition::ValidResourcetype,
            "this server does not create collections of that type",
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_body_radicale_accepts() {
        let req = Mkcol::addressbook("Contacts")
            .build_request("http://h/alice/contacts/")
            .unwrap();
        assert_eq!(req.method().as_str(), "MKCOL");
        assert_eq!(
            req.body(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:mkcol xmlns:d=\"DAV:\" xmlns:card=\"urn:ietf:params:xml:ns:carddav\"><d:set><d:prop><d:resourcetype><d:collection/><card:addressbook/></d:resourcetype><d:displayname>Contacts</d:displayname></d:prop></d:set></d:mkcol>"
        );
    }

    #[test]
    fn server_reads_the_client_body_and_a_plain_mkcol() {
        let m = Mkcol::addressbook("Ünï");
        assert_eq!(Mkcol::parse_request(m.body().as_bytes()).unwrap(), m);
        let plain = Mkcol::parse_request(b"").unwrap();
        assert!(plain.resourcetype.collection && !plain.resourcetype.addressbook);
    }

    #[test]
    fn client_reports_refusals() {
        assert!(Mkcol::parse_response(StatusCode::CREATED, b"").is_ok());
        let err = Mkcol::parse_response(
            StatusCode::FORBIDDEN,
            br#"<d:error xmlns:d="DAV:"><d:valid-resourcetype/></d:error>"#,
        )
        .unwrap_err();
        assert!(err.contains("403"), "{err}");
        assert_eq!(Mkcol::refuse_resourcetype().status, StatusCode::FORBIDDEN);
        assert!(Mkcol::parse_request(br#"<d:mkcol xmlns:d="DAV:"><d:set/></d:mkcol>"#).is_err());
    }
}
