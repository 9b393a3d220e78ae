//! Reading: splits input into cards, reports every unreadable card as a [`Diagnostic`] with its
//! position, and parses the others with calcard, fixing what calcard gets wrong on real exporter
//! output (RFC 6868 carets, bare `QUOTED-PRINTABLE`, `TYPE="a,b"`, `--MM-DD` dates, small
//! `ENCODING=b` values that happen to be valid UTF-8, folds inside a UTF-8 sequence, BOM).

use super::names::{
    BINARY_PROPS, DATE_PROPS, ENC_BASE64_BARE, ENC_QUOTED_PRINTABLE, PARAM_ENCODING,
};
use calcard::common::{Data, IanaParse};
use calcard::vcard::{VCard, VCardParameterValue, VCardProperty, VCardValue};
use calcard::{Entry, Parser};
use std::borrow::Cow;
use std::fmt;

/// What [`read`] found: the readable cards in input order, and one diagnostic per unreadable card.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOutput {
    /// Readable cards, in input order.
    pub cards: Vec<VCard>,
    /// Unreadable cards (and stray content between cards), in input order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Why one card (or one run of stray lines) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// 1-based position in the input: each `BEGIN:VCARD` and each run of stray lines counts one.
    pub card_index: usize,
    /// 1-based line number of the offending line (for an unterminated card, its `BEGIN` line).
    pub line: usize,
    /// Human-readable reason.
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "card {}, line {}: {}",
            self.card_index, self.line, self.reason
        )
    }
}

/// Reads raw bytes: repairs folds that split a UTF-8 sequence (RFC 6350 §3.2 allows folding at
/// any octet) before decoding, and decodes anything else that is not UTF-8 lossily.
pub fn read_bytes(input: &[u8]) -> ReadOutput {
    match std::str::from_utf8(input) {
        Ok(text) => read(text),
        Err(_) => {
            let joined = join_split_utf8_folds(input);
            read(&String::from_utf8_lossy(&joined))
        }
    }
}

/// Removes a fold (`CRLF SP`, `LF SP`, or with TAB) when the next octet is a UTF-8 continuation byte.
fn join_split_utf8_folds(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let fold_len = match (input.get(i), input.get(i + 1), input.get(i + 2)) {
            (Some(b'\r'), Some(b'\n'), Some(b' ' | b'\t')) => 3,
            (Some(b'\n'), Some(b' ' | b'\t'), _) => 2,
            _ => 0,
        };
        if fold_len > 0
            && input
                .get(i + fold_len)
                .is_some_and(|b| (0x80..0xC0).contains(b))
        {
            i += fold_len;
            continue;
        }
        if let Some(b) = input.get(i) {
            out.push(*b);
        }
        i += 1;
    }
    out
}

/// Where [`read_into`] puts what it finds, in input order.
pub trait ReadSink {
    /// A readable card.
    fn card(&mut self, card: VCard);
    /// An unreadable card (or run of stray lines).
    fn diagnostic(&mut self, diagnostic: Diagnostic);
}

impl ReadSink for ReadOutput {
    fn card(&mut self, card: VCard) {
        self.cards.push(card);
    }
    fn diagnostic(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }
}

/// Reads every card in `input` (vCard 2.1, 3.0 or 4.0; CRLF or LF; BOM; several cards).
/// Never panics: bad content becomes a [`Diagnostic`] and the cards around it are still read.
pub fn read(input: &str) -> ReadOutput {
    let mut out = ReadOutput::default();
    read_into(input, &mut out);
    out
}

