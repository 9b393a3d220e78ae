//! The `addressbook-query` REPORT (RFC 6352 §8.6), both halves: the client builds a query, the server
//! parses it into a typed [`Filter`] and evaluates it with [`Filter::matches`] over vCard content lines.
//! Collations (RFC 6352 §8.3): `i;unicode-casemap` (default; full Unicode case folding after NFKD, as
//! RFC 5051 asks), `i;ascii-casemap`, `i;octet`.
//!
//! Evaluation: a `prop-filter` matches when some instance of the property satisfies its tests combined
//! by its `test` (anyof/allof); with no tests it matches when the property exists; `is-not-defined`
//! matches when it does not. The `filter` combines its prop-filters by its own `test`.

use http::StatusCode;
use unicode_normalization::UnicodeNormalization;

use super::address_data::{content_lines, ContentLine, ReportProps};
use super::error::{DavError, Precondition};
use super::names;
use super::propfind::{xml_request, Depth};
use super::xml::{self, Element};

/// `test` attribute (RFC 6352 §10.5, §10.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Test {
    /// Logical OR (the default).
    #[default]
    AnyOf,
    /// Logical AND.
    AllOf,
}

/// A collation (RFC 4790, RFC 5051).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collation {
    /// `i;octet`.
    Octet,
    /// `i;ascii-casemap`.
    AsciiCasemap,
    /// `i;unicode-casemap` (the CardDAV default).
    #[default]
    UnicodeCasemap,
}

/// `match-type` (RFC 6352 §10.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchType {
    /// `equals`.
    Equals,
    /// `contains` (the default).
    #[default]
    Contains,
    /// `starts-with`.
    StartsWith,
    /// `ends-with`.
    EndsWith,
}

/// `CARDDAV:text-match` (RFC 6352 §10.5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMatch {
    /// The text to look for.
    pub text: String,
    /// Collation.
    pub collation: Collation,
    /// Match type.
    pub match_type: MatchType,
    /// `negate-condition="yes"`.
    pub negate: bool,
}

/// `CARDDAV:param-filter` (RFC 6352 §10.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamFilter {
    /// Parameter name, upper-cased.
    pub name: String,
    /// `is-not-defined`.
    pub is_not_defined: bool,
    /// Text test on the parameter's values.
    pub text_match: Option<TextMatch>,
}

/// `CARDDAV:prop-filter` (RFC 6352 §10.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropFilter {
    /// Property name, upper-cased.
    pub name: String,
    /// How the tests combine.
    pub test: Test,
    /// `is-not-defined`.
    pub is_not_defined: bool,
    /// Text tests on the value.
    pub text_matches: Vec<TextMatch>,
    /// Parameter tests.
    pub param_filters: Vec<ParamFilter>,
}

/// `CARDDAV:filter` (RFC 6352 §10.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// How the prop-filters combine.
    pub test: Test,
    /// The prop-filters; none matches every card.
    pub prop_filters: Vec<PropFilter>,
}

/// An `addressbook-query` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressbookQuery {
    /// What to return per match.
    pub props: ReportProps,
    /// The filter.
    pub filter: Filter,
    /// `CARDDAV:limit/nresults` (RFC 6352 §8.6.1).
    pub limit: Option<u32>,
}

fn fold(collation: Collation, s: &str) -> String {
    match collation {
        Collation::Octet => s.to_string(),
        Collation::AsciiCasemap => s.to_ascii_lowercase(),
        Collation::UnicodeCasemap => {
            let nfkd: String = s.nfkd().collect();
            caseless::default_case_fold_str(&nfkd).nfkd().collect()
        }
    }
}

impl TextMatch {
    /// A `contains` match with the default collation.
    pub fn contains(text: &str) -> Self {
        Self {
            text: text.to_string(),
            collation: Collation::default(),
            match_type: MatchType::default(),
            negate: false,
        }
    }

    /// True when `value` satisfies this test (negation applied).
    pub fn matches(&self, value: &str) -> bool {
        let needle = fold(self.collation, &self.text);
        let hay = fold(self.collation, value);
        let hit = match self.match_type {
            MatchType::Equals => hay == needle,
            MatchType::Contains => hay.contains(&needle),
            MatchType::StartsWith => hay.starts_with(&needle),
            MatchType::EndsWith => hay.ends_with(&needle),
        };
        hit != self.negate
    }

