//! Writing: vCard 4.0 (RFC 6350) and vCard 3.0 (RFC 2426, by the reverse mapping) text from
//! calcard structures. Folds at 75 octets without splitting a UTF-8 sequence, writes `data:` URIs
//! with a plain comma, and encodes parameter values with RFC 6868 carets.
//!
//! calcard's own writer escapes the `data:` comma (`base64\,`), which DAVx5 and other clients
//! reject, and does not encode carets; so the line layout is ours, while property names, date
//! formats and value types are calcard's.

use super::names::{
    ABSHOWAS_COMPANY, APPLE_OMIT_YEAR, CRLF, DATA_URI_SCHEME, FOLD_WIDTH, GEO_URI_SCHEME,
    PARAM_X_APPLE_OMIT_YEAR, PROP_LABEL, PROP_SORT_STRING, PROP_X_ABSHOWAS,
    PROP_X_ADDRESSBOOKSERVER_KIND, PROP_X_ADDRESSBOOKSERVER_MEMBER, PROP_X_ANNIVERSARY, TYPE_PREF,
};
use super::normalize::default_value_type;
use super::read::escape_raw;
use base64::Engine as _;
use calcard::common::{IanaString, PartialDateTime};
use calcard::vcard::{
    VCard, VCardEntry, VCardKind, VCardParameter, VCardParameterName, VCardParameterValue,
    VCardProperty, VCardValue, VCardValueType,
};
use std::fmt::Write as _;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    V4,
    V3,
}

/// Writes a card as vCard 4.0. Give it a normalized card ([`super::normalize`]).
pub fn write_v4(card: &VCard) -> String {
    let mut out = String::with_capacity(size_hint(card));
    out.push_str("BEGIN:VCARD\r\nVERSION:4.0\r\n");
    for entry in &card.entries {
        if matches!(
            entry.name,
            VCardProperty::Version | VCardProperty::Begin | VCardProperty::End
        ) {
            continue;
        }
        // Written in place; only a line longer than the fold width is moved out and folded.
        let start = out.len();
        write_entry(&mut out, entry, Dialect::V4);
        if out.len() - start > FOLD_WIDTH {
            let line = out.split_off(start);
            fold_into(&mut out, &line);
        } else {
            out.push_str(CRLF);
        }
    }
    out.push_str("END:VCARD\r\n");
    out
}

/// A cheap estimate of a card's written size (calcard's `VCard::size` walks every value and
/// showed up in profiles): a line per entry plus the base64 of binary values.
fn size_hint(card: &VCard) -> usize {
    let mut n = 64;
    for entry in &card.entries {
        n += 48;
        for value in &entry.values {
            n += match value {
                VCardValue::Text(t) => t.len(),
                VCardValue::Binary(d) => d.data.len() / 3 * 4 + 40,
                _ => 16,
            };
        }
    }
    n
}

/// Writes a card as vCard 3.0 for servers that only take 3.0 (iCloud, Radicale), by the reverse
/// of the normalizing map: `PREF=1` → `TYPE=pref`, `KIND`/`MEMBER` → Apple's
/// `X-ADDRESSBOOKSERVER-*`, `ANNIVERSARY` → `X-ANNIVERSARY`, ADR `LABEL=` → `LABEL`, year-less
/// BDAY → Apple's `1604` with `X-APPLE-OMIT-YEAR`, `data:` → `ENCODING=b`. Always has `N`.
pub fn write_v3(card: &VCard) -> String {
    let entries = to_v3_entries(card);
    let mut out = String::with_capacity(size_hint(card));
    out.push_str("BEGIN:VCARD\r\nVERSION:3.0\r\n");
    let mut line = String::with_capacity(128);
    for entry in &entries {
        line.clear();
        write_entry(&mut line, entry, Dialect::V3);
        fold_into(&mut out, &line);
    }
    out.push_str("END:VCARD\r\n");
    out
}

