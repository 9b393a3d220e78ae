//! Server-side DAV errors: an HTTP status plus an optional precondition/postcondition element
//! (RFC 4918 §16), rendered as a `<d:error>` body; and the client-side reading of such bodies.

use http::StatusCode;

use super::names::{self, QName};
use super::xml::{self, Element, XmlError};

/// A DAV precondition or postcondition code (RFC 4918 §16), the child of `<d:error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// RFC 6578 §3.7 `DAV:valid-sync-token`.
    ValidSyncToken,
    /// RFC 6578 §3.7 / RFC 5323 §5.17 `DAV:number-of-matches-within-limits`.
    NumberOfMatchesWithinLimits,
    /// RFC 3744 §7.1.1 `DAV:need-privileges`.
    NeedPrivileges,
    /// RFC 5689 §3 `DAV:valid-resourcetype`.
    ValidResourcetype,
    /// RFC 4918 §9.3.1 `DAV:resource-must-be-null`.
    ResourceMustBeNull,
    /// RFC 6352 §6.3.2.1 `CARDDAV:supported-address-data`.
    SupportedAddressData,
    /// RFC 6352 §6.3.2.1 `CARDDAV:valid-address-data`.
    ValidAddressData,
    /// RFC 6352 §6.3.2.1 `CARDDAV:no-uid-conflict`, optionally naming the conflicting resource.
    NoUidConflict(Option<String>),
    /// RFC 6352 §6.3.2.1 `CARDDAV:max-resource-size`.
    MaxResourceSize,
    /// RFC 6352 §8.3 `CARDDAV:supported-collation`.
    SupportedCollation,
    /// RFC 6352 §8.6 `CARDDAV:supported-filter`.
    SupportedFilter,
    /// RFC 6352 §8.7 `CARDDAV:supported-address-data-conversion`.
    SupportedAddressDataConversion,
    /// Any other condition element, kept as sent.
    Other(Box<Element>),
}

impl Precondition {
    /// The element name of this condition.
    pub fn name(&self) -> QName {
        match self {
            Self::ValidSyncToken => names::VALID_SYNC_TOKEN,
            Self::NumberOfMatchesWithinLimits => names::NUMBER_OF_MATCHES_WITHIN_LIMITS,
            Self::NeedPrivileges => names::NEED_PRIVILEGES,
            Self::ValidResourcetype => names::VALID_RESOURCETYPE,
            Self::ResourceMustBeNull => names::RESOURCE_MUST_BE_NULL,
            Self::SupportedAddressData => names::PRE_SUPPORTED_ADDRESS_DATA,
            Self::ValidAddressData => names::VALID_ADDRESS_DATA,
            Self::NoUidConflict(_) => names::NO_UID_CONFLICT,
            Self::MaxResourceSize => names::PRE_MAX_RESOURCE_SIZE,
            Self::SupportedCollation => names::SUPPORTED_COLLATION,
            Self::SupportedFilter => names::SUPPORTED_FILTER,
            Self::SupportedAddressDataConversion => names::SUPPORTED_ADDRESS_DATA_CONVERSION,
            Self::Other(el) => el.qname(),
        }
    }

    /// The element to put inside `<d:error>`.
    pub fn to_element(&self) -> Element {
        match self {
            Self::Other(el) => (**el).clone(),
            Self::NoUidConflict(Some(href)) => Element::new(&names::NO_UID_CONFLICT)
                .with_child(Element::new(&names::HREF).with_text(href.clone())),
            other => Element::new(&other.name()),
        }
    }

    /// Reads a condition element.
    pub fn from_element(el: &Element) -> Self {
        let known = [
            (names::VALID_SYNC_TOKEN, Self::ValidSyncToken),
            (
                names::NUMBER_OF_MATCHES_WITHIN_LIMITS,
                Self::NumberOfMatchesWithinLimits,
            ),
            (names::NEED_PRIVILEGES, Self::NeedPrivileges),
            (names::VALID_RESOURCETYPE, Self::ValidResourcetype),
            (names::RESOURCE_MUST_BE_NULL, Self::ResourceMustBeNull),
            (
                names::PRE_SUPPORTED_ADDRESS_DATA,
                Self::SupportedAddressData,
            ),
            (names::VALID_ADDRESS_DATA, Self::ValidAddressData),
            (names::PRE_MAX_RESOURCE_SIZE, Self::MaxResourceSize),
            (names::SUPPORTED_COLLATION, Self::SupportedCollation),
            (names::SUPPORTED_FILTER, Self::SupportedFilter),
            (
                names::SUPPORTED_ADDRESS_DATA_CONVERSION,
                Self::SupportedAddressDataConversion,
            ),
        ];
        if el.is(&names::NO_UID_CONFLICT) {
            return Self::NoUidConflict(
                el.child(&names::HREF).map(|h| h.text_trimmed().to_string()),
            );
        }
        for (name, pre) in known {
            if el.is(&name) {
                return pre;
            }
        }
        Self::Other(Box::new(el.clone()))
    }
}

/// A DAV error as the server answers it: status, optional condition, and a message for logs (never
/// rendered into the body, so it cannot leak anything the client may not see).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}{}: {message}", .precondition.as_ref().map(|p| format!(" ({})", p.name())).unwrap_or_default())]
pub struct DavError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// The condition that failed, if one applies.
    pub precondition: Option<Precondition>,
    /// Human-readable reason for logs.
    pub message: String,
}

