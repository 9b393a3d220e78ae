//! The one XML layer of `dav/`: a hostile-input-safe, namespace-aware reader that builds a small owned
//! [`Element`] tree (names matched by namespace URI, never by prefix), and a writer that renders such a
//! tree with fixed prefixes (`d:`, `card:`, `cs:`) and proper escaping.
//!
//! Refused on input: any DOCTYPE (and so every DTD and entity declaration), references to entities
//! other than the five predefined ones and character references, undeclared prefixes, nesting deeper
//! than [`Limits::max_depth`] and bodies larger than [`Limits::max_bytes`].

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

use super::names::{
    QName, NS_CALSERVER, NS_CARDDAV, NS_DAV, PREFIX_CALSERVER, PREFIX_CARDDAV, PREFIX_DAV,
};

/// The XML namespace (`xml:` prefix), bound by definition. XML Namespaces 1.0 §3.
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Why an XML body was refused or could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The body is larger than the configured limit.
    #[error("XML body is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Elements are nested deeper than the configured limit.
    #[error("XML nesting deeper than {limit} levels (at <{element}>)")]
    TooDeep {
        /// Configured limit.
        limit: usize,
        /// Local name of the element that crossed it.
        element: String,
    },
    /// The body is not valid UTF-8.
    #[error("XML body is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
    /// A `<!DOCTYPE …>` appeared: DTDs and entity declarations are refused.
    #[error("DOCTYPE declaration refused: DTDs and entity declarations are not allowed")]
    Doctype,
    /// A reference to an entity that is not one of the five predefined ones.
    #[error("reference to undeclared entity `&{0};` refused (only &lt; &gt; &amp; &apos; &quot; and character references are allowed)")]
    UnknownEntity(String),
    /// A character reference that names no valid character.
    #[error("invalid character reference `&{0};`")]
    BadCharRef(String),
    /// A prefix used without a namespace declaration.
    #[error("namespace prefix `{0}` is not declared")]
    UnknownPrefix(String),
    /// Malformed XML as reported by the tokenizer.
    #[error("malformed XML at byte {position}: {message}")]
    Syntax {
        /// Byte offset in the body.
        position: u64,
        /// What the tokenizer complained about.
        message: String,
    },
    /// No root element.
    #[error("XML body has no root element")]
    NoRoot,
    /// Elements or text after the root element, or an unclosed element at the end.
    #[error("XML body is not a single well-formed element: {0}")]
    NotSingleRoot(&'static str),
    /// The root element is not the one this operation expects.
    #[error("unexpected root element {found}, expected {expected}")]
    UnexpectedRoot {
        /// Expected name in Clark notation.
        expected: String,
        /// Found name in Clark notation.
        found: String,
    },
    /// A required child element is missing.
    #[error("{parent} is missing the required child {child}")]
    MissingChild {
        /// Parent element in Clark notation.
        parent: String,
        /// Missing child in Clark notation.
        child: String,
    },
    /// An element or attribute holds a value this layer cannot accept.
    #[error("invalid value {value:?} in {place}: {reason}")]
    InvalidValue {
        /// Element (Clark notation) or attribute that held it.
        place: String,
        /// The offending value (truncated to 100 chars).
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
}

impl XmlError {
    /// Builds an [`XmlError::InvalidValue`], truncating long values.
    pub fn invalid(place: impl Into<String>, value: &str, reason: &'static str) -> Self {
        XmlError::InvalidValue {
            place: place.into(),
            value: value.chars().take(100).collect(),
            reason,
        }
    }
}

/// Bounds applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body in bytes.
    pub max_bytes: usize,
    /// Deepest accepted element nesting (the root is depth 1).
    pub max_depth: usize,
}

impl Limits {
    /// Default body limit: 10 MiB (request bodies the server half parses).
    pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;
    /// Default nesting limit: 64 levels.
    pub const DEFAULT_MAX_DEPTH: usize = 64;
    /// Body limit for a `DAV:multistatus` answer the client half parses: 256 MiB. A listing of
    /// 100,000 members is ~22 MB and a multiget of 100 cards with photos can pass 10 MiB, so
    /// the request bound would make big address books unreadable.
    pub const RESPONSE_MAX_BYTES: usize = 256 * 1024 * 1024;