fn to_v3_entries(card: &VCard) -> Vec<VCardEntry> {
    let mut out = Vec::with_capacity(card.entries.len() + 2);
    let has_n = card.entries.iter().any(|e| e.name == VCardProperty::N);
    for entry in &card.entries {
        if matches!(
            entry.name,
            VCardProperty::Version | VCardProperty::Begin | VCardProperty::End
        ) {
            continue;
        }
        let mut e = entry.clone();
        let mut sort_string = None;
        match e.name {
            VCardProperty::Kind
                if matches!(e.values.first(), Some(VCardValue::Kind(VCardKind::Org))) =>
            {
                e = VCardEntry {
                    group: e.group,
                    name: VCardProperty::Other(PROP_X_ABSHOWAS.into()),
                    params: Vec::new(),
                    values: vec![VCardValue::Text(ABSHOWAS_COMPANY.into())],
                };
            }
            VCardProperty::Kind => {
                to_other(&mut e, PROP_X_ADDRESSBOOKSERVER_KIND);
            }
            VCardProperty::Member => {
                to_other(&mut e, PROP_X_ADDRESSBOOKSERVER_MEMBER);
            }
            VCardProperty::N => {
                if let Some(i) = e
                    .params
                    .iter()
                    .position(|p| p.name == VCardParameterName::SortAs)
                {
                    if let VCardParameterValue::Text(t) = e.params.remove(i).value {
                        sort_string = Some(VCardEntry {
                            group: e.group.clone(),
                            name: VCardProperty::Other(PROP_SORT_STRING.into()),
                            params: Vec::new(),
                            values: vec![VCardValue::Text(escape_raw(&t))],
                        });
                    }
                    e.params.retain(|p| p.name != VCardParameterName::SortAs);
                }
            }
            VCardProperty::Anniversary => {
                to_other(&mut e, PROP_X_ANNIVERSARY);
                e.params.retain(|p| p.name != VCardParameterName::Value);
                if let Some(v) = e.values.first_mut() {
                    if let VCardValue::PartialDateTime(dt) = v {
                        let mut s = String::new();
                        let _ = dt.format_as_legacy_vcard(&mut s, &VCardValueType::DateAndOrTime);
                        *v = VCardValue::Text(s);
                    }
                }
            }
            VCardProperty::Bday => {
                let mut omit = false;
                for v in &mut e.values {
                    if let VCardValue::PartialDateTime(dt) = v {
                        if dt.year.is_none() && dt.month.is_some() && dt.day.is_some() {
                            dt.year = Some(APPLE_OMIT_YEAR);
                            omit = true;
                        }
                    }
                }
                if omit {
                    e.params.push(VCardParameter::new(
                        VCardParameterName::Other(PARAM_X_APPLE_OMIT_YEAR.into()),
                        VCardParameterValue::Text(APPLE_OMIT_YEAR.to_string()),
                    ));
                }
            }
            VCardProperty::Geo => {
                for v in &mut e.values {
                    if let VCardValue::Text(t) = v {
                        if let Some((lat, lon)) = t
                            .strip_prefix(GEO_URI_SCHEME)
                            .and_then(|r| r.split(';').next())
                            .and_then(|r| r.split_once(','))
                        {
                            *t = format!("{lat};{lon}");
                        }
                    }
                }
            }
            _ => {}
        }
        // PREF=1 → TYPE=pref; other PREF values have no 3.0 form.
        let mut label = None;
        let mut params = Vec::with_capacity(e.params.len());
        let mut pref = false;
        for p in e.params {
            match (&p.name, &p.value) {
                (VCardParameterName::Pref, VCardParameterValue::Integer(1)) => pref = true,
                (VCardParameterName::Pref, _) => {}
                (VCardParameterName::Label, VCardParameterValue::Text(t))
                    if e.name == VCardProperty::Adr =>
                {
                    label = Some(t.clone());
                }
                (VCardParameterName::Mediatype, _)
                    if e.values.iter().any(|v| matches!(v, VCardValue::Binary(_))) => {}
                _ => params.push(p),
            }
        }
        if pref {
            let at = params
                .iter()
                .rposition(|p| p.name == VCardParameterName::Type)
                .map_or(0, |i| i + 1);
            params.insert(
                at,
                VCardParameter::new(
                    VCardParameterName::Type,
                    VCardParameterValue::Text(TYPE_PREF.into()),
                ),
            );
        }
        let is_binary_prop = matches!(
            e.name,
            VCardProperty::Photo | VCardProperty::Logo | VCardProperty::Sound | VCardProperty::Key
        );
        if is_binary_prop
            && e.values.iter().all(|v| matches!(v, VCardValue::Text(_)))
            && !params.iter().any(|p| p.name == VCardParameterName::Value)
        {
            params.push(VCardParameter::new(
                VCardParameterName::Value,
                VCardValueType::Uri,
            ));
        }
        e.params = params;
        let label_entry = label.map(|text| VCardEntry {
            group: e.group.clone(),
            name: VCardProperty::Other(PROP_LABEL.into()),
            params: e
                .params
                .iter()
                .filter(|p| p.name == VCardParameterName::Type)
                .cloned()
                .collect(),
            values: vec![VCardValue::Text(label_raw(&text))],
        });
        let is_fn = e.name == VCardProperty::Fn;
        out.push(e);
        if let Some(l) = label_entry {
            out.push(l);
        }
        if let Some(s) = sort_string {
            out.push(s);
        }
        if is_fn && !has_n {
            out.push(empty_n());
        }
    }
    if !has_n && !out.iter().any(|e| e.name == VCardProperty::N) {
        out.insert(0, empty_n());
    }
    out
}

