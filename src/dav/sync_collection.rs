//! The `sync-collection` REPORT (RFC 6578), both halves. Client: build the request (token, level, limit,
//! properties) and read the answer into changed members, removed members, truncation and the new
//! token. Server: parse the request and render the answer, including the RFC 6578 §3.6 truncation
//! marker (a 507 response on the request-URI). Tokens are opaque strings; they need not be URIs.

use http::{HeaderValue, StatusCode};

use super::address_data::{AddressDataRequest, ReportProps};
use super::error::{DavError, Precondition};
use super::multistatus::{Multistatus, Response};
use super::names::{self, QName};
use super::propfind::{xml_request, Depth};
use super::xml::{self, Element, XmlError};

/// RFC 6578 §6.3 `DAV:sync-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncLevel {
    /// `1`: immediate members only (what CardDAV uses).
    One,
    /// `infinite`: the whole subtree.
    Infinite,
}

/// A `DAV:sync-collection` request (RFC 6578 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCollection {
    /// The token from the last sync; `None` (empty element) for the initial sync.
    pub sync_token: Option<String>,
    /// The sync level.
    pub sync_level: SyncLevel,
    /// RFC 6578 §6.4 `DAV:limit/DAV:nresults`.
    pub limit: Option<u32>,
    /// Properties to return for changed members (other than `address-data`).
    pub props: Vec<QName>,
    /// RFC 6352 §10.4 `CARDDAV:address-data` among the requested properties: the card bodies
    /// come back inline (Apple clients and DAVx5 may ask for them in the sync itself).
    pub address_data: Option<AddressDataRequest>,
    /// Depth header to send; RFC 6578 §3.2 says 0 (absent), Google's CardDAV wants `1`.
    pub depth: Option<Depth>,
}

impl SyncCollection {
    /// A sync from `token` (None: initial) asking for `props`, level 1, no limit, no Depth header.
    pub fn new(token: Option<&str>, props: &[QName]) -> Self {
        Self {
            sync_token: token.map(str::to_string),
            sync_level: SyncLevel::One,
            limit: None,
            props: props.to_vec(),
            address_data: None,
            depth: None,
        }
    }

    /// The XML body.
    pub fn to_element(&self) -> Element {
        let mut root = Element::new(&names::SYNC_COLLECTION)
            .with_child(
                Element::new(&names::SYNC_TOKEN)
                    .with_text(self.sync_token.clone().unwrap_or_default()),
            )
            .with_child(
                Element::new(&names::SYNC_LEVEL).with_text(match self.sync_level {
                    SyncLevel::One => names::SYNC_LEVEL_ONE,
                    SyncLevel::Infinite => names::SYNC_LEVEL_INFINITE,
                }),
            );
        if let Some(n) = self.limit {
            root.push(
                Element::new(&names::LIMIT)
                    .with_child(Element::new(&names::NRESULTS).with_text(n.to_string())),
            );
        }
        root.push(
            ReportProps {
                props: self.props.clone(),
                address_data: self.address_data.clone(),
            }
            .to_prop(),
        );
        root
    }

    /// Client half: the XML body.
    pub fn body(&self) -> String {
        xml::render(&self.to_element())
    }

    /// Client half: the REPORT request on the collection `uri`.
    pub fn build_request(&self, uri: &str) -> Result<http::Request<String>, http::Error> {
        xml_request(names::METHOD_REPORT, uri, self.depth, self.body())
    }

    /// Client half: reads the 207 answer. Any 507 response without propstats (normally on the
    /// request-URI) counts as the truncation marker, never as a member or a removal.
    pub fn parse_response(body: &[u8]) -> Result<SyncResult, XmlError> {
        SyncResult::from_multistatus(Multistatus::parse(body)?)
    }

