//! `CARDDAV:address-data` (RFC 6352 §10.4) as requested inside REPORTs and returned in answers:
//! the request form (content-type/version choice, partial property list), the property list a REPORT
//! asks for, and a small lossless reader of vCard content lines used for partial `address-data` and
//! for query filtering. The full vCard model lives in `vcard/`; this only splits lines.

use super::multistatus::Response;
use super::names::{self, QName};
use super::xml::{Element, XmlError};

/// One `CARDDAV:prop` inside `address-data` (RFC 6352 §10.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPropRequest {
    /// vCard property name, e.g. `EMAIL`.
    pub name: String,
    /// `novalue="yes"`: the property without its value.
    pub novalue: bool,
}

/// A requested `CARDDAV:address-data` (RFC 6352 §10.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressDataRequest {
    /// Requested media type (`content-type` attribute).
    pub content_type: Option<String>,
    /// Requested vCard version (`version` attribute).
    pub version: Option<String>,
    /// Requested properties; `None` means all (`CARDDAV:allprop` or no children).
    pub props: Option<Vec<CardPropRequest>>,
}

impl AddressDataRequest {
    /// Reads an `address-data` element from a request.
    pub fn from_element(el: &Element) -> Self {
        let props: Vec<CardPropRequest> = el
            .children_named(&names::CARD_PROP)
            .filter_map(|p| {
                p.attr(names::ATTR_NAME).map(|n| CardPropRequest {
                    name: n.to_ascii_uppercase(),
                    novalue: p.attr(names::ATTR_NOVALUE) == Some(names::YES),
                })
            })
            .collect();
        let all = el.child(&names::CARD_ALLPROP).is_some() || props.is_empty();
        Self {
            content_type: el.attr(names::ATTR_CONTENT_TYPE).map(str::to_string),
            version: el.attr(names::ATTR_VERSION).map(str::to_string),
            props: (!all).then_some(props),
        }
    }

    /// The `address-data` element for a request.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new(&names::ADDRESS_DATA);
        if let Some(ct) = &self.content_type {
            el = el.with_attr(names::ATTR_CONTENT_TYPE, ct.clone());
        }
        if let Some(v) = &self.version {
            el = el.with_attr(names::ATTR_VERSION, v.clone());
        }
        if let Some(props) = &self.props {
            for p in props {
                let mut c =
                    Element::new(&names::CARD_PROP).with_attr(names::ATTR_NAME, p.name.clone());
                if p.novalue {
                    c = c.with_attr(names::ATTR_NOVALUE, names::YES);
                }
                el.push(c);
            }
        }
        el
    }

    /// Applies the partial property list to a vCard text (already in the requested version).
    pub fn apply(&self, vcard: &str) -> String {
        match &self.props {
            None => vcard.to_string(),
            Some(props) => select_properties(vcard, props),
        }
    }
}

/// What a REPORT asks for per member: WebDAV properties plus optionally `address-data`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportProps {
    /// Requested properties other than `address-data`.
    pub props: Vec<QName>,
    /// The `address-data` request, when present.
    pub address_data: Option<AddressDataRequest>,
}

impl ReportProps {
    /// Reads the `DAV:prop` of a REPORT (absent: nothing requested).
    pub fn from_prop(prop: Option<&Element>) -> Self {
        let mut out = Self::default();
        for c in prop.map(|p| p.children.as_slice()).unwrap_or_default() {
            if c.is(&names::ADDRESS_DATA) {
                out.address_data = Some(AddressDataRequest::from_element(c));
            } else {
                out.props.push(c.qname());
            }
        }
        out
    }

    /// The `DAV:prop` element.
    pub fn to_prop(&self) -> Element {
        let mut prop =
            Element::new(&names::PROP).with_children(self.props.iter().map(Element::new));
        if let Some(ad) = &self.address_data {
            prop.push(ad.to_element());
        }
        prop
    }

    /// Server half: a member's response. `vcard` is the card text already converted to the requested
    /// version; `lookup` yields the other properties (missing ones are answered 404).
    pub fn respond(
        &self,
        href: &str,
        vcard: &str,
        mut lookup: impl FnMut(&QName) -> Option<Element>,
    ) -> Response {
        let mut found = Vec::with_capacity(self.props.len() + 1);
        let mut missing = Vec::new();
        for p in &self.props {
            match lookup(p) {
                Some(v) => found.push(v),
                None => missing.push(p.clone()),
            }
        }
        if let Some(ad) = &self.address_data {
            found.push(Element::new(&names::ADDRESS_DATA).with_text(ad.apply(vcard)));
        }
        Response::with_props(href, found, &missing)
    }
}

/// One vCard content line (RFC 6350 §3.3), unfolded, not unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentLine {
    /// Group prefix, e.g. `item1`.
    pub group: Option<String>,
    /// Property name, upper-cased.
    pub name: String,
    /// Parameters: upper-cased name and values (quotes removed).
    pub params: Vec<(String, Vec<String>)>,
    /// Raw value after the first unquoted `:`.
    pub value: String,
    /// The unfolded line as it was.
    pub raw: String,
}