/// [`read`], handing each card and diagnostic to `out` as soon as it is read, so a caller that
/// writes cards out one by one never holds them all.
pub fn read_into(input: &str, out: &mut impl ReadSink) {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut position = 0usize;
    let mut card: Option<CardScan<'_>> = None;
    let mut in_stray = false;
    let mut offset = 0usize;

    for (idx, raw_line) in input.split_inclusive('\n').enumerate() {
        let line_no = idx + 1;
        let start = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\r', '\n']);
        match card.as_mut() {
            None => {
                if line.trim().is_empty() {
                    in_stray = false;
                } else if is_marker(line, "BEGIN") {
                    position += 1;
                    card = Some(CardScan::new(position, line_no, start));
                    in_stray = false;
                } else if !in_stray {
                    position += 1;
                    in_stray = true;
                    out.diagnostic(Diagnostic {
                        card_index: position,
                        line: line_no,
                        reason: "content outside BEGIN:VCARD ... END:VCARD".into(),
                    });
                }
            }
            Some(scan) => {
                if line.starts_with([' ', '\t']) {
                    scan.continuation(line);
                } else if is_marker(line, "END") {
                    if let Some(scan) = card.take() {
                        let text = input.get(scan.start..offset).unwrap_or_default();
                        scan.finish(text, line_no, out);
                    }
                } else if is_marker(line, "BEGIN") {
                    out.diagnostic(Diagnostic {
                        card_index: scan.index,
                        line: scan.begin_line,
                        reason: "BEGIN:VCARD without END:VCARD before the next card".into(),
                    });
                    position += 1;
                    card = Some(CardScan::new(position, line_no, start));
                } else {
                    scan.line(line, line_no);
                }
            }
        }
    }
    if let Some(scan) = card {
        out.diagnostic(Diagnostic {
            card_index: scan.index,
            line: scan.begin_line,
            reason: "missing END:VCARD".into(),
        });
    }
}

fn is_marker(line: &str, marker: &str) -> bool {
    // Most lines are content lines: an ASCII first byte that is neither blank nor the marker's
    // first letter rules the line out without trimming it.
    if let (Some(&first), Some(&m)) = (line.as_bytes().first(), marker.as_bytes().first()) {
        if first.is_ascii() && !first.is_ascii_whitespace() && !first.eq_ignore_ascii_case(&m) {
            return false;
        }
    }
    let line = line.trim();
    line.len() == marker.len() + 6
        && line
            .get(..marker.len())
            .is_some_and(|m| m.eq_ignore_ascii_case(marker))
        && line
            .get(marker.len()..)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(":VCARD"))
}

/// Line-structure check of one card while it is being scanned.
struct CardScan<'a> {
    index: usize,
    begin_line: usize,
    start: usize,
    bad: Option<(usize, String)>,
    /// Line number of the current logical line, and whether its `:` has been seen.
    current: Option<(usize, bool)>,
    qp: bool,
    qp_soft: bool,
    b64: bool,
    lines_to_fix: Vec<usize>,
    binary_ordinal: usize,
    encoded_binaries: Vec<usize>,
    properties: usize,
    /// A `VERSION:2.1`/`3.0` line has been seen (calcard then uses its legacy value parsers).
    legacy: bool,
    /// The raw content lines of the unknown properties, collected in this pass so that
    /// [`restore_raw_unknown_values`] needs no second pass over the card.
    raw_unknowns: Vec<RawUnknown<'a>>,
    /// The last unknown property's raw value is still open to continuation lines.
    raw_open: bool,
    /// A property's head was folded before its `:`, so this pass cannot tell its name and
    /// parameters: the unknown properties are collected by a second pass instead.
    raw_fallback: bool,
}

impl<'a> CardScan<'a> {
    fn new(index: usize, begin_line: usize, start: usize) -> Self {
        Self {
            index,
            begin_line,
            start,
            bad: None,
            current: None,
            qp: false,
            qp_soft: false,
            b64: false,
            lines_to_fix: Vec::new(),
            binary_ordinal: 0,
            encoded_binaries: Vec::new(),
            properties: 0,
            legacy: false,
            raw_unknowns: Vec::new(),
            raw_open: false,
            raw_fallback: false,
        }
    }

    fn continuation(&mut self, line: &'a str) {
        if self.raw_open {
            if let Some(RawUnknown {
                value: Some(value), ..
            }) = self.raw_unknowns.last_mut()
            {
                value.to_mut().push_str(line.get(1..).unwrap_or_default());
            }
        }
        if let Some((_, colon)) = &mut self.current {
            *colon |= line.contains(':');
        }
        if self.qp {
            self.qp_soft = line.ends_with('=');
        }
    }

