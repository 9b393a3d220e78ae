//! PROPPATCH (RFC 4918 §9.2), both halves: the client builds a `DAV:propertyupdate` of set and
//! remove instructions and reads the multistatus; the server parses the instructions in document
//! order and renders one propstat per outcome.

use http::StatusCode;

use super::error::DavError;
use super::multistatus::{Multistatus, Propstat, Response};
use super::names::{self, QName};
use super::propfind::xml_request;
use super::xml::{self, Element, XmlError};

/// One instruction of a `DAV:propertyupdate` (RFC 4918 §14.19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `DAV:set`: the property element with its new value.
    Set(Element),
    /// `DAV:remove`: the property name.
    Remove(QName),
}

/// A PROPPATCH request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proppatch {
    /// Instructions, applied in document order (RFC 4918 §9.2).
    pub instructions: Vec<Instruction>,
}

impl Proppatch {
    /// Client half: the XML body.
    pub fn body(&self) -> String {
        let mut root = Element::new(&names::PROPERTYUPDATE);
        for i in &self.instructions {
            let (verb, prop) = match i {
                Instruction::Set(el) => (&names::SET, el.clone()),
                Instruction::Remove(name) => (&names::REMOVE, Element::new(name)),
            };
            root.push(Element::new(verb).with_child(Element::new(&names::PROP).with_child(prop)));
        }
        xml::render(&root)
    }

    /// Client half: the request for `uri`.
    pub fn build_request(&self, uri: &str) -> Result<http::Request<String>, http::Error> {
        xml_request(names::METHOD_PROPPATCH, uri, None, self.body())
    }

    /// Client half: parses the 207 body and returns the properties that did not get a 2xx.
    pub fn parse_response(body: &[u8]) -> Result<Vec<(QName, StatusCode)>, XmlError> {
        let ms = Multistatus::parse(body)?;
        Ok(ms
            .responses
            .iter()
            .flat_map(|r| r.propstats.iter())
            .filter(|ps| !ps.status.is_success())
            .flat_map(|ps| ps.props.iter().map(move |p| (p.qname(), ps.status)))
            .collect())
    }

    /// Server half: reads the body; an instruction without `DAV:prop` is a 400.
    pub fn parse_request(body: &[u8]) -> Result<Self, DavError> {
        let root = xml::parse(body)?.expect_root(&names::PROPERTYUPDATE)?;
        let mut instructions = Vec::new();
        for child in &root.children {
            let set = child.is(&names::SET);
            if !set && !child.is(&names::REMOVE) {
                continue;
            }
            let prop = child.child(&names::PROP).ok_or_else(|| {
                DavError::bad_request(format!("{} without DAV:prop", child.clark()))
            })?;
            for p in &prop.children {
                instructions.push(if set {
                    Instruction::Set(p.clone())
                } else {
                    Instruction::Remove(p.qname())
                });
            }
        }
        Ok(Self { instructions })
    }

    /// Server half: the response. `outcomes` gives each property's status in instruction order;
    /// RFC 4918 §9.2 makes PROPPATCH atomic, so when any instruction fails every other one is
    /// reported as `424 Failed Dependency`.
    pub fn respond(&self, href: &str, outcomes: &[StatusCode]) -> Response {
        let failed = outcomes.iter().any(|s| !s.is_success());
        let mut groups: Vec<Propstat> = Vec::new();
        for (i, instruction) in self.instructions.iter().enumerate() {
            let name = match instruction {
                Instruction::Set(el) => el.qname(),
                Instruction::Remove(n) => n.clone(),
            };
            let own = outcomes.get(i).copied().unwrap_or(StatusCode::FORBIDDEN);
            let status = if failed && own.is_success() {
                StatusCode::FAILED_DEPENDENCY
            } else {
                own
            };
            match groups.iter_mut().find(|g| g.status == status) {
                Some(g) => g.props.push(Element::new(&name)),
                None => groups.push(Propstat::new(status, vec![Element::new(&name)])),
            }
        }
        Response {
            href: href.to_string(),
            propstats: groups,
            ..Response::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Proppatch {
        Proppatch {
            instructions: vec![
                Instruction::Set(Element::new(&names::DISPLAYNAME).with_text("Work & Co")),
                Instruction::Remove(names::ADDRESSBOOK_DESCRIPTION),
            ],
        }
    }

    #[test]
    fn builds_the_exact_body() {
        let req = sample().build_request("http://h/ab/").unwrap();
        assert_eq!(req.method().as_str(), "PROPPATCH");
        assert_eq!(
            req.body(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:propertyupdate xmlns:d=\"DAV:\" xmlns:card=\"urn:ietf:params:xml:ns:carddav\"><d:set><d:prop><d:displayname>Work &amp; Co</d:displayname></d:prop></d:set><d:remove><d:prop><card:addressbook-description/></d:prop></d:remove></d:propertyupdate>"
        );
    }

    #[test]
    fn server_parses_what_the_client_builds_under_other_prefixes() {
        let body = r#"<A:propertyupdate xmlns:A="DAV:"><A:set><A:prop><A:displayname>X</A:displayname></A:prop></A:set><remove xmlns="DAV:"><prop><x:addressbook-description xmlns:x="urn:ietf:params:xml:ns:carddav"/></prop></remove></A:propertyupdate>"#;
        let p = Proppatch::parse_request(body.as_bytes()).unwrap();
        assert_eq!(p.instructions.len(), 2);
        assert!(
            matches!(&p.instructions[0], Instruction::Set(e) if e.is(&names::DISPLAYNAME) && e.text == "X")
        );
        assert_eq!(
            p.instructions[1],
            Instruction::Remove(names::ADDRESSBOOK_DESCRIPTION)
        );
        assert_eq!(
            Proppatch::parse_request(sample().body().as_bytes()).unwrap(),
            sample()
        );
    }

    #[test]
    fn a_failure_makes_the_rest_failed_dependency_and_the_client_sees_both() {
        let r = sample().respond("/ab/", &[StatusCode::OK, StatusCode::FORBIDDEN]);
        let ms = Multistatus {
            responses: vec![r],
            ..Multistatus::default()
        };
        let failed = Proppatch::parse_response(ms.render().as_bytes()).unwrap();
        assert_eq!(
            failed,
            vec![
                (names::DISPLAYNAME, StatusCode::FAILED_DEPENDENCY),
                (names::ADDRESSBOOK_DESCRIPTION, StatusCode::FORBIDDEN)
            ]
        );
        let ok = sample().respond("/ab/", &[StatusCode::OK, StatusCode::OK]);
        let ms = Multistatus {
            responses: vec![ok],
            ..Multistatus::default()
        };
        assert!(Proppatch::parse_response(ms.render().as_bytes())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refuses_set_without_prop_and_wrong_roots() {
        let e = Proppatch::parse_request(
            br#"<d:propertyupdate xmlns:d="DAV:"><d:set/></d:propertyupdate>"#,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(Proppatch::parse_request(br#"<d:propfind xmlns:d="DAV:"/>"#).is_err());
    }
}