    /// The bounds for a server's answer: [`Self::RESPONSE_MAX_BYTES`], the default depth.
    pub fn response() -> Self {
        Self {
            max_bytes: Self::RESPONSE_MAX_BYTES,
            ..Self::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// An attribute of an [`Element`]; `ns` is empty for unqualified attributes (the usual case in DAV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Namespace URI, empty when unqualified.
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Unescaped value.
    pub value: String,
}

/// An owned XML element: namespace URI, local name, attributes, child elements and its direct text
/// (text, CDATA and resolved references concatenated; whitespace-only text between child elements is
/// dropped, any other text is kept exactly).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace URI, empty when in no namespace.
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes, namespace declarations excluded.
    pub attrs: Vec<Attribute>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Direct text content.
    pub text: String,
}

impl Element {
    /// An empty element with the given name.
    pub fn new(name: &QName) -> Self {
        Self {
            ns: name.ns.to_string(),
            name: name.local.to_string(),
            ..Self::default()
        }
    }

    /// This element's qualified name.
    pub fn qname(&self) -> QName {
        QName::new(self.ns.clone(), self.name.clone())
    }

    /// Clark notation of this element's name, for messages.
    pub fn clark(&self) -> String {
        format!("{{{}}}{}", self.ns, self.name)
    }

    /// True when this element has the given name (namespace URI and local name).
    pub fn is(&self, name: &QName) -> bool {
        self.ns == name.ns && self.name == name.local
    }

    /// Builder: sets the text.
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    /// Builder: appends a child.
    #[must_use]
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    /// Builder: appends children.
    #[must_use]
    pub fn with_children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        self.children.extend(children);
        self
    }

    /// Builder: sets an unqualified attribute.
    #[must_use]
    pub fn with_attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attrs.push(Attribute {
            ns: String::new(),
            name: name.to_string(),
            value: value.into(),
        });
        self
    }

    /// Appends a child.
    pub fn push(&mut self, child: Element) {
        self.children.push(child);
    }

    /// First child with the given name.
    pub fn child(&self, name: &QName) -> Option<&Element> {
        self.children.iter().find(|c| c.is(name))
    }

    /// All children with the given name.
    pub fn children_named<'a>(&'a self, name: &'a QName) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(name))
    }

    /// First child with the given name, or [`XmlError::MissingChild`].
    pub fn require_child(&self, name: &QName) -> Result<&Element, XmlError> {
        self.child(name).ok_or_else(|| XmlError::MissingChild {
            parent: self.clark(),
            child: name.to_string(),
        })
    }

    /// Value of the unqualified attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The text with surrounding XML whitespace removed.
    pub fn text_trimmed(&self) -> &str {
        self.text.trim_matches(is_xml_space)
    }

    /// Returns `self` when it has the expected name, else [`XmlError::UnexpectedRoot`].
    pub fn expect_root(self, name: &QName) -> Result<Self, XmlError> {
        if self.is(name) {
            Ok(self)
        } else {
            Err(XmlError::UnexpectedRoot {
                expected: name.to_string(),
                found: self.clark(),
            })
        }
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Parses a body with the default [`Limits`].
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    parse_with(input, &Limits::default())
}