    fn close_logical_line(&mut self) {
        if let Some((line_no, false)) = self.current {
            if self.bad.is_none() {
                self.bad = Some((line_no, "property line has no ':' before its value".into()));
            }
        }
        self.current = None;
    }

    fn line(&mut self, line: &'a str, line_no: usize) {
        // Not a continuation: whatever unknown value was open is complete.
        self.raw_open = false;
        if self.bad.is_some() {
            return;
        }
        if self.qp && self.qp_soft {
            // vCard 2.1 quoted-printable soft line break: this line continues the value.
            self.qp_soft = line.ends_with('=');
            return;
        }
        if self.b64 && !line.is_empty() && line.bytes().all(is_base64_byte) {
            return;
        }
        // A line starting with a visible ASCII character is not blank; only others are trimmed.
        if !line.as_bytes().first().is_some_and(u8::is_ascii_graphic) && line.trim().is_empty() {
            self.b64 = false;
            return;
        }
        self.close_logical_line();
        if self.bad.is_some() {
            return;
        }
        self.b64 = false;
        self.qp = false;
        self.qp_soft = false;

        // One pass over the head's bytes: where it ends, whether it is a valid name, and where
        // its group ends.
        let bytes = line.as_bytes();
        let mut head_end = bytes.len();
        let mut head_valid = true;
        let mut last_dot = None;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b':' | b';' => {
                    head_end = i;
                    break;
                }
                b'.' => last_dot = Some(i),
                b'-' | b'_' => {}
                b if b.is_ascii_alphanumeric() => {}
                _ => head_valid = false,
            }
        }
        let head = line.get(..head_end).unwrap_or_default();
        if head.is_empty() {
            self.bad = Some((line_no, "empty property name".into()));
            return;
        }
        if !head_valid {
            self.bad = Some((line_no, format!("invalid property name {head:?}")));
            return;
        }
        self.properties += 1;
        let name = match last_dot {
            Some(dot) => head.get(dot + 1..).unwrap_or_default(),
            None => head,
        };
        // The head holds no quote and no `:`: the unquoted colon is at or after its end.
        let colon =
            find_unquoted_colon(line.get(head_end..).unwrap_or_default()).map(|c| c + head_end);
        self.current = Some((line_no, colon.is_some()));
        let params = match colon {
            Some(c) => line.get(head_end..c).unwrap_or_default(),
            None => line.get(head_end..).unwrap_or_default(),
        };
        let value = colon.and_then(|c| line.get(c + 1..)).unwrap_or_default();

        let mut needs_fix = false;
        let mut encoded_b64 = false;
        for param in params.as_bytes().split(|&b| b == b';') {
            if param.is_empty() {
                continue;
            }
            let (pname, pvalue) = match param.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    param.get(..eq).unwrap_or_default(),
                    param.get(eq + 1..).unwrap_or_default(),
                ),
                None => (param, &b""[..]),
            };
            if pname.eq_ignore_ascii_case(ENC_QUOTED_PRINTABLE.as_bytes()) {
                self.qp = true;
                needs_fix = true;
            } else if pname.eq_ignore_ascii_case(PARAM_ENCODING.as_bytes()) {
                if pvalue.eq_ignore_ascii_case(ENC_QUOTED_PRINTABLE.as_bytes()) {
                    self.qp = true;
                } else if pvalue.eq_ignore_ascii_case(b"b")
                    || pvalue.eq_ignore_ascii_case(b"base64")
                {
                    encoded_b64 = true;
                }
            } else if pname.eq_ignore_ascii_case(b"BASE64") {
                encoded_b64 = true;
            } else if pname.eq_ignore_ascii_case(b"TYPE") && pvalue.first() == Some(&b'"') {
                // Decided on the unfolded line by `fix_lines` (the value may be folded).
                needs_fix = true;
            }
        }
        let known = VCardProperty::parse(name.as_bytes());
        self.collect_raw_unknown(head, name, known.is_none(), colon.is_some(), params, value);
        if self.qp {
            self.qp_soft = line.ends_with('=');
        }
        if encoded_b64 {
            self.b64 = true;
        }
        if known.as_ref().is_some_and(is_binary_prop) {
            if encoded_b64 {
                self.encoded_binaries.push(self.binary_ordinal);
            }
            self.binary_ordinal += 1;
        }
        if known == Some(VCardProperty::Version) {
            self.legacy = matches!(value.trim().as_bytes().first(), Some(b'1'..=b'3'));
        }
        // calcard's legacy (2.1/3.0) date parser reads `YYYY-MM-DD`; only its 4.0 parser (used
        // until a legacy VERSION is seen) and `--MM-DD` need the rewrite.
        if known.as_ref().is_some_and(is_date_prop)
            && (!self.legacy || value.trim_start().starts_with("--"))
            && basic_date_form(value).is_some()
            && !contains_ignore_case(params, "VALUE=TEXT")
        {
            needs_fix = true;
        }
        if needs_fix {
            self.lines_to_fix.push(line_no);
        }
    }

    /// Keeps the raw value of an unknown property's first line (see [`RawUnknown`]).
    fn collect_raw_unknown(
        &mut self,
        head: &'a str,
        name: &'a str,
        unknown: bool,
        has_colon: bool,
        params: &str,
        value: &'a str,
    ) {
        if !has_colon {
            self.raw_fallback = true;
            return;
        }
        if !unknown || name.is_empty() {
            return;
        }
        let encoded = is_encoded(params);
        self.raw_unknowns.push(RawUnknown {
            group: head.rsplit_once('.').map(|(group, _)| Cow::Borrowed(group)),
            name: Cow::Borrowed(name),
            value: (!encoded).then_some(Cow::Borrowed(value)),
        });
        self.raw_open = !encoded;
    }

    fn finish(mut self, text: &str, end_line: usize, out: &mut impl ReadSink) {
        self.close_logical_line();
        if let Some((line, reason)) = self.bad.take() {
            out.diagnostic(Diagnostic {
                card_index: self.index,
                line,
                reason,
            });
            return;
        }
        if self.properties == 0 {
            out.diagnostic(Diagnostic {
                card_index: self.index,
                line: self.begin_line,
                reason: "card has no properties".into(),
            });
            return;
        }
        let text: Cow<'_, str> = if self.lines_to_fix.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(fix_lines(text, self.begin_line, &self.lines_to_fix))
        };
        let mut parser = Parser::new(&text);
        match parser.entry() {
            Entry::VCard(mut card) => {
                post_fix(&mut card, &self.encoded_binaries);
                let raws = if self.raw_fallback {
                    raw_unknown_lines(&text)
                } else {
                    std::mem::take(&mut self.raw_unknowns)
                };
                restore_raw_unknown_values(&mut card, raws);
                out.card(card);
            }
            other => out.diagnostic(Diagnostic {
                card_index: self.index,
                line: end_line,
                reason: format!("calcard could not read the card: {other:?}"),
            }),
        }
    }
}