/// Splits a vCard into unfolded content lines. Lines without a `:` are skipped.
pub fn content_lines(vcard: &str) -> Vec<ContentLine> {
    let mut unfolded: Vec<String> = Vec::new();
    for line in vcard.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix([' ', '\t']) {
            if let Some(last) = unfolded.last_mut() {
                last.push_str(rest);
                continue;
            }
        }
        if !line.is_empty() {
            unfolded.push(line.to_string());
        }
    }
    unfolded.into_iter().filter_map(parse_line).collect()
}

fn parse_line(raw: String) -> Option<ContentLine> {
    let mut in_quotes = false;
    let mut colon = None;
    for (i, c) in raw.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon?;
    let head = &raw[..colon];
    let value = raw[colon + 1..].to_string();
    let mut parts = split_unquoted(head, ';').into_iter();
    let full_name = parts.next()?;
    let (group, name) = match full_name.rsplit_once('.') {
        Some((g, n)) => (Some(g.to_string()), n.to_ascii_uppercase()),
        None => (None, full_name.to_ascii_uppercase()),
    };
    let params = parts
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (
                n.to_ascii_uppercase(),
                split_unquoted(v, ',')
                    .into_iter()
                    .map(|s| s.trim_matches('"').to_string())
                    .collect(),
            ),
            // vCard 2.1/3.0 bare parameter, e.g. `TEL;CELL:` means TYPE=CELL
            None => ("TYPE".to_string(), vec![p.to_string()]),
        })
        .collect();
    Some(ContentLine {
        group,
        name,
        params,
        value,
        raw,
    })
}

fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        } else if c == sep && !in_quotes {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Keeps only the requested properties (RFC 6352 §10.4.2), plus the frame a vCard cannot go without
/// (`BEGIN`, `END`, `VERSION`); `UID`/`FN` are kept only when requested.
/// `novalue` properties keep their name and parameters with an empty value. Lines end in CRLF.
pub fn select_properties(vcard: &str, props: &[CardPropRequest]) -> String {
    const ALWAYS: [&str; 3] = ["BEGIN", "END", "VERSION"];
    let mut out = String::with_capacity(vcard.len());
    for line in content_lines(vcard) {
        let requested = props
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(&line.name));
        if ALWAYS.contains(&line.name.as_str()) {
            out.push_str(&line.raw);
        } else if let Some(p) = requested {
            if p.novalue {
                let colon = line.raw.len() - line.value.len();
                out.push_str(&line.raw[..colon]);
            } else {
                out.push_str(&line.raw);
            }
        } else {
            continue;
        }
        out.push_str("\r\n");
    }
    out
}

/// Reads the text of an `address-data` property element from an answer.
pub fn address_data_text(prop: &Element) -> Result<&str, XmlError> {
    if prop.is(&names::ADDRESS_DATA) {
        Ok(&prop.text)
    } else {
        Err(XmlError::UnexpectedRoot {
            expected: names::ADDRESS_DATA.to_string(),
            found: prop.clark(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::xml;

    const CARD: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u1\r\nFN:Ann\r\n  Lee\r\nitem1.EMAIL;TYPE=work,pref;X-A=\"a:b\":ann@example.com\r\nTEL;CELL:+1 555\r\nNOTE:x\r\nEND:VCARD\r\n";

    #[test]
    fn splits_and_unfolds_content_lines() {
        let lines = content_lines(CARD);
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[3].value, "Ann Lee");
        let email = &lines[4];
        assert_eq!(email.group.as_deref(), Some("item1"));
        assert_eq!(email.name, "EMAIL");
        assert_eq!(
            email.params[0],
            ("TYPE".into(), vec!["work".into(), "pref".into()])
        );
        assert_eq!(email.params[1], ("X-A".into(), vec!["a:b".into()]));
        assert_eq!(email.value, "ann@example.com");
        assert_eq!(lines[5].params[0], ("TYPE".into(), vec!["CELL".into()]));
    }

    #[test]
    fn partial_address_data() {
        let req = AddressDataRequest {
            content_type: None,
            version: None,
            props: Some(vec![
                CardPropRequest {
                    name: "EMAIL".into(),
                    novalue: false,
                },
                CardPropRequest {
                    name: "TEL".into(),
                    novalue: true,
                },
                CardPropRequest {
                    name: "UID".into(),
                    novalue: false,
                },
            ]),
        };
        assert_eq!(
            req.apply(CARD),
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u1\r\nitem1.EMAIL;TYPE=work,pref;X-A=\"a:b\":ann@example.com\r\nTEL;CELL:\r\nEND:VCARD\r\n"
        );
        assert_eq!(AddressDataRequest::default().apply(CARD), CARD);
    }

    #[test]
    fn request_element_round_trip() {
        let el = xml::parse(br#"<C:address-data xmlns:C="urn:ietf:params:xml:ns:carddav" content-type="text/vcard" version="3.0"><C:prop name="email"/><C:prop name="FN" novalue="yes"/></C:address-data>"#).unwrap();
        let req = AddressDataRequest::from_element(&el);
        assert_eq!(req.version.as_deref(), Some("3.0"));
        assert_eq!(req.props.as_ref().unwrap()[0].name, "EMAIL");
        assert!(req.props.as_ref().unwrap()[1].novalue);
        assert_eq!(AddressDataRequest::from_element(&req.to_element()), req);
        let all = xml::parse(br#"<C:address-data xmlns:C="urn:ietf:params:xml:ns:carddav"><C:allprop/></C:address-data>"#).unwrap();
        assert_eq!(AddressDataRequest::from_element(&all).props, None);
    }
}