    /// Server half: reads the REPORT request. A missing `sync-level` is read as `1` (Apple and some
    /// older clients omit it); a non-numeric `nresults` is a 400.
    pub fn parse_request(depth: Option<&HeaderValue>, body: &[u8]) -> Result<Self, DavError> {
        let depth = Depth::from_header(depth, Depth::Zero)?;
        let root = xml::parse(body)?.expect_root(&names::SYNC_COLLECTION)?;
        let token = root
            .child(&names::SYNC_TOKEN)
            .map(|t| t.text_trimmed().to_string())
            .filter(|t| !t.is_empty());
        let sync_level = match root.child(&names::SYNC_LEVEL).map(Element::text_trimmed) {
            None | Some(names::SYNC_LEVEL_ONE) => SyncLevel::One,
            Some(names::SYNC_LEVEL_INFINITE) => SyncLevel::Infinite,
            Some(other) => {
                return Err(DavError::bad_request(format!(
                    "invalid sync-level {other:?}"
                )))
            }
        };
        let limit =
            match root.child(&names::LIMIT) {
                None => None,
                Some(l) => {
                    let n = l.require_child(&names::NRESULTS)?.text_trimmed();
                    Some(n.parse::<u32>().map_err(|_| {
                        DavError::bad_request(format!("nresults {n:?} is not a count"))
                    })?)
                }
            };
        let ReportProps {
            props,
            address_data,
        } = ReportProps::from_prop(root.child(&names::PROP));
        Ok(Self {
            sync_token: token,
            sync_level,
            limit,
            props,
            address_data,
            depth: Some(depth),
        })
    }
}

/// The client's reading of a sync-collection answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResult {
    /// Members that were added or changed, with their properties.
    pub changed: Vec<SyncChange>,
    /// Members reported removed (href-level 404).
    pub removed: Vec<String>,
    /// True when the server truncated the answer (507 marker): ask again with `new_token`.
    pub truncated: bool,
    /// The token to use next time.
    pub new_token: Option<String>,
}

/// A changed member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncChange {
    /// Its href as sent.
    pub href: String,
    /// Its `DAV:getetag`, when the server sent one.
    pub etag: Option<String>,
    /// The whole response, for the other requested properties.
    pub response: Response,
}