/// A known property written under an unknown (X-) name: its text takes the raw form that
/// unknown properties carry (see [`super::read`]).
fn to_other(e: &mut VCardEntry, name: &str) {
    for v in &mut e.values {
        if let VCardValue::Text(t) = v {
            *t = escape_raw(t);
        }
    }
    e.name = VCardProperty::Other(name.into());
}

/// 3.0 `LABEL` text (RFC 2426 §3.2.2) in raw form, with `;` and `,` escaped as for a text value.
fn label_raw(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    push_text(&mut out, text, true, true);
    out
}

fn empty_n() -> VCardEntry {
    VCardEntry {
        group: None,
        name: VCardProperty::N,
        params: Vec::new(),
        values: vec![VCardValue::Text(String::new()); 5],
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sep {
    None,
    Comma,
    Semicolon,
    Structured,
}

fn separator(name: &VCardProperty) -> Sep {
    match name {
        VCardProperty::N | VCardProperty::Adr => Sep::Structured,
        VCardProperty::Nickname | VCardProperty::Categories => Sep::Comma,
        VCardProperty::Gender | VCardProperty::Org | VCardProperty::Clientpidmap => Sep::Semicolon,
        _ => Sep::None,
    }
}

/// Writes one unfolded content line (without CRLF) into `line`.
pub(crate) fn write_entry(line: &mut String, entry: &VCardEntry, dialect: Dialect) {
    if let Some(group) = &entry.group {
        line.push_str(group);
        line.push('.');
    }
    line.push_str(entry.name.as_str());
    let mut value_type: Option<VCardValueType> = None;
    let mut last: Option<&VCardParameterName> = None;
    for param in &entry.params {
        if matches!(param.value, VCardParameterValue::Null) {
            line.push(';');
            line.push_str(param.name.as_str());
            last = None;
            continue;
        }
        if last == Some(&param.name) {
            line.push(',');
        } else {
            line.push(';');
            line.push_str(param.name.as_str());
            line.push('=');
            last = Some(&param.name);
        }
        write_param_value(line, &param.value);
        if let VCardParameterValue::ValueType(v) = &param.value {
            value_type.get_or_insert(*v);
        }
    }
    let binary = entry.values.iter().find_map(|v| match v {
        VCardValue::Binary(d) => Some(d),
        _ => None,
    });
    if dialect == Dialect::V3 {
        if let Some(data) = binary {
            line.push_str(";ENCODING=b");
            if !entry
                .params
                .iter()
                .any(|p| p.name == VCardParameterName::Type)
            {
                if let Some(ct) = data.content_type.as_deref().filter(|c| !c.is_empty()) {
                    line.push_str(";TYPE=");
                    let token = legacy_token(entry.name.as_str(), ct);
                    push_param_text(line, &token);
                }
            }
        }
    }
    line.push(':');

    let default_type = default_value_type(&entry.name);
    let vt = value_type.unwrap_or(default_type);
    let sep = separator(&entry.name);
    let is_text = vt == VCardValueType::Text;
    let (esc_semi, esc_comma) = match sep {
        Sep::Comma => (is_text, true),
        Sep::Semicolon => (true, is_text),
        Sep::Structured => (true, true),
        // Unknown properties keep their raw `;`/`,` (X-ANDROID-CUSTOM, X-MS-OL-DESIGN, ...).
        Sep::None if matches!(entry.name, VCardProperty::Other(_)) => (false, false),
        Sep::None => (is_text, is_text),
    };
    let sep_char = if sep == Sep::Comma { ',' } else { ';' };
    for (pos, value) in entry.values.iter().enumerate() {
        if pos > 0 {
            line.push(sep_char);
        }
        match value {
            // An unknown property's text is its raw value as written (escapes intact).
            VCardValue::Text(t) if matches!(entry.name, VCardProperty::Other(_)) => {
                push_raw(line, t)
            }
            VCardValue::Text(t) => push_text(line, t, esc_semi, esc_comma),
            VCardValue::Component(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    push_text(line, item, true, true);
                }
            }
            VCardValue::Integer(i) => push_int(line, *i),
            VCardValue::Float(f) => {
                let _ = write!(line, "{f}");
            }
            VCardValue::Boolean(b) => line.push_str(if *b { "TRUE" } else { "FALSE" }),
            VCardValue::PartialDateTime(dt) => {
                let fmt = if matches!(
                    vt,
                    VCardValueType::Text | VCardValueType::Uri | VCardValueType::LanguageTag
                ) {
                    default_type
                } else {
                    vt
                };
                let _ = match dialect {
                    Dialect::V4 if push_common_date(line, dt, &fmt) => Ok(()),
                    Dialect::V4 => dt.format_as_vcard(line, &fmt),
                    Dialect::V3 => dt.format_as_legacy_vcard(line, &fmt),
                };
            }
            VCardValue::Binary(data) => {
                if dialect == Dialect::V4 {
                    line.push_str(DATA_URI_SCHEME);
                    line.push_str(data.content_type.as_deref().unwrap_or_default());
                    line.push_str(";base64,");
                }
                push_base64(line, &data.data);
            }
            VCardValue::Sex(s) => line.push_str(s.as_str()),
            VCardValue::GramGender(g) => push_lower(line, g.as_str()),
            VCardValue::Kind(k) => push_lower(line, k.as_str()),
        }
    }
}

/// vCard 3.0 `TYPE=` token for a media type (`image/jpeg` → `JPEG`), or the media type itself
/// when the short token would not read back to the same media type.
fn legacy_token(prop: &str, media_type: &str) -> String {
    let token = match media_type {
        "application/pgp-keys" => "PGP".to_string(),
        "application/x-x509-user-cert" => "X509".to_string(),
        _ => media_type
            .split_once('/')
            .map(|(_, s)| s.to_ascii_uppercase())
            .unwrap_or_default(),
    };
    if !token.is_empty()
        && super::normalize::legacy_media_type(prop, &token).as_deref() == Some(media_type)
    {
        token
    } else {
        media_type.to_string()
    }
}

fn write_param_value(line: &mut String, value: &VCardParameterValue) {
    match value {
        VCardParameterValue::Text(t) => push_param_text(line, t),
        VCardParameterValue::Integer(i) => push_int(line, *i),
        VCardParameterValue::Timestamp(t) => {
            let _ = write!(line, "{t}");
        }
        VCardParameterValue::Bool(b) => line.push_str(if *b { "TRUE" } else { "FALSE" }),
        VCardParameterValue::ValueType(v) => push_lower(line, v.as_str()),
        VCardParameterValue::Type(v) => push_lower(line, v.as_str()),
        VCardParameterValue::Calscale(v) => push_lower(line, v.as_str()),
        VCardParameterValue::Level(v) => push_lower(line, v.as_str()),
        VCardParameterValue::Phonetic(v) => push_lower(line, v.as_str()),
        VCardParameterValue::Jscomps(_) | VCardParameterValue::Null => {}
    }
}

/// `text` in ASCII lower case (as [`str::to_ascii_lowercase`]), without a temporary string.
fn push_lower(line: &mut String, text: &str) {
    let start = line.len();
    line.push_str(text);
    if let Some(tail) = line.get_mut(start..) {
        tail.make_ascii_lowercase();
    }
}

/// `n` in decimal, zero-padded to `width` digits (as `{:0width$}` formats it).
fn push_padded(line: &mut String, n: u16, width: usize) {
    let mut digits = [b'0'; 5];
    let mut rest = n;
    let mut len = 0;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
        if rest == 0 {
            break;
        }
    }
    for _ in len..width {
        line.push('0');
    }
    for d in digits.get(digits.len() - len..).unwrap_or_default() {
        line.push(char::from(*d));
    }
}