    fn from_element(el: &Element) -> Result<Self, DavError> {
        let collation = match el.attr(names::ATTR_COLLATION) {
            None | Some(names::COLLATION_UNICODE_CASEMAP) => Collation::UnicodeCasemap,
            Some(names::COLLATION_ASCII_CASEMAP) => Collation::AsciiCasemap,
            Some(names::COLLATION_OCTET) => Collation::Octet,
            Some(other) => {
                return Err(DavError::with_precondition(
                    StatusCode::FORBIDDEN,
                    Precondition::SupportedCollation,
                    format!("unsupported collation {other:?}"),
                ))
            }
        };
        let match_type = match el.attr(names::ATTR_MATCH_TYPE) {
            None | Some(names::MATCH_CONTAINS) => MatchType::Contains,
            Some(names::MATCH_EQUALS) => MatchType::Equals,
            Some(names::MATCH_STARTS_WITH) => MatchType::StartsWith,
            Some(names::MATCH_ENDS_WITH) => MatchType::EndsWith,
            Some(other) => {
                return Err(DavError::bad_request(format!(
                    "invalid match-type {other:?}"
                )))
            }
        };
        let negate = match el.attr(names::ATTR_NEGATE_CONDITION) {
            None | Some(names::NO) => false,
            Some(names::YES) => true,
            Some(other) => {
                return Err(DavError::bad_request(format!(
                    "invalid negate-condition {other:?}"
                )))
            }
        };
        Ok(Self {
            text: el.text.clone(),
            collation,
            match_type,
            negate,
        })
    }

    fn to_element(&self) -> Element {
        let mut el = Element::new(&names::TEXT_MATCH)
            .with_attr(
                names::ATTR_COLLATION,
                match self.collation {
                    Collation::Octet => names::COLLATION_OCTET,
                    Collation::AsciiCasemap => names::COLLATION_ASCII_CASEMAP,
                    Collation::UnicodeCasemap => names::COLLATION_UNICODE_CASEMAP,
                },
            )
            .with_attr(
                names::ATTR_MATCH_TYPE,
                match self.match_type {
                    MatchType::Equals => names::MATCH_EQUALS,
                    MatchType::Contains => names::MATCH_CONTAINS,
                    MatchType::StartsWith => names::MATCH_STARTS_WITH,
                    MatchType::EndsWith => names::MATCH_ENDS_WITH,
                },
            );
        if self.negate {
            el = el.with_attr(names::ATTR_NEGATE_CONDITION, names::YES);
        }
        el.with_text(self.text.clone())
    }
}

fn parse_test(el: &Element) -> Result<Test, DavError> {
    match el.attr(names::ATTR_TEST) {
        None | Some(names::TEST_ANYOF) => Ok(Test::AnyOf),
        Some(names::TEST_ALLOF) => Ok(Test::AllOf),
        Some(other) => Err(DavError::bad_request(format!("invalid test {other:?}"))),
    }
}

fn test_attr(test: Test) -> &'static str {
    match test {
        Test::AnyOf => names::TEST_ANYOF,
        Test::AllOf => names::TEST_ALLOF,
    }
}

fn required_name(el: &Element) -> Result<String, DavError> {
    el.attr(names::ATTR_NAME)
        .filter(|n| !n.is_empty())
        .map(str::to_ascii_uppercase)
        .ok_or_else(|| DavError::bad_request(format!("{} has no name attribute", el.clark())))
}

fn unsupported(el: &Element) -> DavError {
    DavError::with_precondition(
        StatusCode::FORBIDDEN,
        Precondition::SupportedFilter,
        format!("unsupported filter element {}", el.clark()),
    )
}

/// Undoes RFC 6350 §3.4 value escaping for matching.
fn unescape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl ParamFilter {
    fn matches(&self, line: &ContentLine) -> bool {
        let values: Vec<&String> = line
            .params
            .iter()
            .filter(|(n, _)| *n == self.name)
            .flat_map(|(_, v)| v.iter())
            .collect();
        let defined = line.params.iter().any(|(n, _)| *n == self.name);
        if self.is_not_defined {
            return !defined;
        }
        match &self.text_match {
            None => defined,
            Some(tm) => values.iter().any(|v| tm.matches(v)),
        }
    }
}