impl SyncResult {
    /// Classifies the responses of a multistatus.
    pub fn from_multistatus(ms: Multistatus) -> Result<Self, XmlError> {
        let mut out = SyncResult {
            new_token: ms.sync_token.filter(|t| !t.is_empty()),
            ..Self::default()
        };
        for r in ms.responses {
            match r.status {
                Some(StatusCode::NOT_FOUND) => {
                    out.removed.push(r.href.clone());
                    out.removed.extend(r.extra_hrefs.iter().cloned());
                }
                Some(StatusCode::INSUFFICIENT_STORAGE) if r.propstats.is_empty() => {
                    out.truncated = true;
                }
                Some(s) if r.propstats.is_empty() && !s.is_success() => {
                    // Another href-level failure: neither a change nor a removal.
                    return Err(XmlError::invalid(
                        names::STATUS.to_string(),
                        s.as_str(),
                        "unexpected href-level status in sync-collection",
                    ));
                }
                _ => {
                    let etag = r
                        .prop(&names::GETETAG)
                        .map(|e| e.text_trimmed().to_string())
                        .filter(|e| !e.is_empty());
                    out.changed.push(SyncChange {
                        href: r.href.clone(),
                        etag,
                        response: r,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Server half: renders an answer. `changed` are the members' responses (built e.g. with
/// [`Response::with_props`]), `removed` their hrefs; when `truncated`, a 507 response on `request_uri`
/// with `DAV:number-of-matches-within-limits` is added (RFC 6578 §3.6) and `new_token` must resume
/// exactly after the last reported change.
pub fn render_response(
    request_uri: &str,
    changed: Vec<Response>,
    removed: &[String],
    truncated: bool,
    new_token: &str,
) -> Multistatus {
    let mut responses = changed;
    responses.extend(
        removed
            .iter()
            .map(|h| Response::with_status(h.clone(), StatusCode::NOT_FOUND)),
    );
    if truncated {
        let mut marker = Response::with_status(request_uri, StatusCode::INSUFFICIENT_STORAGE);
        marker.error = Some(
            Element::new(&names::ERROR)
                .with_child(Precondition::NumberOfMatchesWithinLimits.to_element()),
        );
        responses.push(marker);
    }
    Multistatus {
        responses,
        sync_token: Some(new_token.to_string()),
        description: None,
    }
}

/// Server half: the error for an unknown, stale or foreign token (RFC 6578 §3.7: 403 with
/// `DAV:valid-sync-token`).
pub fn invalid_token_error(message: impl Into<String>) -> DavError {
    DavError::with_precondition(StatusCode::FORBIDDEN, Precondition::ValidSyncToken, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dav");

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}/{path}")).unwrap()
    }

    #[test]
    fn builds_initial_and_incremental_requests() {
        let initial = SyncCollection::new(None, &[names::GETETAG]);
        assert_eq!(
            initial.body(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:sync-collection xmlns:d=\"DAV:\"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
        );
        let req = initial.build_request("/ab/").unwrap();
        assert_eq!(req.method().as_str(), "REPORT");
        assert!(req.headers().get("Depth").is_none());
        let mut inc = SyncCollection::new(Some("42"), &[names::GETETAG]);
        inc.limit = Some(100);
        inc.depth = Some(Depth::One);
        assert_eq!(
            inc.body(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:sync-collection xmlns:d=\"DAV:\"><d:sync-token>42</d:sync-token><d:sync-level>1</d:sync-level><d:limit><d:nresults>100</d:nresults></d:limit><d:prop><d:getetag/></d:prop></d:sync-collection>"
        );
        assert_eq!(inc.build_request("/ab/").unwrap().headers()["Depth"], "1");
    }

    #[test]
    fn server_round_trip_of_request() {
        let mut req = SyncCollection::new(
            Some("opaque token ü"),
            &[names::GETETAG, names::GETCONTENTTYPE],
        );
        req.limit = Some(7);
        req.sync_level = SyncLevel::Infinite;
        let back = SyncCollection::parse_request(None, req.body().as_bytes()).unwrap();
        req.depth = Some(Depth::Zero);
        assert_eq!(back, req);
    }

    #[test]
    fn address_data_is_kept_apart_from_the_other_props() {
        let body = concat!(
            r#"<d:sync-collection xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">"#,
            "<d:sync-token/><d:sync-level>1</d:sync-level>",
            r#"<d:prop><d:getetag/><c:address-data content-type="text/vcard" version="4.0"/></d:prop>"#,
            "</d:sync-collection>"
        );
        let req = SyncCollection::parse_request(None, body.as_bytes()).unwrap();
        assert_eq!(req.props, vec![names::GETETAG]);
        let ad = req.address_data.clone().unwrap();
        assert_eq!(ad.version.as_deref(), Some("4.0"));
        // And the client half writes it back so that the server half reads the same request.
        let back = SyncCollection::parse_request(None, req.body().as_bytes()).unwrap();
        assert_eq!(back, req);
        let plain = SyncCollection::parse_request(
            None,
            SyncCollection::new(None, &[names::GETETAG])
                .body()
                .as_bytes(),
        )
        .unwrap();
        assert!(plain.address_data.is_none());
    }

    #[test]
    fn parses_client_requests() {
        let davx5 =
            SyncCollection::parse_request(None, &fixture("requests/davx5-sync-collection.xml"))
                .unwrap();
        assert_eq!(
            davx5.sync_token.as_deref(),
            Some("http://radicale.example/sync/7")
        );
        assert_eq!(davx5.props, vec![names::GETCONTENTTYPE, names::GETETAG]);
        let apple = SyncCollection::parse_request(
            Some(&HeaderValue::from_static("1")),
            &fixture("requests/apple-sync-collection.xml"),
        )
        .unwrap();
        assert_eq!(apple.sync_token, None);
        assert_eq!(apple.sync_level, SyncLevel::One);
        assert_eq!(apple.depth, Some(Depth::One));
        let vds = SyncCollection::parse_request(
            None,
            &fixture("requests/vdirsyncer-sync-collection.xml"),
        )
        .unwrap();
        assert_eq!(vds.props, vec![names::GETETAG]);
    }

    #[test]
    fn refuses_bad_requests() {
        let bad_level = br#"<sync-collection xmlns="DAV:"><sync-token/><sync-level>2</sync-level><prop/></sync-collection>"#;
        assert_eq!(
            SyncCollection::parse_request(None, bad_level)
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        let bad_limit = br#"<sync-collection xmlns="DAV:"><sync-token/><limit><nresults>-1</nresults></limit><prop/></sync-collection>"#;
        assert!(SyncCollection::parse_request(None, bad_limit)
            .unwrap_err()
            .message
            .contains("nresults"));
    }

    #[test]
    fn parses_radicale_answer() {
        let r = SyncCollection::parse_response(&fixture("responses/radicale/sync-collection.xml"))
            .unwrap();
        assert_eq!(r.changed.len(), 2);
        assert_eq!(r.changed[0].href, "/user/contacts/a.vcf");
        assert_eq!(r.changed[0].etag.as_deref(), Some("\"b1a2\""));
        assert_eq!(r.removed, vec!["/user/contacts/gone.vcf".to_string()]);
        assert!(!r.truncated);
        assert_eq!(
            r.new_token.as_deref(),
            Some("http://radicale.org/ns/sync/5f3c")
        );
    }

    #[test]
    fn parses_xandikos_answer_with_non_uri_token() {
        let r = SyncCollection::parse_response(&fixture("responses/xandikos/sync-collection.xml"))
            .unwrap();
        assert_eq!(r.new_token.as_deref(), Some("1d2e3f4a5b6c"));
        assert_eq!(r.changed.len(), 1);
        assert_eq!(r.removed.len(), 1);
    }

    #[test]
    fn parses_sabre_truncated_answer() {
        let r = SyncCollection::parse_response(&fixture(
            "responses/sabre/sync-collection-truncated.xml",
        ))
        .unwrap();
        assert!(r.truncated);
        assert_eq!(r.changed.len(), 1);
        assert!(r.removed.is_empty(), "the 507 marker is not a removal");
        assert_eq!(r.new_token.as_deref(), Some("http://sabre.io/ns/sync/12"));
    }

    #[test]
    fn parses_google_answer() {
        let r = SyncCollection::parse_response(&fixture("responses/google/sync-collection.xml"))
            .unwrap();
        assert_eq!(r.changed.len(), 1);
        assert_eq!(
            r.changed[0].etag.as_deref(),
            Some("\"2023-01-01T00:00:00.000-00:00\"")
        );
        assert_eq!(r.removed.len(), 1);
    }

    #[test]
    fn renders_truncated_answer_and_client_reads_it() {
        let ms = render_response(
            "/dav/addressbooks/u/persons/",
            vec![Response::with_props(
                "/dav/addressbooks/u/persons/1.vcf",
                vec![Element::new(&names::GETETAG).with_text("\"e1\"")],
                &[],
            )],
            &["/dav/addressbooks/u/persons/2.vcf".to_string()],
            true,
            "cb-9",
        );
        let body = ms.render();
        assert!(body.contains("<d:response><d:href>/dav/addressbooks/u/persons/</d:href><d:status>HTTP/1.1 507 Insufficient Storage</d:status><d:error><d:number-of-matches-within-limits/></d:error></d:response>"));
        let r = SyncCollection::parse_response(body.as_bytes()).unwrap();
        assert!(r.truncated);
        assert_eq!(r.changed[0].etag.as_deref(), Some("\"e1\""));
        assert_eq!(
            r.removed,
            vec!["/dav/addressbooks/u/persons/2.vcf".to_string()]
        );
        assert_eq!(r.new_token.as_deref(), Some("cb-9"));
    }

    #[test]
    fn invalid_token_is_403_valid_sync_token() {
        let e = invalid_token_error("unknown");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.render_body().unwrap().contains("<d:valid-sync-token/>"));
    }
}
