//! The `addressbook-multiget` REPORT (RFC 6352 §8.7), both halves. Client: build the request for a
//! batch of hrefs and read back cards and missing hrefs (404s, and hrefs the server left out, as sabre
//! does). Server: parse the request and answer every href, 404 for the unknown ones.

use http::StatusCode;

use super::address_data::{AddressDataRequest, ReportProps};
use super::error::DavError;
use super::multistatus::{Multistatus, Response};
use super::names::{self, QName};
use super::propfind::xml_request;
use super::xml::{self, Element, XmlError};

/// An `addressbook-multiget` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressbookMultiget {
    /// What to return per card.
    pub props: ReportProps,
    /// The cards' hrefs.
    pub hrefs: Vec<String>,
}

impl AddressbookMultiget {
    /// Asks for `getetag` and the full `address-data` of `hrefs`.
    pub fn new(hrefs: Vec<String>) -> Self {
        Self {
            props: ReportProps {
                props: vec![names::GETETAG],
                address_data: Some(AddressDataRequest::default()),
            },
            hrefs,
        }
    }

    /// The XML body element.
    pub fn to_element(&self) -> Element {
        Element::new(&names::ADDRESSBOOK_MULTIGET)
            .with_child(self.props.to_prop())
            .with_children(
                self.hrefs
                    .iter()
                    .map(|h| Element::new(&names::HREF).with_text(h.clone())),
            )
    }

    /// Client half: the XML body.
    pub fn body(&self) -> String {
        xml::render(&self.to_element())
    }

    /// Client half: the REPORT on the address book `uri` (no Depth header, RFC 6352 §8.7).
    pub fn build_request(&self, uri: &str) -> Result<http::Request<String>, http::Error> {
        xml_request(names::METHOD_REPORT, uri, None, self.body())
    }

    /// Client half: reads the answer. `requested` hrefs that the server did not mention at all end up
    /// in [`MultigetResult::missing`] too. Hrefs are compared as sent; the caller normalises if needed.
    pub fn parse_response(&self, body: &[u8]) -> Result<MultigetResult, XmlError> {
        let ms = Multistatus::parse(body)?;
        let mut out = MultigetResult::default();
        let mut seen: Vec<&str> = Vec::new();
        for r in &ms.responses {
            let mut hrefs = vec![r.href.as_str()];
            hrefs.extend(r.extra_hrefs.iter().map(String::as_str));
            seen.extend(hrefs.iter().copied());
            match r.prop(&names::ADDRESS_DATA) {
                Some(data) if r.status.is_none_or(|s| s.is_success()) => {
                    out.cards.push(FetchedCard {
                        href: r.href.clone(),
                        etag: r.prop_text(&names::GETETAG).map(str::to_string),
                        data: data.text.clone(),
                        response: r.clone(),
                    });
                }
                _ => out.missing.extend(hrefs.iter().map(|h| h.to_string())),
            }
        }
        for h in &self.hrefs {
            if !seen.contains(&h.as_str()) && !out.missing.contains(h) {
                out.missing.push(h.clone());
            }
        }
        Ok(out)
    }

    /// Server half: reads the request.
    pub fn parse_request(body: &[u8]) -> Result<Self, DavError> {
        let root = xml::parse(body)?.expect_root(&names::ADDRESSBOOK_MULTIGET)?;
        let hrefs: Vec<String> = root
            .children_named(&names::HREF)
            .map(|h| h.text_trimmed().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(Self {
            props: ReportProps::from_prop(root.child(&names::PROP)),
            hrefs,
        })
    }

    /// Server half: the response for a found card (see [`ReportProps::respond`]).
    pub fn respond_found(
        &self,
        href: &str,
        vcard: &str,
        lookup: impl FnMut(&QName) -> Option<Element>,
    ) -> Response {
        self.props.respond(href, vcard, lookup)
    }

    /// Server half: the response for an href that is unknown or not visible (404, like any absent card).
    pub fn respond_missing(href: &str) -> Response {
        Response::with_status(href, StatusCode::NOT_FOUND)
    }
}

/// The client's reading of a multiget answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultigetResult {
    /// Cards that came back.
    pub cards: Vec<FetchedCard>,
    /// Hrefs answered 404 (or any non-success) or not answered at all.
    pub missing: Vec<String>,
}