impl PropFilter {
    fn instance_matches(&self, line: &ContentLine) -> bool {
        let value = unescape_value(&line.value);
        let mut results = self
            .text_matches
            .iter()
            .map(|tm| tm.matches(&value))
            .chain(self.param_filters.iter().map(|pf| pf.matches(line)));
        match self.test {
            Test::AnyOf => results.any(|r| r),
            Test::AllOf => results.all(|r| r),
        }
    }

    /// True when this filter matches a card's content lines.
    pub fn matches(&self, lines: &[ContentLine]) -> bool {
        let mut instances = lines.iter().filter(|l| l.name == self.name).peekable();
        if self.is_not_defined {
            return instances.peek().is_none();
        }
        if self.text_matches.is_empty() && self.param_filters.is_empty() {
            return instances.peek().is_some();
        }
        instances.any(|l| self.instance_matches(l))
    }
}

impl Filter {
    /// True when the card (as content lines) matches.
    pub fn matches(&self, lines: &[ContentLine]) -> bool {
        let mut results = self.prop_filters.iter().map(|pf| pf.matches(lines));
        match self.test {
            Test::AnyOf => self.prop_filters.is_empty() || results.any(|r| r),
            Test::AllOf => results.all(|r| r),
        }
    }

    /// True when the vCard text matches.
    pub fn matches_vcard(&self, vcard: &str) -> bool {
        self.matches(&content_lines(vcard))
    }

    /// Reads a `CARDDAV:filter` element.
    pub fn from_element(el: &Element) -> Result<Self, DavError> {
        let mut prop_filters = Vec::new();
        for pf in &el.children {
            if !pf.is(&names::PROP_FILTER) {
                return Err(unsupported(pf));
            }
            let mut f = PropFilter {
                name: required_name(pf)?,
                test: parse_test(pf)?,
                is_not_defined: false,
                text_matches: Vec::new(),
                param_filters: Vec::new(),
            };
            for c in &pf.children {
                if c.is(&names::IS_NOT_DEFINED) {
                    f.is_not_defined = true;
                } else if c.is(&names::TEXT_MATCH) {
                    f.text_matches.push(TextMatch::from_element(c)?);
                } else if c.is(&names::PARAM_FILTER) {
                    let mut p = ParamFilter {
                        name: required_name(c)?,
                        is_not_defined: false,
                        text_match: None,
                    };
                    for g in &c.children {
                        if g.is(&names::IS_NOT_DEFINED) {
                            p.is_not_defined = true;
                        } else if g.is(&names::TEXT_MATCH) {
                            p.text_match = Some(TextMatch::from_element(g)?);
                        } else {
                            return Err(unsupported(g));
                        }
                    }
                    f.param_filters.push(p);
                } else {
                    return Err(unsupported(c));
                }
            }
            prop_filters.push(f);
        }
        Ok(Self {
            test: parse_test(el)?,
            prop_filters,
        })
    }

    /// The `CARDDAV:filter` element.
    pub fn to_element(&self) -> Element {
        Element::new(&names::FILTER)
            .with_attr(names::ATTR_TEST, test_attr(self.test))
            .with_children(self.prop_filters.iter().map(|pf| {
                let mut el = Element::new(&names::PROP_FILTER)
                    .with_attr(names::ATTR_NAME, pf.name.clone())
                    .with_attr(names::ATTR_TEST, test_attr(pf.test));
                if pf.is_not_defined {
                    el.push(Element::new(&names::IS_NOT_DEFINED));
                }
                for tm in &pf.text_matches {
                    el.push(tm.to_element());
                }
                for p in &pf.param_filters {
                    let mut pe = Element::new(&names::PARAM_FILTER)
                        .with_attr(names::ATTR_NAME, p.name.clone());
                    if p.is_not_defined {
                        pe.push(Element::new(&names::IS_NOT_DEFINED));
                    }
                    if let Some(tm) = &p.text_match {
                        pe.push(tm.to_element());
                    }
                    el.push(pe);
                }
                el
            }))
    }
}