/// Parses a body into its root element, applying `limits` and refusing DTDs and unknown entities.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: input.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| XmlError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let position = reader.buffer_position();
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (resolve_ns(ns), event),
            Err(e) => {
                return Err(XmlError::Syntax {
                    position,
                    message: e.to_string(),
                })
            }
        };
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(XmlError::NotSingleRoot("a second root element"));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                        element: String::from_utf8_lossy(start.local_name().as_ref().as_bytes())
                            .into_owned(),
                    });
                }
                let element = open_element(&reader, ns?, &start)?;
                stack.push(element);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err(XmlError::NotSingleRoot("a second root element"));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                        element: start.local_name().as_ref().to_string(),
                    });
                }
                let element = open_element(&reader, ns?, &start)?;
                close_element(element, &mut stack, &mut root);
            }
            Event::End(_) => match stack.pop() {
                Some(element) => close_element(element, &mut stack, &mut root),
                None => return Err(XmlError::NotSingleRoot("an end tag without a start tag")),
            },
            Event::Text(t) => {
                let content = t.xml10_content();
                only_xml_chars(&content, &reader)?;
                push_text(&mut stack, &content)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                only_xml_chars(&content, &reader)?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None => return Err(XmlError::NotSingleRoot("CDATA outside the root element")),
                }
            }
            Event::GeneralRef(r) => {
                let raw = r.as_ref().to_string();
                let resolved: String = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => c.to_string(),
                        _ => return Err(XmlError::BadCharRef(raw)),
                    }
                } else {
                    match raw.as_str() {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "apos" => "'".into(),
                        "quot" => "\"".into(),
                        _ => return Err(XmlError::UnknownEntity(raw)),
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::NotSingleRoot("an element is not closed"));
    }
    root.ok_or(XmlError::NoRoot)
}

fn resolve_ns(ns: ResolveResult<'_>) -> Result<String, XmlError> {
    match ns {
        // The namespace name is the declaring attribute's value with its references expanded
        // (Namespaces in XML §2.2): `xmlns:d="DAV&#58;"` is `DAV:`. The resolver hands out the
        // raw value.
        ResolveResult::Bound(ns) => {
            let raw = ns.as_ref().to_string();
            match quick_xml::escape::unescape(&raw) {
                Ok(v) => Ok(v.into_owned()),
                Err(quick_xml::escape::EscapeError::UnrecognizedEntity(_, e)) => {
                    Err(XmlError::UnknownEntity(e))
                }
                Err(e) => Err(XmlError::BadCharRef(e.to_string())),
            }
        }
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(prefix) => Err(XmlError::UnknownPrefix(prefix)),
    }
}