/// PHOTO, LOGO, SOUND or KEY ([`BINARY_PROPS`]), without comparing strings for known names.
pub(crate) fn is_binary_prop(name: &VCardProperty) -> bool {
    match name {
        VCardProperty::Photo | VCardProperty::Logo | VCardProperty::Sound | VCardProperty::Key => {
            true
        }
        VCardProperty::Other(n) => BINARY_PROPS.iter().any(|p| p.eq_ignore_ascii_case(n)),
        _ => false,
    }
}

/// BDAY, ANNIVERSARY or DEATHDATE ([`DATE_PROPS`]), likewise.
fn is_date_prop(name: &VCardProperty) -> bool {
    match name {
        VCardProperty::Bday | VCardProperty::Anniversary | VCardProperty::Deathdate => true,
        VCardProperty::Other(n) => DATE_PROPS.iter().any(|p| p.eq_ignore_ascii_case(n)),
        _ => false,
    }
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

fn find_unquoted_colon(line: &str) -> Option<usize> {
    let mut in_quote = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            b'"' => in_quote = !in_quote,
            b':' if !in_quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// The basic (ISO 8601 §4.1.2.2) form of an extended-format date value that calcard misreads:
/// `--MM-DD` (read as month only) and `YYYY-MM-DD` (read by its 4.0 parser as year and month,
/// losing the day), optionally with a `Thh:mm:ss` time and zone. `None` for anything else.
fn basic_date_form(value: &str) -> Option<String> {
    let t = value.trim();
    let (date, time) = match t.find(['T', 't']) {
        Some(i) => (t.get(..i)?, Some(t.get(i + 1..)?)),
        None => (t, None),
    };
    let d = date.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| d.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let basic_date = if d.len() == 7 && d.starts_with(b"--") && d[4] == b'-' {
        (digits(2..4) && digits(5..7)).then(|| format!("--{}{}", &date[2..4], &date[5..7]))?
    } else if d.len() == 10 && d[4] == b'-' && d[7] == b'-' {
        (digits(0..4) && digits(5..7) && digits(8..10))
            .then(|| format!("{}{}{}", &date[..4], &date[5..7], &date[8..10]))?
    } else {
        return None;
    };
    let Some(time) = time else {
        return Some(basic_date);
    };
    if time.is_empty()
        || !time
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b':' | b'Z' | b'z' | b'+' | b'-'))
    {
        return None;
    }
    Some(format!("{basic_date}T{}", time.replace(':', "")))
}