impl AddressbookQuery {
    /// The XML body element.
    pub fn to_element(&self) -> Element {
        let mut root = Element::new(&names::ADDRESSBOOK_QUERY)
            .with_child(self.props.to_prop())
            .with_child(self.filter.to_element());
        if let Some(n) = self.limit {
            root.push(
                Element::new(&names::CARD_LIMIT)
                    .with_child(Element::new(&names::CARD_NRESULTS).with_text(n.to_string())),
            );
        }
        root
    }

    /// Client half: the XML body.
    pub fn body(&self) -> String {
        xml::render(&self.to_element())
    }

    /// Client half: the REPORT on the address book `uri` with `Depth: 1` (RFC 6352 §8.6).
    pub fn build_request(&self, uri: &str) -> Result<http::Request<String>, http::Error> {
        xml_request(names::METHOD_REPORT, uri, Some(Depth::One), self.body())
    }

    /// Server half: reads the request. A missing filter is a 400 (RFC 6352 §10.5 requires one).
    pub fn parse_request(body: &[u8]) -> Result<Self, DavError> {
        let root = xml::parse(body)?.expect_root(&names::ADDRESSBOOK_QUERY)?;
        let filter = Filter::from_element(root.require_child(&names::FILTER)?)?;
        let limit =
            match root.child(&names::CARD_LIMIT) {
                None => None,
                Some(l) => {
                    let n = l.require_child(&names::CARD_NRESULTS)?.text_trimmed();
                    Some(n.parse::<u32>().map_err(|_| {
                        DavError::bad_request(format!("nresults {n:?} is not a count"))
                    })?)
                }
            };
        Ok(Self {
            props: ReportProps::from_prop(root.child(&names::PROP)),
            filter,
            limit,
        })
    }
}