fn open_element(
    reader: &NsReader<&[u8]>,
    ns: String,
    start: &BytesStart<'_>,
) -> Result<Element, XmlError> {
    only_xml_chars(&ns, reader)?;
    let name = start.local_name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| XmlError::Syntax {
            position: reader.buffer_position(),
            message: e.to_string(),
        })?;
        if attr.key.as_namespace_binding().is_some() {
            only_xml_chars(&attr.value, reader)?;
            continue;
        }
        let (attr_ns, local) = reader.resolver().resolve_attribute(attr.key);
        let attr_ns = resolve_ns(attr_ns)?;
        let value =
            attr.normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| match e {
                    quick_xml::Error::Escape(
                        quick_xml::escape::EscapeError::UnrecognizedEntity(_, entity),
                    ) => XmlError::UnknownEntity(entity),
                    other => XmlError::Syntax {
                        position: reader.buffer_position(),
                        message: other.to_string(),
                    },
                })?;
        only_xml_chars(&value, reader)?;
        attrs.push(Attribute {
            ns: attr_ns,
            name: local.as_ref().to_string(),
            value: value.into_owned(),
        });
    }
    Ok(Element {
        ns,
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn close_element(mut element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    if !element.children.is_empty() && element.text.chars().all(is_xml_space) {
        element.text.clear();
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.chars().all(is_xml_space) => Ok(()),
        None => Err(XmlError::NotSingleRoot("text outside the root element")),
    }
}

/// Refuses text or an attribute value holding a character XML 1.0 does not allow (NUL and most
/// C0 controls, U+FFFE, U+FFFF): such a document is not well-formed, and rendering could not
/// carry the character anyway.
fn only_xml_chars(text: &str, reader: &NsReader<&[u8]>) -> Result<(), XmlError> {
    match text.chars().find(|c| !is_xml_char(*c)) {
        None => Ok(()),
        Some(c) => Err(XmlError::Syntax {
            position: reader.buffer_position(),
            message: format!("character U+{:04X} is not allowed in XML 1.0", u32::from(c)),
        }),
    }
}

/// XML 1.0 §2.2 `Char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Renders `root` as a complete document (XML declaration included). Known namespaces get the prefixes
/// `d:`, `card:` and `cs:`; any other namespace gets `x0:`, `x1:`… All are declared on the root.
/// Characters XML 1.0 cannot carry are dropped; `\r` is written as `&#13;` so it survives parsing.
pub fn render(root: &Element) -> String {
    let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    collect_namespaces(root, &mut prefixes, &mut order);
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    write_element(root, &prefixes, Some(&order), &mut out);
    out
}

fn collect_namespaces(el: &Element, map: &mut BTreeMap<String, String>, order: &mut Vec<String>) {
    let mut add = |ns: &str, map: &mut BTreeMap<String, String>| {
        if ns.is_empty() || ns == NS_XML || map.contains_key(ns) {
            return;
        }
        let prefix = match ns {
            NS_DAV => PREFIX_DAV.to_string(),
            NS_CARDDAV => PREFIX_CARDDAV.to_string(),
            NS_CALSERVER => PREFIX_CALSERVER.to_string(),
            _ => format!("x{}", map.keys().filter(|k| !is_known(k)).count()),
        };
        map.insert(ns.to_string(), prefix);
        order.push(ns.to_string());
    };
    add(&el.ns, map);
    for a in &el.attrs {
        add(&a.ns, map);
    }
    for c in &el.children {
        collect_namespaces(c, map, order);
    }
}

fn is_known(ns: &str) -> bool {
    matches!(ns, NS_DAV | NS_CARDDAV | NS_CALSERVER)
}

/// Writes `ns`'s prefix and `local` (`d:href`) into `out`, with no allocation: this runs for
/// every element and attribute of a multistatus of thousands of responses.
fn write_name(ns: &str, local: &str, prefixes: &BTreeMap<String, String>, out: &mut String) {
    if ns == NS_XML {
        out.push_str("xml:");
    } else if !ns.is_empty() {
        if let Some(p) = prefixes.get(ns) {
            out.push_str(p);
            out.push(':');
        }
    }
    out.push_str(local);
}

fn write_element(
    el: &Element,
    prefixes: &BTreeMap<String, String>,
    declare: Option<&[String]>,
    out: &mut String,
) {
    out.push('<');
    write_name(&el.ns, &el.name, prefixes, out);
    if let Some(order) = declare {
        for ns in order {
            if let Some(p) = prefixes.get(ns) {
                out.push_str(" xmlns:");
                out.push_str(p);
                out.push_str("=\"");
                escape_attr(ns, out);
                out.push('"');
            }
        }
    }
    for a in &el.attrs {
        out.push(' ');
        write_name(&a.ns, &a.name, prefixes, out);
        out.push_str("=\"");
        escape_attr(&a.value, out);
        out.push('"');
    }
    if el.children.is_empty() && el.text.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    escape_text(&el.text, out);
    for c in &el.children {
        write_element(c, prefixes, None, out);
    }
    out.push_str("</");
    write_name(&el.ns, &el.name, prefixes, out);
    out.push('>');
}

/// True for a byte that starts something `escape_*` must look at: markup, a control character,
/// or `0xEF`, the lead byte of U+FFFE/U+FFFF (not XML characters). Every other byte is copied
/// as it is, a run at a time; text is mostly such runs (a vCard in `address-data`).
fn needs_care(b: u8, attr: bool) -> bool {
    match b {
        b'&' | b'<' | b'>' | 0xEF => true,
        // Text keeps tabs and line feeds as they are; attributes write them as references.
        b'\t' | b'\n' => attr,
        b'"' => attr,
        _ => b < 0x20,
    }
}

/// Copies `text` into `out`, handing each character that needs care to `special`.
fn escape_with(text: &str, out: &mut String, attr: bool, special: fn(char, &mut String)) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !needs_care(bytes[i], attr) {
            i += 1;
            continue;
        }
        out.push_str(&text[start..i]);
        // `i` is a char boundary: every byte that needs care is ASCII or a lead byte.
        let c = text[i..].chars().next().unwrap_or('\u{FFFD}');
        special(c, out);
        i += c.len_utf8();
        start = i;
    }
    out.push_str(&text[start..]);
}

