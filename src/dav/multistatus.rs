//! `DAV:multistatus` (RFC 4918 §13, §14.16) with its responses and propstats: parsed by the client,
//! rendered by the server. Property values stay raw [`Element`]s so unknown properties survive; typed
//! readings live in [`super::prop`].

use http::StatusCode;

use super::names::{self, QName};
use super::xml::{self, Element, XmlError};

/// A parsed or to-be-rendered `DAV:multistatus`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Multistatus {
    /// The `DAV:response` elements in document order.
    pub responses: Vec<Response>,
    /// RFC 6578 §6.2 `DAV:sync-token` of a sync-collection answer.
    pub sync_token: Option<String>,
    /// RFC 4918 §14.25 top-level `DAV:responsedescription`.
    pub description: Option<String>,
}

/// One `DAV:response` (RFC 4918 §14.24): either an href-level `status` (e.g. 404 for a removed member in
/// sync-collection, 507 for truncation) or propstats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The first `DAV:href`, as sent (not decoded).
    pub href: String,
    /// Further `DAV:href`s sharing the same status (RFC 4918 §14.24 allows several).
    pub extra_hrefs: Vec<String>,
    /// Href-level `DAV:status`.
    pub status: Option<StatusCode>,
    /// `DAV:propstat` groups.
    pub propstats: Vec<Propstat>,
    /// RFC 4918 §14.5 `DAV:error` child content.
    pub error: Option<Element>,
    /// RFC 4918 §14.25 `DAV:responsedescription`.
    pub description: Option<String>,
    /// RFC 4918 §14.12 `DAV:location` href.
    pub location: Option<String>,
}

/// One `DAV:propstat` (RFC 4918 §14.22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propstat {
    /// Status shared by these properties.
    pub status: StatusCode,
    /// The property elements (children of `DAV:prop`), kept raw.
    pub props: Vec<Element>,
    /// RFC 4918 §14.5 `DAV:error` child content.
    pub error: Option<Element>,
    /// `DAV:responsedescription`.
    pub description: Option<String>,
}

/// Renders `HTTP/1.1 <code> <reason>` (RFC 4918 §14.28).
pub fn status_line(status: StatusCode) -> String {
    format!(
        "HTTP/1.1 {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

/// Reads a `DAV:status` value such as `HTTP/1.1 404 Not Found` (reason phrase optional).
pub fn parse_status_line(line: &str) -> Result<StatusCode, XmlError> {
    let code = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| XmlError::invalid(names::STATUS.to_string(), line, "no status code"))?;
    if code.len() != 3 {
        return Err(XmlError::invalid(
            names::STATUS.to_string(),
            line,
            "status code is not three digits",
        ));
    }
    StatusCode::from_bytes(code.as_bytes())
        .map_err(|_| XmlError::invalid(names::STATUS.to_string(), line, "not an HTTP status code"))
}

impl Multistatus {
    /// Client half: parses a `DAV:multistatus` body, bounded by [`xml::Limits::response`].
    pub fn parse(body: &[u8]) -> Result<Self, XmlError> {
        Self::from_element(&xml::parse_with(body, &xml::Limits::response())?)
    }

    /// Reads an already parsed `DAV:multistatus` element.
    pub fn from_element(root: &Element) -> Result<Self, XmlError> {
        if !root.is(&names::MULTISTATUS) {
            return Err(XmlError::UnexpectedRoot {
                expected: names::MULTISTATUS.to_string(),
                found: root.clark(),
            });
        }
        let mut ms = Multistatus::default();
        for child in &root.children {
            if child.is(&names::RESPONSE) {
                ms.responses.push(Response::from_element(child)?);
            } else if child.is(&names::SYNC_TOKEN) {
                ms.sync_token = Some(child.text_trimmed().to_string());
            } else if child.is(&names::RESPONSEDESCRIPTION) {
                ms.description = Some(child.text.clone());
            }
        }
        Ok(ms)
    }

    /// The `DAV:multistatus` element.
    pub fn to_element(&self) -> Element {
        let mut root = Element::new(&names::MULTISTATUS);
        root.children.reserve(self.responses.len() + 1);
        for r in &self.responses {
            root.push(r.to_element());
        }
        if let Some(token) = &self.sync_token {
            root.push(Element::new(&names::SYNC_TOKEN).with_text(token.clone()));
        }
        if let Some(d) = &self.description {
            root.push(Element::new(&names::RESPONSEDESCRIPTION).with_text(d.clone()));
        }
        root
    }

    /// Server half: the XML body.
    pub fn render(&self) -> String {
        xml::render(&self.to_element())
    }

    /// Server half: a `207 Multi-Status` answer with this body.
    pub fn to_response(&self) -> http::Response<String> {
        let mut resp = http::Response::new(self.render());
        *resp.status_mut() = StatusCode::MULTI_STATUS;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(names::CONTENT_TYPE_XML),
        );
        resp
    }
}

impl Response {
    /// A response with an href-level status (e.g. 404 for a removed member).
    pub fn with_status(href: impl Into<String>, status: StatusCode) -> Self {
        Self {
            href: href.into(),
            status: Some(status),
            ..Self::default()
        }
    }