impl DavError {
    /// An error with a status and no condition.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            precondition: None,
            message: message.into(),
        }
    }

    /// An error with a status and a failed condition.
    pub fn with_precondition(
        status: StatusCode,
        precondition: Precondition,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            precondition: Some(precondition),
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The `<d:error>` body, when a condition applies.
    pub fn render_body(&self) -> Option<String> {
        self.precondition.as_ref().map(render_error_body)
    }

    /// The whole HTTP answer: status, XML content type and `<d:error>` body when a condition
    /// applies, an empty body otherwise.
    pub fn to_response(&self) -> http::Response<String> {
        let mut resp = http::Response::new(self.render_body().unwrap_or_default());
        *resp.status_mut() = self.status;
        if self.precondition.is_some() {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(names::CONTENT_TYPE_XML),
            );
        }
        resp
    }
}

impl From<XmlError> for DavError {
    /// An unreadable request body: 413 when over the size bound, else 400.
    fn from(e: XmlError) -> Self {
        let status = match e {
            XmlError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

/// Renders `<d:error>` holding one condition element.
pub fn render_error_body(precondition: &Precondition) -> String {
    xml::render(&Element::new(&names::ERROR).with_child(precondition.to_element()))
}

/// Client half: reads a `<d:error>` body into its conditions.
pub fn parse_error_body(body: &[u8]) -> Result<Vec<Precondition>, XmlError> {
    let root = xml::parse(body)?.expect_root(&names::ERROR)?;
    Ok(root
        .children
        .iter()
        .map(Precondition::from_element)
        .collect())
}

/// Client half: true when `body` is a `<d:error>` naming `condition`. Unreadable bodies are `false`.
pub fn body_has_precondition(body: &[u8], condition: &QName) -> bool {
    parse_error_body(body)
        .map(|pres| pres.iter().any(|p| &p.name() == condition))
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_sync_token() {
        let e = DavError::with_precondition(
            StatusCode::FORBIDDEN,
            Precondition::ValidSyncToken,
            "token from another collection",
        );
        assert_eq!(
            e.render_body().unwrap(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:error xmlns:d=\"DAV:\"><d:valid-sync-token/></d:error>"
        );
        let resp = e.to_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            names::CONTENT_TYPE_XML
        );
        assert_eq!(
            e.to_string(),
            "403 Forbidden ({DAV:}valid-sync-token): token from another collection"
        );
    }

    #[test]
    fn renders_carddav_conditions() {
        let e = DavError::with_precondition(
            StatusCode::CONFLICT,
            Precondition::NoUidConflict(Some("/dav/addressbooks/u/persons/1.vcf".into())),
            "uid taken",
        );
        assert_eq!(
            e.render_body().unwrap(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:error xmlns:d=\"DAV:\" xmlns:card=\"urn:ietf:params:xml:ns:carddav\"><card:no-uid-conflict><d:href>/dav/addressbooks/u/persons/1.vcf</d:href></card:no-uid-conflict></d:error>"
        );
        for p in [
            Precondition::ValidAddressData,
            Precondition::MaxResourceSize,
            Precondition::SupportedAddressData,
            Precondition::NumberOfMatchesWithinLimits,
            Precondition::SupportedCollation,
            Precondition::NoUidConflict(None),
        ] {
            let body = render_error_body(&p);
            assert_eq!(parse_error_body(body.as_bytes()).unwrap(), vec![p]);
        }
    }

    #[test]
    fn no_body_without_condition() {
        let e = DavError::new(StatusCode::NOT_FOUND, "no such card");
        assert_eq!(e.render_body(), None);
        assert_eq!(e.to_response().body(), "");
    }

    #[test]
    fn parses_server_error_bodies() {
        // sabre/Nextcloud shape, with its own namespace for the message
        let sabre = br#"<?xml version="1.0" encoding="utf-8"?>
<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">
  <d:valid-sync-token/>
  <s:message>Invalid or unknown sync token</s:message>
</d:error>"#;
        let pres = parse_error_body(sabre).unwrap();
        assert_eq!(pres[0], Precondition::ValidSyncToken);
        assert!(matches!(&pres[1], Precondition::Other(el) if el.name == "message"));
        assert!(body_has_precondition(sabre, &names::VALID_SYNC_TOKEN));
        // Radicale shape: default namespace
        let radicale = br#"<?xml version='1.0' encoding='utf-8'?>
<error xmlns="DAV:"><valid-sync-token /></error>"#;
        assert!(body_has_precondition(radicale, &names::VALID_SYNC_TOKEN));
        assert!(!body_has_precondition(b"not xml", &names::VALID_SYNC_TOKEN));
        assert!(!body_has_precondition(
            br#"<error xmlns="urn:other"><valid-sync-token/></error>"#,
            &names::VALID_SYNC_TOKEN
        ));
    }

    #[test]
    fn xml_errors_become_400_or_413() {
        let e: DavError = XmlError::Doctype.into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e: DavError = XmlError::TooLarge { size: 2, limit: 1 }.into();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
