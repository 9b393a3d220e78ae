//! PROPFIND (RFC 4918 §9.1), both halves: the client builds the request (`prop`, `propname`,
//! `allprop` with `include`, and the `Depth` header) and parses the multistatus; the server parses the
//! request and builds each resource's response (200 and 404 propstats).

use http::HeaderValue;

use super::error::DavError;
use super::multistatus::{Multistatus, Response};
use super::names::{self, QName};
use super::xml::{self, Element, XmlError};

/// The `Depth` header (RFC 4918 §10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// `0`: the resource only.
    Zero,
    /// `1`: the resource and its members.
    One,
    /// `infinity`: the whole subtree.
    Infinity,
}

impl Depth {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Depth::Zero => names::DEPTH_ZERO,
            Depth::One => names::DEPTH_ONE,
            Depth::Infinity => names::DEPTH_INFINITY,
        }
    }

    /// Reads the header; `default` applies when it is absent (RFC 4918 §9.1: `infinity` for
    /// PROPFIND; RFC 6578 §3.2: `0` for REPORTs).
    pub fn from_header(value: Option<&HeaderValue>, default: Depth) -> Result<Depth, DavError> {
        let Some(value) = value else {
            return Ok(default);
        };
        match value.to_str().map(str::trim) {
            Ok(names::DEPTH_ZERO) => Ok(Depth::Zero),
            Ok(names::DEPTH_ONE) => Ok(Depth::One),
            Ok(v) if v.eq_ignore_ascii_case(names::DEPTH_INFINITY) => Ok(Depth::Infinity),
            _ => Err(DavError::bad_request(format!(
                "invalid Depth header {:?}",
                String::from_utf8_lossy(value.as_bytes())
            ))),
        }
    }
}

/// What a PROPFIND asks for (RFC 4918 §14.20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `DAV:prop`: these properties.
    Prop(Vec<QName>),
    /// `DAV:propname`: names only.
    PropName,
    /// `DAV:allprop`, plus the `DAV:include` names.
    AllProp(Vec<QName>),
}

/// A PROPFIND request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propfind {
    /// The `Depth` header.
    pub depth: Depth,
    /// The body.
    pub selection: Selection,
}

impl Propfind {
    /// A `DAV:prop` PROPFIND for these properties.
    pub fn props(depth: Depth, props: &[QName]) -> Self {
        Self {
            depth,
            selection: Selection::Prop(props.to_vec()),
        }
    }

    /// Client half: the XML body.
    pub fn body(&self) -> String {
        let inner = match &self.selection {
            Selection::Prop(props) => {
                Element::new(&names::PROP).with_children(props.iter().map(Element::new))
            }
            Selection::PropName => Element::new(&names::PROPNAME),
            Selection::AllProp(include) => {
                let allprop = Element::new(&names::ALLPROP);
                if include.is_empty() {
                    allprop
                } else {
                    return xml::render(
                        &Element::new(&names::PROPFIND)
                            .with_child(allprop)
                            .with_child(
                                Element::new(&names::INCLUDE)
                                    .with_children(include.iter().map(Element::new)),
                            ),
                    );
                }
            }
        };
        xml::render(&Element::new(&names::PROPFIND).with_child(inner))
    }

    /// Client half: the request for `uri`.
    pub fn build_request(&self, uri: &str) -> Result<http::Request<String>, http::Error> {
        xml_request(names::METHOD_PROPFIND, uri, Some(self.depth), self.body())
    }

    /// Client half: parses the 207 body.
    pub fn parse_response(body: &[u8]) -> Result<Multistatus, XmlError> {
        Multistatus::parse(body)
    }

    /// Server half: reads the `Depth` header and body; an empty body means `allprop`
    /// (RFC 4918 §9.1), an absent `Depth` means `infinity`.
    pub fn parse_request(depth: Option<&HeaderValue>, body: &[u8]) -> Result<Self, DavError> {
        let depth = Depth::from_header(depth, Depth::Infinity)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self {
                depth,
                selection: Selection::AllProp(Vec::new()),
            });
        }
        let root = xml::parse(body)?.expect_root(&names::PROPFIND)?;
        let selection = if let Some(prop) = root.child(&names::PROP) {
            Selection::Prop(prop.children.iter().map(Element::qname).collect())
        } else if root.child(&names::PROPNAME).is_some() {
            Selection::PropName
        } else if root.child(&names::ALLPROP).is_some() {
            Selection::AllProp(
                root.child(&names::INCLUDE)
                    .map(|i| i.children.iter().map(Element::qname).collect())
                    .unwrap_or_default(),
            )
        } else {
            return Err(DavError::bad_request(
                "propfind holds none of prop, propname, allprop",
            ));
        };
        Ok(Self { depth, selection })
    }

    /// Server half: the response for one resource. `lookup` yields a property's value when the resource
    /// has it; `allprop` lists the names the resource reports for `allprop`/`propname`. Requested but
    /// unknown properties come back in a 404 propstat.
    pub fn respond(
        &self,
        href: &str,
        allprop: &[QName],
        mut lookup: impl FnMut(&QName) -> Option<Element>,
    ) -> Response {
        match &self.selection {
            Selection::Prop(props) => {
                let mut found = Vec::with_capacity(props.len());
                let mut missing = Vec::new();
                for p in props {
                    match lookup(p) {
                        Some(v) => found.push(v),
                        None => missing.push(p.clone()),
                    }
                }
                Response::with_props(href, found, &missing)
            }
            Selection::PropName => Response::with_props(
                href,
                allprop
                    .iter()
                    .filter(|n| lookup(n).is_some())
                    .map(Element::new)
                    .collect(),
                &[],
            ),
            Selection::AllProp(include) => {
                let mut found: Vec<Element> = allprop.iter().filter_map(&mut lookup).collect();
                for n in include {
                    if !allprop.contains(n) {
                        if let Some(v) = lookup(n) {
                            found.push(v);
                        }
                    }
                }
                Response::with_props(href, found, &[])
            }
        }
    }
}