/// Rewrites the lines calcard misreads: bare `QUOTED-PRINTABLE` → `ENCODING=QUOTED-PRINTABLE`,
/// `TYPE="a,b"` → `TYPE=a,b`, and extended dates (`--MM-DD`, `YYYY-MM-DD`) → basic form.
fn fix_lines(text: &str, first_line: usize, lines: &[usize]) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let physical: Vec<&str> = text.split_inclusive('\n').collect();
    let mut idx = 0;
    while let Some(raw) = physical.get(idx) {
        let raw = *raw;
        idx += 1;
        if !lines.contains(&(first_line + idx - 1)) {
            out.push_str(raw);
            continue;
        }
        // The whole logical line, unfolded: a fix decided on one physical line would depend on
        // where the writer happened to fold (inside a quoted TYPE value, say).
        let first = raw.trim_end_matches(['\r', '\n']);
        let mut body = first.to_string();
        let mut ending = raw.get(first.len()..).unwrap_or_default();
        while let Some(next) = physical.get(idx).filter(|l| l.starts_with([' ', '\t'])) {
            let next_body = next.trim_end_matches(['\r', '\n']);
            body.push_str(next_body.get(1..).unwrap_or_default());
            ending = next.get(next_body.len()..).unwrap_or_default();
            idx += 1;
        }
        fix_line(&body, &mut out);
        out.push_str(ending);
    }
    out
}

/// One unfolded content line with the fixes of [`fix_lines`] applied.
fn fix_line(body: &str, out: &mut String) {
    let colon = find_unquoted_colon(body).unwrap_or(body.len());
    let head = body.get(..colon).unwrap_or_default();
    let value = body.get(colon..).unwrap_or_default();
    let mut parts = head.split(';');
    out.push_str(parts.next().unwrap_or_default());
    for param in parts {
        out.push(';');
        let (pname, pvalue) = param.split_once('=').unwrap_or((param, ""));
        let quoted_inner = pvalue
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|inner| inner.contains(',') && !inner.contains('"'));
        if pname.eq_ignore_ascii_case(ENC_QUOTED_PRINTABLE) && pvalue.is_empty() {
            out.push_str("ENCODING=QUOTED-PRINTABLE");
        } else if let (true, Some(inner)) = (pname.eq_ignore_ascii_case("TYPE"), quoted_inner) {
            // `TYPE="a,b"`: one quoted list, which calcard reads as one value. A single quoted
            // value without a comma stays quoted (unquoting it changed how it reads back).
            out.push_str(pname);
            out.push('=');
            out.push_str(inner);
        } else {
            out.push_str(param);
        }
    }
    let v = value.strip_prefix(':').unwrap_or(value);
    if value.starts_with(':') {
        out.push(':');
    }
    let name = head.split([';', ':']).next().unwrap_or_default();
    let name = name.rsplit('.').next().unwrap_or(name);
    match basic_date_form(v) {
        Some(basic)
            if DATE_PROPS.iter().any(|p| p.eq_ignore_ascii_case(name))
                && !head.to_ascii_uppercase().contains("VALUE=TEXT") =>
        {
            out.push_str(&basic)
        }
        _ => out.push_str(v),
    }
}