    /// A response with a 200 propstat for `found` and a 404 propstat for `missing` (either omitted
    /// when empty), the usual PROPFIND/REPORT shape.
    pub fn with_props(href: impl Into<String>, found: Vec<Element>, missing: &[QName]) -> Self {
        let mut propstats = Vec::new();
        if !found.is_empty() || missing.is_empty() {
            propstats.push(Propstat::new(StatusCode::OK, found));
        }
        if !missing.is_empty() {
            propstats.push(Propstat::new(
                StatusCode::NOT_FOUND,
                missing.iter().map(Element::new).collect(),
            ));
        }
        Self {
            href: href.into(),
            propstats,
            ..Self::default()
        }
    }

    /// Reads a `DAV:response` element.
    pub fn from_element(el: &Element) -> Result<Self, XmlError> {
        let mut r = Response::default();
        let mut first = true;
        for child in &el.children {
            if child.is(&names::HREF) {
                let href = child.text_trimmed().to_string();
                if first {
                    r.href = href;
                    first = false;
                } else {
                    r.extra_hrefs.push(href);
                }
            } else if child.is(&names::STATUS) {
                r.status = Some(parse_status_line(child.text_trimmed())?);
            } else if child.is(&names::PROPSTAT) {
                r.propstats.push(Propstat::from_element(child)?);
            } else if child.is(&names::ERROR) {
                r.error = Some(child.clone());
            } else if child.is(&names::RESPONSEDESCRIPTION) {
                r.description = Some(child.text.clone());
            } else if child.is(&names::LOCATION) {
                r.location = child
                    .child(&names::HREF)
                    .map(|h| h.text_trimmed().to_string());
            }
        }
        if first {
            return Err(XmlError::MissingChild {
                parent: names::RESPONSE.to_string(),
                child: names::HREF.to_string(),
            });
        }
        Ok(r)
    }

    /// The `DAV:response` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new(&names::RESPONSE);
        el.push(Element::new(&names::HREF).with_text(self.href.clone()));
        for h in &self.extra_hrefs {
            el.push(Element::new(&names::HREF).with_text(h.clone()));
        }
        if let Some(status) = self.status {
            el.push(Element::new(&names::STATUS).with_text(status_line(status)));
        }
        for ps in &self.propstats {
            el.push(ps.to_element());
        }
        if let Some(e) = &self.error {
            el.push(e.clone());
        }
        if let Some(d) = &self.description {
            el.push(Element::new(&names::RESPONSEDESCRIPTION).with_text(d.clone()));
        }
        if let Some(l) = &self.location {
            el.push(
                Element::new(&names::LOCATION)
                    .with_child(Element::new(&names::HREF).with_text(l.clone())),
            );
        }
        el
    }

    /// The value of property `name` from a 2xx propstat.
    pub fn prop(&self, name: &QName) -> Option<&Element> {
        self.propstats
            .iter()
            .filter(|ps| ps.status.is_success())
            .flat_map(|ps| ps.props.iter())
            .find(|p| p.is(name))
    }

    /// The status the server gave property `name`, if it mentioned it.
    pub fn prop_status(&self, name: &QName) -> Option<StatusCode> {
        self.propstats
            .iter()
            .find(|ps| ps.props.iter().any(|p| p.is(name)))
            .map(|ps| ps.status)
    }

    /// The trimmed text of property `name` from a 2xx propstat, when non-empty.
    pub fn prop_text(&self, name: &QName) -> Option<&str> {
        self.prop(name)
            .map(Element::text_trimmed)
            .filter(|t| !t.is_empty())
    }
}

impl Propstat {
    /// A propstat with these properties.
    pub fn new(status: StatusCode, props: Vec<Element>) -> Self {
        Self {
            status,
            props,
            error: None,
            description: None,
        }
    }

    /// Reads a `DAV:propstat` element.
    pub fn from_element(el: &Element) -> Result<Self, XmlError> {
        let status = parse_status_line(el.require_child(&names::STATUS)?.text_trimmed())?;
        let props = el
            .children_named(&names::PROP)
            .flat_map(|p| p.children.iter().cloned())
            .collect();
        Ok(Self {
            status,
            props,
            error: el.child(&names::ERROR).cloned(),
            description: el
                .child(&names::RESPONSEDESCRIPTION)
                .map(|d| d.text.clone()),
        })
    }