/// One card from a multiget answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedCard {
    /// Its href as the server sent it.
    pub href: String,
    /// Its ETag, when sent.
    pub etag: Option<String>,
    /// The `address-data` text.
    pub data: String,
    /// The whole response, for other properties.
    pub response: Response,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::address_data::CardPropRequest;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dav");

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}/{path}")).unwrap()
    }

    #[test]
    fn builds_request() {
        let m = AddressbookMultiget::new(vec!["/ab/1.vcf".into(), "/ab/a&b.vcf".into()]);
        let req = m.build_request("/ab/").unwrap();
        assert_eq!(req.method().as_str(), "REPORT");
        assert!(req.headers().get("Depth").is_none());
        assert_eq!(
            req.body(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<card:addressbook-multiget xmlns:card=\"urn:ietf:params:xml:ns:carddav\" xmlns:d=\"DAV:\"><d:prop><d:getetag/><card:address-data/></d:prop><d:href>/ab/1.vcf</d:href><d:href>/ab/a&amp;b.vcf</d:href></card:addressbook-multiget>"
        );
    }

    #[test]
    fn parses_sabre_answer_with_left_out_href() {
        let m = AddressbookMultiget::new(vec![
            "/remote.php/dav/addressbooks/users/alice/contacts/A1.vcf".into(),
            "/remote.php/dav/addressbooks/users/alice/contacts/NOPE.vcf".into(),
        ]);
        let r = m
            .parse_response(&fixture("responses/sabre/multiget.xml"))
            .unwrap();
        assert_eq!(r.cards.len(), 1);
        assert_eq!(r.cards[0].etag.as_deref(), Some("\"7e2d3b1c0f\""));
        assert!(r.cards[0]
            .data
            .starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"));
        assert_eq!(
            r.missing,
            vec!["/remote.php/dav/addressbooks/users/alice/contacts/NOPE.vcf".to_string()]
        );
    }

    #[test]
    fn parses_radicale_answer_with_404() {
        let m = AddressbookMultiget::new(vec![
            "/user/contacts/a.vcf".into(),
            "/user/contacts/x.vcf".into(),
        ]);
        let r = m
            .parse_response(&fixture("responses/radicale/multiget.xml"))
            .unwrap();
        assert_eq!(r.cards.len(), 1);
        assert_eq!(
            r.cards[0].data,
            "BEGIN:VCARD\nVERSION:4.0\nUID:a\nFN:A\nEND:VCARD\n"
        );
        assert_eq!(r.missing, vec!["/user/contacts/x.vcf".to_string()]);
    }

    #[test]
    fn parses_icloud_answer() {
        let m = AddressbookMultiget::new(vec!["/1234567/carddavhome/card/ABC.vcf".into()]);
        let r = m
            .parse_response(&fixture("responses/icloud/multiget.xml"))
            .unwrap();
        assert_eq!(r.cards.len(), 1);
        assert!(r.cards[0].data.contains("X-ADDRESSBOOKSERVER-KIND:group"));
        assert!(r.missing.is_empty());
    }

    #[test]
    fn parses_client_requests() {
        let davx5 =
            AddressbookMultiget::parse_request(&fixture("requests/davx5-multiget.xml")).unwrap();
        assert_eq!(davx5.hrefs.len(), 2);
        assert_eq!(
            davx5.props.props,
            vec![names::GETCONTENTTYPE, names::GETETAG]
        );
        assert_eq!(
            davx5.props.address_data,
            Some(AddressDataRequest::default())
        );
        let tb = AddressbookMultiget::parse_request(&fixture("requests/thunderbird-multiget.xml"))
            .unwrap();
        assert_eq!(
            tb.props.address_data.as_ref().unwrap().version.as_deref(),
            Some("3.0")
        );
        let apple =
            AddressbookMultiget::parse_request(&fixture("requests/apple-multiget-partial.xml"))
                .unwrap();
        let ad = apple.props.address_data.unwrap();
        assert_eq!(
            ad.props.unwrap(),
            vec![
                CardPropRequest {
                    name: "FN".into(),
                    novalue: false
                },
                CardPropRequest {
                    name: "EMAIL".into(),
                    novalue: false
                },
            ]
        );
    }

    #[test]
    fn server_answers_every_href() {
        let req = AddressbookMultiget::parse_request(br#"<C:addressbook-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><C:address-data content-type="text/vcard" version="4.0"><C:prop name="FN"/></C:address-data></D:prop><D:href>/p/1.vcf</D:href><D:href>/p/hidden.vcf</D:href></C:addressbook-multiget>"#).unwrap();
        let card =
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:1\r\nFN:One\r\nNOTE:private-ish\r\nEND:VCARD\r\n";
        let ms = Multistatus {
            responses: vec![
                req.respond_found("/p/1.vcf", card, |n| {
                    (*n == names::GETETAG)
                        .then(|| Element::new(&names::GETETAG).with_text("\"v1\""))
                }),
                AddressbookMultiget::respond_missing("/p/hidden.vcf"),
            ],
            ..Default::default()
        };
        let body = ms.render();
        let back = req.parse_response(body.as_bytes()).unwrap();
        assert_eq!(
            back.cards[0].data,
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:One\r\nEND:VCARD\r\n"
        );
        assert_eq!(back.cards[0].etag.as_deref(), Some("\"v1\""));
        assert_eq!(back.missing, vec!["/p/hidden.vcf".to_string()]);
    }

    #[test]
    fn refuses_wrong_root() {
        let e = AddressbookMultiget::parse_request(br#"<D:propfind xmlns:D="DAV:"/>"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