/// Fixes applied to calcard's result: RFC 6868 caret decoding of parameter values, and
/// `ENCODING=b` values calcard turned into text because their bytes were valid UTF-8.
fn post_fix(card: &mut VCard, encoded_binaries: &[usize]) {
    let mut binary_ordinal = 0usize;
    for entry in &mut card.entries {
        for param in &mut entry.params {
            if let VCardParameterValue::Text(text) = &mut param.value {
                if text.contains('^') {
                    *text = decode_carets(text);
                }
            }
        }
        if is_binary_prop(&entry.name) {
            if encoded_binaries.contains(&binary_ordinal) {
                for value in &mut entry.values {
                    if let VCardValue::Text(text) = value {
                        *value = VCardValue::Binary(Data {
                            content_type: None,
                            data: std::mem::take(text).into_bytes(),
                        });
                    }
                }
            }
            binary_ordinal += 1;
        }
    }
}

/// One content line of an unknown property as written: its group, name and raw value text
/// (unfolded, escapes untouched), or `None` when the value was `ENCODING=`-encoded.
struct RawUnknown<'a> {
    group: Option<Cow<'a, str>>,
    name: Cow<'a, str>,
    value: Option<Cow<'a, str>>,
}

/// Calls `on_line` with each unfolded logical line of a card's text (2.1 quoted-printable soft
/// breaks joined) for which `wanted(first physical line)` holds. Lines not wanted are skipped
/// without being unfolded, which keeps this second pass over a card cheap: only the few unknown
/// properties are ever copied.
fn for_each_logical_line<'a>(
    text: &'a str,
    wanted: impl Fn(&str) -> bool,
    mut on_line: impl FnMut(&str),
) {
    // The current logical line: its text (unfolded only when kept), whether it is kept, and
    // whether its text so far ends with `=` (a quoted-printable soft break when its head says so).
    let mut current: Option<(Cow<'a, str>, bool)> = None;
    let mut ends_with_eq = false;
    let head_is_qp = |l: &str| {
        contains_ignore_case(
            l.get(..l.find(':').unwrap_or(l.len())).unwrap_or_default(),
            ENC_QUOTED_PRINTABLE,
        )
    };
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\r', '\n']);
        let continuation = line.starts_with([' ', '\t']);
        match current.as_mut() {
            // A line not kept has its whole head (up to its `:`) in the first physical line.
            Some((last, keep)) if continuation || (ends_with_eq && head_is_qp(last)) => {
                let rest = if continuation {
                    line.get(1..).unwrap_or_default()
                } else {
                    line
                };
                if !rest.is_empty() {
                    ends_with_eq = rest.ends_with('=');
                }
                if *keep {
                    last.to_mut().push_str(rest);
                }
            }
            _ => {
                if let Some((done, true)) = current.take() {
                    on_line(&done);
                }
                // A head folded before its `:` is only known once unfolded: keep such a line.
                let keep = !line.contains(':') || wanted(line);
                ends_with_eq = line.ends_with('=');
                current = Some((Cow::Borrowed(line), keep));
            }
        }
    }
    if let Some((done, true)) = current {
        on_line(&done);
    }
}