    /// The `DAV:propstat` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new(&names::PROPSTAT)
            .with_child(Element::new(&names::PROP).with_children(self.props.iter().cloned()))
            .with_child(Element::new(&names::STATUS).with_text(status_line(self.status)));
        if let Some(e) = &self.error {
            el.push(e.clone());
        }
        if let Some(d) = &self.description {
            el.push(Element::new(&names::RESPONSEDESCRIPTION).with_text(d.clone()));
        }
        el
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_line(StatusCode::OK), "HTTP/1.1 200 OK");
        assert_eq!(
            status_line(StatusCode::INSUFFICIENT_STORAGE),
            "HTTP/1.1 507 Insufficient Storage"
        );
        assert_eq!(
            parse_status_line("HTTP/1.1 404 Not Found").unwrap(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(parse_status_line(" HTTP/1.1 200 ").unwrap(), StatusCode::OK);
        assert!(parse_status_line("HTTP/1.1").is_err());
        assert!(parse_status_line("HTTP/1.1 2000 OK").is_err());
        assert!(parse_status_line("HTTP/1.1 abc").is_err());
    }

    #[test]
    fn keeps_unknown_properties_and_reads_known_ones() {
        let body = br#"<?xml version="1.0"?>
<D:multistatus xmlns:D="DAV:" xmlns:X="urn:example">
  <D:response>
    <D:href>/ab/</D:href>
    <D:propstat>
      <D:prop><D:displayname>Home</D:displayname><X:color kind="rgb">#fff<X:alpha>1</X:alpha></X:color></D:prop>
      <D:status>HTTP/1.1 200 OK</D:status>
    </D:propstat>
    <D:propstat>
      <D:prop><D:getctag/></D:prop>
      <D:status>HTTP/1.1 404 Not Found</D:status>
    </D:propstat>
  </D:response>
  <D:responsedescription>done</D:responsedescription>
</D:multistatus>"#;
        let ms = Multistatus::parse(body).unwrap();
        let r = &ms.responses[0];
        assert_eq!(r.href, "/ab/");
        assert_eq!(r.prop_text(&names::DISPLAYNAME), Some("Home"));
        let color = r.prop(&QName::new("urn:example", "color")).unwrap();
        assert_eq!(color.attr("kind"), Some("rgb"));
        assert_eq!(color.text, "#fff");
        assert_eq!(color.children[0].text, "1");
        assert_eq!(
            r.prop_status(&QName::new("DAV:", "getctag")),
            Some(StatusCode::NOT_FOUND)
        );
        assert!(r.prop(&QName::new("DAV:", "getctag")).is_none());
        assert_eq!(ms.description.as_deref(), Some("done"));
        // round trip through the server half
        assert_eq!(Multistatus::parse(ms.render().as_bytes()).unwrap(), ms);
    }

    #[test]
    fn renders_the_expected_shape() {
        let ms = Multistatus {
            responses: vec![
                Response::with_props(
                    "/a.vcf",
                    vec![Element::new(&names::GETETAG).with_text("\"1\"")],
                    &[names::GETCTAG],
                ),
                Response::with_status("/b.vcf", StatusCode::NOT_FOUND),
            ],
            sync_token: Some("http://x/sync/2".into()),
            description: None,
        };
        assert_eq!(
            ms.render(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:multistatus xmlns:d=\"DAV:\" xmlns:cs=\"http://calendarserver.org/ns/\"><d:response><d:href>/a.vcf</d:href><d:propstat><d:prop><d:getetag>\"1\"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat><d:propstat><d:prop><cs:getctag/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response><d:response><d:href>/b.vcf</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response><d:sync-token>http://x/sync/2</d:sync-token></d:multistatus>"
        );
        let resp = ms.to_response();
        assert_eq!(resp.status(), StatusCode::MULTI_STATUS);
        assert_eq!(Multistatus::parse(resp.body().as_bytes()).unwrap(), ms);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let err = Multistatus::parse(br#"<d:multistatus xmlns:d="DAV:"><d:response><d:status>HTTP/1.1 200 OK</d:status></d:response></d:multistatus>"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "{DAV:}response is missing the required child {DAV:}href"
        );
        let err = Multistatus::parse(br#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/</d:href><d:propstat><d:prop/></d:propstat></d:response></d:multistatus>"#).unwrap_err();
        assert!(err.to_string().contains("{DAV:}status"));
        assert!(matches!(
            Multistatus::parse(br#"<d:error xmlns:d="DAV:"/>"#),
            Err(XmlError::UnexpectedRoot { .. })
        ));
    }

    /// Regression: a listing over the 10 MiB request bound (~47,000 members) was refused, so
    /// a big address book could never be pulled. Answers get their own, larger bound.
    #[test]
    fn an_answer_over_the_request_bound_parses_up_to_the_response_bound() {
        let member = r#"<d:response><d:href>/book/a-card-with-a-long-enough-name.vcf</d:href><d:propstat><d:prop><d:getetag>"0123456789abcdef"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"#;
        let n = xml::Limits::DEFAULT_MAX_BYTES / member.len() + 1_000;
        let mut body = String::from(r#"<d:multistatus xmlns:d="DAV:">"#);
        for _ in 0..n {
            body.push_str(member);
        }
        body.push_str("</d:multistatus>");
        assert!(body.len() > xml::Limits::DEFAULT_MAX_BYTES);
        assert_eq!(
            Multistatus::parse(body.as_bytes()).unwrap().responses.len(),
            n
        );
        assert!(
            xml::parse(body.as_bytes()).is_err(),
            "requests keep the 10 MiB bound"
        );
    }
}