/// Builds an XML-bodied DAV request (shared by the operation files).
pub(crate) fn xml_request(
    method: &str,
    uri: &str,
    depth: Option<Depth>,
    body: String,
) -> Result<http::Request<String>, http::Error> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, names::CONTENT_TYPE_XML);
    if let Some(d) = depth {
        b = b.header(names::HEADER_DEPTH, d.as_str());
    }
    b.body(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::prop;
    use http::StatusCode;

    #[test]
    fn builds_prop_request() {
        let req = Propfind::props(
            Depth::One,
            &[names::GETETAG, names::RESOURCETYPE, names::GETCTAG],
        )
        .build_request("https://dav.example/ab/")
        .unwrap();
        assert_eq!(req.method().as_str(), "PROPFIND");
        assert_eq!(req.headers()["Depth"], "1");
        assert_eq!(req.headers()["Content-Type"], names::CONTENT_TYPE_XML);
        assert_eq!(
            req.body(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:propfind xmlns:d=\"DAV:\" xmlns:cs=\"http://calendarserver.org/ns/\"><d:prop><d:getetag/><d:resourcetype/><cs:getctag/></d:prop></d:propfind>"
        );
    }

    #[test]
    fn builds_propname_and_allprop() {
        let p = Propfind {
            depth: Depth::Zero,
            selection: Selection::PropName,
        };
        assert_eq!(p.body(), "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:propfind xmlns:d=\"DAV:\"><d:propname/></d:propfind>");
        let a = Propfind {
            depth: Depth::Infinity,
            selection: Selection::AllProp(vec![names::SUPPORTED_REPORT_SET]),
        };
        assert_eq!(a.body(), "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:propfind xmlns:d=\"DAV:\"><d:allprop/><d:include><d:supported-report-set/></d:include></d:propfind>");
        assert_eq!(a.build_request("/").unwrap().headers()["Depth"], "infinity");
        for p in [p, a] {
            let back = Propfind::parse_request(
                Some(&HeaderValue::from_static(p.depth.as_str())),
                p.body().as_bytes(),
            )
            .unwrap();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn parses_depth_header() {
        assert_eq!(
            Depth::from_header(None, Depth::Infinity).unwrap(),
            Depth::Infinity
        );
        assert_eq!(
            Depth::from_header(Some(&HeaderValue::from_static("Infinity")), Depth::Zero).unwrap(),
            Depth::Infinity
        );
        let e = Depth::from_header(Some(&HeaderValue::from_static("2")), Depth::Zero).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn empty_body_is_allprop() {
        let p = Propfind::parse_request(Some(&HeaderValue::from_static("0")), b"  \n").unwrap();
        assert_eq!(p.selection, Selection::AllProp(vec![]));
        assert_eq!(p.depth, Depth::Zero);
    }

    #[test]
    fn refuses_bad_bodies() {
        let e = Propfind::parse_request(None, br#"<d:propfind xmlns:d="DAV:"/>"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e =
            Propfind::parse_request(None, br#"<d:propertyupdate xmlns:d="DAV:"/>"#).unwrap_err();
        assert!(e.message.contains("propertyupdate"));
        let e = Propfind::parse_request(None, b"<!DOCTYPE x><x/>").unwrap_err();
        assert!(e.message.contains("DOCTYPE"));
    }

    #[test]
    fn server_answers_known_and_unknown_props() {
        let p = Propfind::parse_request(
            Some(&HeaderValue::from_static("0")),
            br#"<propfind xmlns="DAV:" xmlns:x="urn:x"><prop><displayname/><x:unknown/><resourcetype/></prop></propfind>"#,
        )
        .unwrap();
        let all = [names::DISPLAYNAME, names::RESOURCETYPE];
        let lookup = |n: &QName| {
            if *n == names::DISPLAYNAME {
                Some(prop::text(&names::DISPLAYNAME, "Persons"))
            } else if *n == names::RESOURCETYPE {
                Some(prop::ResourceType::addressbook().to_element())
            } else {
                None
            }
        };
        let r = p.respond("/dav/addressbooks/u/persons/", &all, lookup);
        assert_eq!(r.prop_text(&names::DISPLAYNAME), Some("Persons"));
        assert_eq!(
            r.prop_status(&QName::new("urn:x", "unknown")),
            Some(StatusCode::NOT_FOUND)
        );
        let ms = Multistatus {
            responses: vec![r],
            ..Default::default()
        };
        assert_eq!(
            Propfind::parse_response(ms.render().as_bytes()).unwrap(),
            ms
        );

        let pn = Propfind {
            depth: Depth::Zero,
            selection: Selection::PropName,
        };
        let r = pn.respond("/x/", &all, lookup);
        assert_eq!(
            r.propstats[0].props,
            vec![
                Element::new(&names::DISPLAYNAME),
                Element::new(&names::RESOURCETYPE)
            ]
        );
        let ap = Propfind {
            depth: Depth::Zero,
            selection: Selection::AllProp(vec![names::GETCTAG]),
        };
        let r = ap.respond("/x/", &all, lookup);
        assert_eq!(r.propstats.len(), 1);
        assert_eq!(r.propstats[0].props.len(), 2);
    }
}