/// The two shapes most cards carry, written as calcard's `format_as_vcard` writes them: a
/// `REV` timestamp (`YYYYMMDDThhmmss` and `Z` or no zone) and a date without time or zone
/// (`YYYYMMDD`, `--MMDD`). `false` (nothing written) for any other shape.
fn push_common_date(line: &mut String, dt: &PartialDateTime, fmt: &VCardValueType) -> bool {
    let no_time = dt.hour.is_none() && dt.minute.is_none() && dt.second.is_none();
    let utc_or_none = match dt.tz_hour {
        None => true,
        Some(h) => h == 0 && dt.tz_minute.unwrap_or_default() == 0,
    };
    match fmt {
        VCardValueType::Timestamp if utc_or_none => {
            push_padded(line, dt.year.unwrap_or_default(), 4);
            for (i, field) in [dt.month, dt.day, dt.hour, dt.minute, dt.second]
                .into_iter()
                .enumerate()
            {
                if i == 2 {
                    line.push('T');
                }
                push_padded(line, u16::from(field.unwrap_or_default()), 2);
            }
            if dt.tz_hour.is_some() {
                line.push('Z');
            }
            true
        }
        VCardValueType::Date | VCardValueType::DateAndOrTime | VCardValueType::DateTime
            if no_time && dt.tz_hour.is_none() =>
        {
            match (dt.year, dt.month, dt.day) {
                (Some(year), Some(month), Some(day)) => {
                    push_padded(line, year, 4);
                    push_padded(line, u16::from(month), 2);
                    push_padded(line, u16::from(day), 2);
                    true
                }
                (None, Some(month), Some(day)) => {
                    line.push_str("--");
                    push_padded(line, u16::from(month), 2);
                    push_padded(line, u16::from(day), 2);
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// An integer in decimal (as `{i}` formats it), without the formatting machinery.
fn push_int<T: Into<i64>>(line: &mut String, i: T) {
    let i: i64 = i.into();
    if i < 0 {
        line.push('-');
    }
    let mut n = i.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    for d in digits.get(at..).unwrap_or_default() {
        line.push(char::from(*d));
    }
}

/// Standard base64 with padding (RFC 4648 §4) of `data`, encoded in one piece straight into
/// `line` (the chunked `encode_string` showed up in profiles for photos).
fn push_base64(line: &mut String, data: &[u8]) {
    let engine = &base64::prelude::BASE64_STANDARD;
    let start = line.len();
    let mut bytes = std::mem::take(line).into_bytes();
    bytes.resize(start + data.len().div_ceil(3) * 4, 0);
    let written = bytes
        .get_mut(start..)
        .and_then(|out| engine.encode_slice(data, out).ok())
        .unwrap_or(0);
    bytes.truncate(start + written);
    // Base64 output is ASCII, so this never takes the lossy path.
    *line = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// A parameter value: RFC 6868 carets for `^`, newline and `"`; quoted when it holds `,` `:` `;`
/// or whitespace (calcard collapses unquoted runs); backslash doubled because calcard reads it as an escape.
pub(crate) fn push_param_text(line: &mut String, text: &str) {
    let quote = text.bytes().any(|b| matches!(b, b',' | b':' | b';')) || text.contains([' ', '\t']);
    if quote {
        line.push('"');
    }
    for ch in text.chars() {
        match ch {
            '^' => line.push_str("^^"),
            '\n' => line.push_str("^n"),
            '"' => line.push_str("^'"),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() && c != '\t' => {}
            c => line.push(c),
        }
    }
    if quote {
        line.push('"');
    }
}

/// A text value (RFC 6350 §3.4): backslash, newline, and per context `;` and `,` escaped.
pub(crate) fn push_text(line: &mut String, text: &str, esc_semi: bool, esc_comma: bool) {
    // Every character escaped is ASCII: copy the runs between them whole (a text without any
    // is one run).
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            // calcard reads `\r` back as a carriage return; a normalized card has none.
            b'\r' => "\\n",
            b';' if esc_semi => "\\;",
            b',' if esc_comma => "\\,",
            _ => continue,
        };
        line.push_str(text.get(run..i).unwrap_or_default());
        line.push_str(escaped);
        run = i + 1;
    }
    line.push_str(text.get(run..).unwrap_or_default());
}

/// Raw text, as is; a line break in it (never in text we read) is escaped so the line holds.
fn push_raw(line: &mut String, text: &str) {
    if !text.contains(['\n', '\r']) {
        line.push_str(text);
        return;
    }
    for ch in text.chars() {
        match ch {
            '\n' => line.push_str("\\n"),
            '\r' => {}
            c => line.push(c),
        }
    }
}

/// Folds one logical line at 75 octets (RFC 6350 §3.2) without splitting a UTF-8 sequence.
pub(crate) fn fold_into(out: &mut String, line: &str) {
    let mut start = 0;
    let mut width = FOLD_WIDTH;
    while line.len() - start > width {
        let mut cut = start + width;
        while cut > start && !line.is_char_boundary(cut) {
            cut -= 1;
        }
        // calcard trims whitespace around a fold in list values: never fold beside a blank.
        let bytes = line.as_bytes();
        let blank = |i: usize| bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t'));
        let mut c = cut;
        while c > start + 1 && (blank(c - 1) || blank(c)) {
            c -= 1;
            while c > start && !line.is_char_boundary(c) {
                c -= 1;
            }
        }
        if c > start + 8 {
            cut = c;
        }
        out.push_str(line.get(start..cut).unwrap_or_default());
        out.push_str("\r\n ");
        start = cut;
        width = FOLD_WIDTH - 1;
    }
    out.push_str(line.get(start..).unwrap_or_default());
    out.push_str(CRLF);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folds_without_splitting_utf8() {
        let line = format!("NOTE:{}", "é".repeat(100));
        let mut out = String::new();
        fold_into(&mut out, &line);
        for l in out.split("\r\n") {
            assert!(l.len() <= 75, "{l}");
        }
        assert_eq!(out.replace("\r\n ", ""), format!("{line}\r\n"));
    }

    #[test]
    fn param_carets() {
        let mut s = String::new();
        push_param_text(&mut s, "a\nb \"c\" ^");
        assert_eq!(s, "\"a^nb ^'c^' ^^\"");
    }

    /// The fast date writer writes exactly what calcard's `format_as_vcard` writes, for every
    /// shape it takes, and takes the two shapes the bench corpus carries.
    #[test]
    fn common_dates_are_written_as_calcard_writes_them() {
        let fmts = [
            VCardValueType::Timestamp,
            VCardValueType::Date,
            VCardValueType::DateAndOrTime,
            VCardValueType::DateTime,
            VCardValueType::Text,
        ];
        let mut taken = 0;
        for year in [
            None,
            Some(0u16),
            Some(7),
            Some(1985),
            Some(9999),
            Some(65535),
        ] {
            for month in [None, Some(1u8), Some(12), Some(255)] {
                for day in [None, Some(5u8), Some(31)] {
                    for time in [None, Some((10u8, 2u8, 30u8)), Some((255, 255, 255))] {
                        for tz in [
                            None,
                            Some((0u8, None)),
                            Some((0, Some(0u8))),
                            Some((5, Some(30))),
                        ] {
                            for fmt in &fmts {
                                let dt = PartialDateTime {
                                    year,
                                    month,
                                    day,
                                    hour: time.map(|t| t.0),
                                    minute: time.map(|t| t.1),
                                    second: time.map(|t| t.2),
                                    tz_hour: tz.map(|t| t.0),
                                    tz_minute: tz.and_then(|t| t.1),
                                    tz_minus: false,
                                };
                                let mut ours = String::new();
                                if push_common_date(&mut ours, &dt, fmt) {
                                    taken += 1;
                                    let mut theirs = String::new();
                                    dt.format_as_vcard(&mut theirs, fmt).unwrap();
                                    assert_eq!(ours, theirs, "{dt:?} as {fmt:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(taken > 100, "{taken}");
        let mut s = String::new();
        let rev = PartialDateTime {
            year: Some(2024),
            month: Some(1),
            day: Some(15),
            hour: Some(10),
            minute: Some(20),
            second: Some(30),
            tz_hour: Some(0),
            tz_minute: Some(0),
            tz_minus: false,
        };
        assert!(push_common_date(&mut s, &rev, &VCardValueType::Timestamp));
        let bday = PartialDateTime {
            month: Some(4),
            day: Some(15),
            ..PartialDateTime::default()
        };
        assert!(push_common_date(
            &mut s,
            &bday,
            &VCardValueType::DateAndOrTime
        ));
        assert_eq!(s, "20240115T102030Z--0415");
    }

    #[test]
    fn integers_lower_case_and_base64_as_the_std_and_crate_write_them() {
        for i in [0i64, 7, 10, 99, 100, 12345, -1, -90, i64::MAX, i64::MIN] {
            let mut s = String::from("x");
            push_int(&mut s, i);
            assert_eq!(s, format!("x{i}"));
        }
        let mut s = String::from("é");
        push_lower(&mut s, "HOME-Ä");
        assert_eq!(s, "éhome-Ä");
        for len in 0..10 {
            let data: Vec<u8> = (0..len).map(|b: u8| b.wrapping_mul(37)).collect();
            let mut s = String::from("data:");
            push_base64(&mut s, &data);
            let mut want = String::from("data:");
            base64::prelude::BASE64_STANDARD.encode_string(&data, &mut want);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn text_escapes_in_runs() {
        let mut s = String::new();
        push_text(&mut s, "é;a,b\\c\nd\r", true, false);
        assert_eq!(s, "é\\;a,b\\\\c\\nd\\n");
        let mut s = String::new();
        push_text(&mut s, "plain ü", true, true);
        assert_eq!(s, "plain ü");
    }
}