/// Whether a property's parameters say its value is transfer-encoded (quoted-printable, base64).
fn is_encoded(params: &str) -> bool {
    contains_ignore_case(params, PARAM_ENCODING)
        || contains_ignore_case(params, ENC_QUOTED_PRINTABLE)
        || contains_ignore_case(params, ENC_BASE64_BARE)
}

/// The name of a content line (after its group), as far as the line shows it.
fn line_name(line: &str) -> &str {
    let head = line
        .get(..line.find([':', ';']).unwrap_or(line.len()))
        .unwrap_or_default();
    head.rsplit_once('.').map_or(head, |(_, name)| name)
}

/// Whether a content line's name is one calcard does not know (an `Other` property).
fn is_unknown_name(name: &str) -> bool {
    !name.is_empty() && VCardProperty::parse(name.as_bytes()).is_none()
}

/// ASCII case-insensitive substring test, without allocating.
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    !n.is_empty() && h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Raw value text of every content line whose property name calcard does not know, in order.
fn raw_unknown_lines(text: &str) -> Vec<RawUnknown<'static>> {
    let mut out = Vec::new();
    let wanted = |line: &str| is_unknown_name(line_name(line));
    for_each_logical_line(text, wanted, |line| {
        let head_end = line.find([':', ';']).unwrap_or(line.len());
        let head = line.get(..head_end).unwrap_or_default();
        let (group, name) = match head.rsplit_once('.') {
            Some((g, n)) => (Some(g), n),
            None => (None, head),
        };
        if !is_unknown_name(name) {
            return;
        }
        let colon = find_unquoted_colon(line);
        let params = line
            .get(head_end..colon.unwrap_or(head_end))
            .unwrap_or_default();
        let encoded = is_encoded(params);
        let value = colon
            .filter(|_| !encoded)
            .and_then(|c| line.get(c + 1..))
            .map(|v| Cow::Owned(v.to_string()));
        out.push(RawUnknown {
            group: group.map(|g| Cow::Owned(g.to_string())),
            name: Cow::Owned(name.to_string()),
            value,
        });
    });
    out
}

/// Unknown (`Other`) properties keep their value exactly as written: calcard unescapes `\;`,
/// `\,` and `\\` in them, which cannot be undone, so their value is replaced by the raw text of
/// the content line (one `Text` value, escapes intact; see [`unescape_raw`]). A value that was
/// `ENCODING=`-encoded keeps calcard's decoding, escaped into the same raw form.
fn restore_raw_unknown_values(card: &mut VCard, mut raws: Vec<RawUnknown<'_>>) {
    if !card
        .entries
        .iter()
        .any(|e| matches!(e.name, VCardProperty::Other(_)))
    {
        return;
    }
    let mut cursor = 0usize;
    for entry in &mut card.entries {
        let VCardProperty::Other(name) = &entry.name else {
            continue;
        };
        let found = raws.get(cursor..).and_then(|rest| {
            rest.iter().position(|r| {
                r.name.eq_ignore_ascii_case(name)
                    && match (&r.group, &entry.group) {
                        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                        (None, None) => true,
                        _ => false,
                    }
            })
        });
        // Each raw line is matched at most once (the cursor moves past it): take its value.
        let raw = found.and_then(|i| {
            cursor += i + 1;
            raws.get_mut(cursor - 1).and_then(|r| r.value.take())
        });
        match raw {
            Some(raw) => {
                entry.values.clear();
                entry.values.push(VCardValue::Text(raw.into_owned()));
            }
            None => {
                for value in &mut entry.values {
                    if let VCardValue::Text(t) = value {
                        *t = escape_raw(t);
                    }
                }
            }
        }
    }
}