/// Server half: the marker response added when a query answer is cut at `limit` (RFC 6352 §8.6.1:
/// 507 on the request-URI with `DAV:number-of-matches-within-limits`).
pub fn truncation_marker(request_uri: &str) -> super::multistatus::Response {
    let mut r =
        super::multistatus::Response::with_status(request_uri, StatusCode::INSUFFICIENT_STORAGE);
    r.error = Some(
        Element::new(&names::ERROR)
            .with_child(Precondition::NumberOfMatchesWithinLimits.to_element()),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::address_data::AddressDataRequest;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dav");

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}/{path}")).unwrap()
    }

    const ANN: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:1\r\nFN:Ann Straße\r\nEMAIL;TYPE=work:ann@example.com\r\nEMAIL;TYPE=home:ann@home.example\r\nNOTE:a\\, b\r\nEND:VCARD\r\n";
    const BOB: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:2\r\nFN:BOB\r\nTEL:+1\r\nEND:VCARD\r\n";

    fn q(body: &str) -> Filter {
        AddressbookQuery::parse_request(body.as_bytes())
            .unwrap()
            .filter
    }

    #[test]
    fn unicode_casemap_does_full_case_folding() {
        let mut tm = TextMatch::contains("STRASSE");
        assert!(tm.matches("Ann Straße"), "ß folds to ss");
        tm.collation = Collation::AsciiCasemap;
        assert!(!tm.matches("Ann Straße"));
        tm.text = "ann".into();
        assert!(tm.matches("ANN"));
        tm.collation = Collation::Octet;
        assert!(!tm.matches("ANN"));
        let mut eq = TextMatch::contains("ǅ");
        eq.match_type = MatchType::Equals;
        assert!(eq.matches("ǆ"));
        let mut kelvin = TextMatch::contains("k");
        kelvin.match_type = MatchType::Equals;
        assert!(kelvin.matches("\u{212A}"), "KELVIN SIGN folds to k");
    }

    #[test]
    fn match_types_and_negation() {
        let mut tm = TextMatch::contains("ann@");
        tm.match_type = MatchType::StartsWith;
        assert!(tm.matches("ann@example.com"));
        tm.match_type = MatchType::EndsWith;
        assert!(!tm.matches("ann@example.com"));
        tm.negate = true;
        assert!(tm.matches("ann@example.com"));
    }

    #[test]
    fn evaluates_filters() {
        let any = q(
            r#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter test="anyof"><C:prop-filter name="FN"><C:text-match>bob</C:text-match></C:prop-filter><C:prop-filter name="email"><C:text-match match-type="ends-with">example.com</C:text-match></C:prop-filter></C:filter></C:addressbook-query>"#,
        );
        assert!(any.matches_vcard(ANN));
        assert!(any.matches_vcard(BOB));
        let mut all = any.clone();
        all.test = Test::AllOf;
        assert!(!all.matches_vcard(ANN));
        let not_defined = q(
            r#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="EMAIL"><C:is-not-defined/></C:prop-filter></C:filter></C:addressbook-query>"#,
        );
        assert!(!not_defined.matches_vcard(ANN));
        assert!(not_defined.matches_vcard(BOB));
        let exists = q(
            r#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="TEL"/></C:filter></C:addressbook-query>"#,
        );
        assert!(exists.matches_vcard(BOB) && !exists.matches_vcard(ANN));
        let param = q(
            r#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="EMAIL" test="allof"><C:param-filter name="TYPE"><C:text-match match-type="equals">HOME</C:text-match></C:param-filter><C:text-match>home.example</C:text-match></C:prop-filter></C:filter></C:addressbook-query>"#,
        );
        assert!(
            param.matches_vcard(ANN),
            "the home instance satisfies both tests"
        );
        let param_mismatch = q(
            r#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="EMAIL" test="allof"><C:param-filter name="TYPE"><C:text-match match-type="equals">work</C:text-match></C:param-filter><C:text-match>home.example</C:text-match></C:prop-filter></C:filter></C:addressbook-query>"#,
        );
        assert!(
            !param_mismatch.matches_vcard(ANN),
            "no single instance satisfies both"
        );
        let escaped = q(
            r#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="NOTE"><C:text-match match-type="equals">a, b</C:text-match></C:prop-filter></C:filter></C:addressbook-query>"#,
        );
        assert!(escaped.matches_vcard(ANN));
        assert!(
            Filter::default().matches_vcard(BOB),
            "an empty filter matches all"
        );
    }

    #[test]
    fn parses_client_queries() {
        let apple =
            AddressbookQuery::parse_request(&fixture("requests/apple-addressbook-query.xml"))
                .unwrap();
        assert_eq!(apple.limit, Some(50));
        assert_eq!(apple.filter.test, Test::AnyOf);
        assert_eq!(apple.filter.prop_filters.len(), 3);
        assert_eq!(
            apple.filter.prop_filters[0].text_matches[0].match_type,
            MatchType::StartsWith
        );
        assert!(apple.filter.matches_vcard(ANN));
        let tb =
            AddressbookQuery::parse_request(&fixture("requests/thunderbird-addressbook-query.xml"))
                .unwrap();
        assert!(tb.filter.prop_filters[0].text_matches[0].negate);
        assert_eq!(tb.props.address_data, Some(AddressDataRequest::default()));
    }

    #[test]
    fn refuses_unsupported_collation_and_filters() {
        let e = AddressbookQuery::parse_request(br#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="FN"><C:text-match collation="i;klingon">x</C:text-match></C:prop-filter></C:filter></C:addressbook-query>"#).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.precondition, Some(Precondition::SupportedCollation));
        let e = AddressbookQuery::parse_request(br#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:comp-filter name="X"/></C:filter></C:addressbook-query>"#).unwrap_err();
        assert_eq!(e.precondition, Some(Precondition::SupportedFilter));
        let e = AddressbookQuery::parse_request(
            br#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"/>"#,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = AddressbookQuery::parse_request(br#"<C:addressbook-query xmlns:C="urn:ietf:params:xml:ns:carddav"><C:filter><C:prop-filter name="FN"><C:text-match match-type="fuzzy">x</C:text-match></C:prop-filter></C:filter></C:addressbook-query>"#).unwrap_err();
        assert!(e.message.contains("fuzzy"));
    }

    #[test]
    fn request_round_trip() {
        let query =
            AddressbookQuery::parse_request(&fixture("requests/apple-addressbook-query.xml"))
                .unwrap();
        let req = query.build_request("/ab/").unwrap();
        assert_eq!(req.headers()["Depth"], "1");
        assert_eq!(
            AddressbookQuery::parse_request(req.body().as_bytes()).unwrap(),
            query
        );
        let marker = truncation_marker("/ab/");
        assert_eq!(marker.status, Some(StatusCode::INSUFFICIENT_STORAGE));
    }
}