/// Escapes character data into `out` (`&`, `<`, `>` as entities, `\r` as `&#13;`; characters
/// XML cannot carry are dropped).
pub fn escape_text(text: &str, out: &mut String) {
    escape_with(text, out, false, |c, out| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '\r' => out.push_str("&#13;"),
        c if is_xml_char(c) => out.push(c),
        _ => {}
    });
}

/// Escapes an attribute value into `out` (quotes and whitespace controls as references).
pub fn escape_attr(text: &str, out: &mut String) {
    escape_with(text, out, true, |c, out| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\t' => out.push_str("&#9;"),
        '\n' => out.push_str("&#10;"),
        '\r' => out.push_str("&#13;"),
        c if is_xml_char(c) => out.push(c),
        _ => {}
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::names::{ADDRESS_DATA, GETETAG, HREF, MULTISTATUS, PROP, PROPFIND};

    #[test]
    fn escaping_copies_plain_runs_and_handles_every_special_character() {
        let mut t = String::new();
        escape_text(
            "a&b<c>d\r\n\te\u{1}f\u{FFFE}g\u{FFFF}h\u{FFFD}i\u{F000}j\u{1F600}\"k",
            &mut t,
        );
        assert_eq!(
            t,
            "a&amp;b&lt;c&gt;d&#13;\n\tefgh\u{FFFD}i\u{F000}j\u{1F600}\"k"
        );
        let mut a = String::new();
        escape_attr("q\"\t\n\r&\u{FFFF}ü", &mut a);
        assert_eq!(a, "q&quot;&#9;&#10;&#13;&amp;ü");
        // Runs at either end, and nothing at all.
        let mut e = String::new();
        escape_text("", &mut e);
        escape_text("&", &mut e);
        escape_text("plain Zoë", &mut e);
        assert_eq!(e, "&amp;plain Zoë");
    }

    #[test]
    fn parses_namespaces_by_uri_not_prefix() {
        let a = parse(br#"<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>"#)
            .unwrap();
        let b = parse(br#"<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>"#).unwrap();
        let c = parse(
            br#"<?xml version="1.0"?><x:propfind xmlns:x="DAV:"><prop xmlns="DAV:"><y:getetag xmlns:y="DAV:"/></prop></x:propfind>"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.is(&PROPFIND));
        assert!(a.child(&PROP).unwrap().child(&GETETAG).is_some());
    }

    #[test]
    fn same_prefix_other_namespace_does_not_match() {
        let doc = parse(br#"<D:propfind xmlns:D="urn:not-dav"/>"#).unwrap();
        assert!(!doc.is(&PROPFIND));
        assert_eq!(
            doc.expect_root(&PROPFIND).unwrap_err(),
            XmlError::UnexpectedRoot {
                expected: "{DAV:}propfind".into(),
                found: "{urn:not-dav}propfind".into()
            }
        );
    }

    #[test]
    fn unqualified_names_are_in_no_namespace() {
        let doc = parse(b"<propfind/>").unwrap();
        assert_eq!(doc.ns, "");
        assert!(!doc.is(&PROPFIND));
    }

    #[test]
    fn text_references_and_cdata_resolve() {
        let doc = parse(
            b"<a xmlns=\"urn:x\">x &lt;&amp;&gt; &#65;&#x42; <![CDATA[<raw>]]>&apos;&quot;</a>",
        )
        .unwrap();
        assert_eq!(doc.text, "x <&> AB <raw>'\"");
    }

    #[test]
    fn whitespace_between_children_is_dropped_but_leaf_text_kept() {
        let doc = parse(b"<a>\n  <b>  keep me  </b>\n</a>").unwrap();
        assert_eq!(doc.text, "");
        assert_eq!(doc.children[0].text, "  keep me  ");
        assert_eq!(doc.children[0].text_trimmed(), "keep me");
    }

    #[test]
    fn attributes_resolve_and_namespace_declarations_are_skipped() {
        let doc = parse(
            br#"<c:address-data xmlns:c="urn:ietf:params:xml:ns:carddav" content-type="text/vcard" version="4.0" c:x="a&amp;b"/>"#,
        )
        .unwrap();
        assert!(doc.is(&ADDRESS_DATA));
        assert_eq!(doc.attr("content-type"), Some("text/vcard"));
        assert_eq!(doc.attr("version"), Some("4.0"));
        assert_eq!(doc.attrs.len(), 3);
        assert_eq!(doc.attrs[2].ns, "urn:ietf:params:xml:ns:carddav");
        assert_eq!(doc.attrs[2].value, "a&b");
    }

    #[test]
    fn refuses_billion_laughs() {
        let doc = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
        assert_eq!(parse(doc).unwrap_err(), XmlError::Doctype);
    }

    #[test]
    fn refuses_external_entity() {
        let doc = br#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><d:href xmlns:d="DAV:">&xxe;</d:href>"#;
        assert_eq!(parse(doc).unwrap_err(), XmlError::Doctype);
    }

    #[test]
    fn refuses_undeclared_entity_reference_without_doctype() {
        let err = parse(br#"<d:href xmlns:d="DAV:">&xxe;</d:href>"#).unwrap_err();
        assert_eq!(err, XmlError::UnknownEntity("xxe".into()));
        assert!(err.to_string().contains("&xxe;"));
        let err = parse(br#"<d:href xmlns:d="DAV:" a="&xxe;"/>"#).unwrap_err();
        assert_eq!(err, XmlError::UnknownEntity("xxe".into()));
    }

    #[test]
    fn refuses_bad_char_ref() {
        assert_eq!(
            parse(b"<a>&#0;</a>").unwrap_err(),
            XmlError::BadCharRef("#0".into())
        );
        assert!(matches!(
            parse(b"<a>&#xFFFFFFFF;</a>").unwrap_err(),
            XmlError::BadCharRef(_)
        ));
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut doc = String::new();
        for _ in 0..10_000 {
            doc.push_str("<a>");
        }
        for _ in 0..10_000 {
            doc.push_str("</a>");
        }
        let err = parse(doc.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            XmlError::TooDeep {
                limit: 64,
                element: "a".into()
            }
        );
        // exactly at the limit is fine
        let ok = "<a>".repeat(64) + &"</a>".repeat(64);
        assert!(parse(ok.as_bytes()).is_ok());
        let deep_empty = "<a>".repeat(64) + "<b/>" + &"</a>".repeat(64);
        assert!(matches!(
            parse(deep_empty.as_bytes()),
            Err(XmlError::TooDeep { .. })
        ));
    }

    #[test]
    fn refuses_oversized_body() {
        let limits = Limits {
            max_bytes: 100,
            max_depth: 8,
        };
        let doc = format!("<a>{}</a>", "x".repeat(200));
        assert_eq!(
            parse_with(doc.as_bytes(), &limits).unwrap_err(),
            XmlError::TooLarge {
                size: 207,
                limit: 100
            }
        );
        let big = vec![b' '; Limits::DEFAULT_MAX_BYTES + 1];
        assert!(matches!(parse(&big), Err(XmlError::TooLarge { .. })));
    }

    #[test]
    fn refuses_unknown_prefix_and_malformed_input() {
        assert_eq!(
            parse(b"<x:a/>").unwrap_err(),
            XmlError::UnknownPrefix("x".into())
        );
        assert!(matches!(
            parse(b"<a><b></a>").unwrap_err(),
            XmlError::Syntax { .. }
        ));
        assert_eq!(parse(b"").unwrap_err(), XmlError::NoRoot);
        assert_eq!(parse(b"  <!-- c -->  ").unwrap_err(), XmlError::NoRoot);
        assert!(matches!(
            parse(b"<a/><b/>").unwrap_err(),
            XmlError::NotSingleRoot(_)
        ));
        assert!(matches!(
            parse(b"<a>").unwrap_err(),
            XmlError::NotSingleRoot(_) | XmlError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"junk<a/>").unwrap_err(),
            XmlError::NotSingleRoot(_)
        ));
        assert_eq!(parse(b"<a>\xff</a>").unwrap_err(), XmlError::NotUtf8(3));
    }

    #[test]
    fn renders_with_fixed_prefixes_and_escaping() {
        let el = Element::new(&MULTISTATUS).with_child(
            Element::new(&HREF)
                .with_text("/a&b<c>\r\n\u{1}")
                .with_attr("q", "\"x\"\n"),
        );
        assert_eq!(
            render(&el),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:multistatus xmlns:d=\"DAV:\"><d:href q=\"&quot;x&quot;&#10;\">/a&amp;b&lt;c&gt;&#13;\n</d:href></d:multistatus>"
        );
    }

    #[test]
    fn renders_unknown_namespaces_with_generated_prefixes() {
        let el = Element::new(&PROP)
            .with_child(Element::new(&QName::new("urn:a", "one")))
            .with_child(Element::new(&QName::new("urn:b", "two")).with_text("v"))
            .with_child(Element::new(&QName::new("", "plain")))
            .with_child(Element::new(&ADDRESS_DATA));
        let out = render(&el);
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:prop xmlns:d=\"DAV:\" xmlns:x0=\"urn:a\" xmlns:x1=\"urn:b\" xmlns:card=\"urn:ietf:params:xml:ns:carddav\"><x0:one/><x1:two>v</x1:two><plain/><card:address-data/></d:prop>"
        );
        assert_eq!(parse(out.as_bytes()).unwrap(), el);
    }

    #[test]
    fn refuses_characters_xml_does_not_allow() {
        // Regression (fuzz target dav_request_parse): NULs in text were kept in the tree, and
        // rendering dropped them, so the server answered something else than it read.
        for doc in [
            &b"<d:prop xmlns:d=\"DAV:\"><d:displayname>a</d:displayname>\0\0</d:prop>"[..],
            b"<d:displayname xmlns:d=\"DAV:\">\x01</d:displayname>",
            b"<d:displayname xmlns:d=\"DAV:\"><![CDATA[\x0b]]></d:displayname>",
            b"<d:displayname xmlns:d=\"DAV:\" x=\"\x1f\"/>",
            "<d:displayname xmlns:d=\"DAV:\">\u{FFFE}</d:displayname>".as_bytes(),
            // A namespace name with a control character (second fuzz finding).
            b"<d:propfind xmlns:d=\"DAV:\x01\"><d:prop/></d:propfind>",
        ] {
            assert!(
                matches!(parse(doc), Err(XmlError::Syntax { .. })),
                "{:?}",
                String::from_utf8_lossy(doc)
            );
        }
        // Third fuzz finding: references in a namespace declaration were not expanded, so the
        // element's namespace differed from the one rendered back.
        let esc = parse(
            b"<d:propfind xmlns:d=\"DAV&#58;\" xmlns:x=\"urn:a&amp;b&gt;\"><x:p/></d:propfind>",
        )
        .unwrap();
        assert_eq!(esc.ns, "DAV:");
        assert_eq!(esc.children[0].ns, "urn:a&b>");
        assert_eq!(parse(render(&esc).as_bytes()).unwrap(), esc);
        let ok = parse(b"<d:displayname xmlns:d=\"DAV:\">tab\there\r\n</d:displayname>").unwrap();
        assert_eq!(parse(render(&ok).as_bytes()).unwrap(), ok);
    }

    #[test]
    fn render_parse_round_trip_keeps_crlf() {
        let el = Element::new(&ADDRESS_DATA).with_text("BEGIN:VCARD\r\nEND:VCARD\r\n");
        assert_eq!(parse(render(&el).as_bytes()).unwrap(), el);
    }
}