/// Decoded text → the raw form unknown properties carry: backslash and line breaks escaped
/// (RFC 6350 §3.4); `;` and `,` stay as they are.
pub fn escape_raw(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The raw text of an unknown property's value → its meaning (RFC 6350 §3.4): `\n`/`\N` is a
/// newline, `\;` `\,` `\\` are the character itself; any other backslash is kept.
pub fn unescape_raw(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.peek() {
            Some('n' | 'N') => {
                out.push('\n');
                chars.next();
            }
            Some(c @ (';' | ',' | '\\')) => {
                out.push(*c);
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    out
}

/// RFC 6868 §3: `^n` → newline, `^^` → `^`, `^'` → `"`; any other `^` is kept.
pub fn decode_carets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '^' {
            match chars.peek() {
                Some('n' | 'N') => {
                    out.push('\n');
                    chars.next();
                }
                Some('^') => {
                    out.push('^');
                    chars.next();
                }
                Some('\'') => {
                    out.push('"');
                    chars.next();
                }
                _ => out.push('^'),
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Unknown properties keep their raw value whether it is collected in the first pass
    /// (folded value) or, when a head is folded before its `:`, by the second pass.
    #[test]
    fn unknown_values_stay_raw_when_folded() {
        let raw_values = |text: &str| -> Vec<String> {
            let out = read(text);
            assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
            out.cards[0]
                .entries
                .iter()
                .filter(|e| matches!(e.name, VCardProperty::Other(_)))
                .flat_map(|e| {
                    e.values
                        .iter()
                        .filter_map(|v| v.as_text().map(str::to_string))
                })
                .collect()
        };
        let folded_value = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\n\
                            X-FOO;X-P=1:va\\;l\r\n ue\\,x\r\n\
                            item1.X-ABLabel:Lab\\,el\r\nEND:VCARD\r\n";
        assert_eq!(raw_values(folded_value), ["va\\;lue\\,x", "Lab\\,el"]);
        let folded_head = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\n\
                           X-FO\r\n O;X-P=1:va\\;l\r\n ue\r\n\
                           X-BAR:b\\,c\r\nEND:VCARD\r\n";
        assert_eq!(raw_values(folded_head), ["va\\;lue", "b\\,c"]);
    }

    /// The second pass copies only unknown properties, but must still unfold them whole,
    /// including a head folded before its `:` and 2.1 quoted-printable soft breaks of the
    /// known properties around them (which must not be taken for new lines).
    #[test]
    fn raw_unknown_lines_unfold_only_unknown_properties() {
        let text = "BEGIN:VCARD\r\nVERSION:2.1\r\n\
                    NOTE;ENCODING=QUOTED-PRINTABLE:a=\r\nX-NOT-A-LINE:b\r\n\
                    X-FO\r\n O;X-P=1:va\\;l\r\n ue\r\n\
                    item1.X-ABLabel:Lab\\,el\r\n\
                    TEL:123\r\nEND:VCARD\r\n";
        let raws = raw_unknown_lines(text);
        let got: Vec<(Option<&str>, &str, Option<&str>)> = raws
            .iter()
            .map(|r| (r.group.as_deref(), r.name.as_ref(), r.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "X-FOO", Some("va\\;lue")),
                (Some("item1"), "X-ABLabel", Some("Lab\\,el")),
            ]
        );
    }

    #[test]
    fn carets_decode() {
        assert_eq!(decode_carets("a^nb^^c^'d^x"), "a\nb^c\"d^x");
    }

    #[test]
    fn fold_inside_utf8_is_joined() {
        let bytes = b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Caf\xC3\r\n \xA9\r\nEND:VCARD\r\n";
        let out = read_bytes(bytes);
        assert!(out.diagnostics.is_empty());
        let fname = out.cards[0].entries[1].values[0]
            .as_text()
            .unwrap()
            .to_string();
        assert_eq!(fname, "Café");
    }

    #[test]
    fn extended_dates_to_basic_form() {
        assert_eq!(basic_date_form("--04-15").as_deref(), Some("--0415"));
        assert_eq!(basic_date_form("1604-11-01").as_deref(), Some("16041101"));
        assert_eq!(
            basic_date_form("1985-04-12T10:20:30Z").as_deref(),
            Some("19850412T102030Z")
        );
        assert_eq!(basic_date_form("--0415"), None);
        assert_eq!(basic_date_form("1985-04"), None);
        assert_eq!(basic_date_form("19850412"), None);
        assert_eq!(basic_date_form("1985-04-1x"), None);
    }
}
