//! Normalizing: maps a card read from vCard 2.1, 3.0 or 4.0 to vCard 4 (RFC 6350) semantics, the
//! way sabre/vobject's `VCardConverter` and the major servers do. Idempotent. The resulting shape
//! is documented in the module doc of [`crate::vcard`].

use super::dates::parse_date_text;
use super::names::{
    ABLABEL_ANNIVERSARY, ABSHOWAS_COMPANY, APPLE_OMIT_YEAR, DATA_URI_SCHEME, ENC_QUOTED_PRINTABLE,
    GEO_URI_SCHEME, LEGACY_IM_PROPS, LEGACY_TYPE_WORDS, MEDIA_OCTET_STREAM, PARAM_CHARSET,
    PARAM_ENCODING, PARAM_X_APPLE_OMIT_YEAR, PROP_LABEL, PROP_SORT_STRING, PROP_X_ABDATE,
    PROP_X_ABLABEL, PROP_X_ABSHOWAS, PROP_X_ADDRESSBOOKSERVER_KIND,
    PROP_X_ADDRESSBOOKSERVER_MEMBER, PROP_X_ANNIVERSARY, TYPE_INTERNET, TYPE_PREF,
};
use super::read::{escape_raw, is_binary_prop, unescape_raw};
use calcard::common::{Data, IanaParse, PartialDateTime};
use calcard::vcard::{
    VCard, VCardEntry, VCardKind, VCardParameter, VCardParameterName, VCardParameterValue,
    VCardProperty, VCardType, VCardValue, VCardValueType,
};

/// Normalizes one card to vCard 4 semantics. See the module doc of [`crate::vcard`] for the shape.
pub fn normalize(card: &VCard) -> VCard {
    normalize_entries(
        card.entries
            .iter()
            .filter(|e| !is_frame(e))
            .cloned()
            .collect(),
    )
}

/// [`normalize`] taking the card by value: no entry is copied (what [`super::read_normalized`] uses).
pub fn normalize_owned(card: VCard) -> VCard {
    let mut entries = card.entries;
    entries.retain(|e| !is_frame(e));
    normalize_entries(entries)
}

fn is_frame(e: &VCardEntry) -> bool {
    matches!(
        e.name,
        VCardProperty::Version | VCardProperty::Begin | VCardProperty::End
    )
}

fn normalize_entries(mut entries: Vec<VCardEntry>) -> VCard {
    // RFC 6350 §3.3: group and property names are tokens (ALPHA, DIGIT, "-"). calcard can hand
    // back others from a malformed line; written back, they would break the card.
    entries.retain(|e| {
        e.group.as_deref().is_none_or(is_param_name)
            && match &e.name {
                VCardProperty::Other(n) => is_param_name(n),
                _ => true,
            }
    });
    convert_apple_anniversaries(&mut entries);
    for entry in &mut entries {
        normalize_entry(entry);
    }
    dedupe_anniversary(&mut entries);
    dedupe_impp(&mut entries);
    convert_show_as(&mut entries);
    convert_sort_string(&mut entries);
    attach_labels(&mut entries);
    ensure_fn(&mut entries);

    // In place (the frame entries removed above left room): no second vector of entries.
    entries.insert(
        0,
        VCardEntry {
            group: None,
            name: VCardProperty::Version,
            params: Vec::new(),
            values: vec![VCardValue::Text("4.0".into())],
        },
    );
    VCard { entries }
}

fn other_name_is(entry: &VCardEntry, name: &str) -> bool {
    matches!(&entry.name, VCardProperty::Other(n) if n.eq_ignore_ascii_case(name))
}

/// `item2.X-ABDATE` with `item2.X-ABLabel:_$!<Anniversary>!$_` → `ANNIVERSARY` (label dropped).
fn convert_apple_anniversaries(entries: &mut Vec<VCardEntry>) {
    let groups: Vec<String> = entries
        .iter()
        .filter(|e| {
            other_name_is(e, PROP_X_ABLABEL)
                && other_text(e).is_some_and(|t| {
                    t.eq_ignore_ascii_case(ABLABEL_ANNIVERSARY)
                        || t.trim().eq_ignore_ascii_case("anniversary")
                })
        })
        .filter_map(|e| e.group.clone())
        .collect();
    if groups.is_empty() {
        return;
    }
    let mut converted = Vec::new();
    for entry in entries.iter_mut() {
        if let Some(group) = &entry.group {
            if other_name_is(entry, PROP_X_ABDATE)
                && groups.iter().any(|g| g.eq_ignore_ascii_case(group))
            {
                converted.push(group.clone());
                rename_from_other(entry, VCardProperty::Anniversary);
                entry.group = None;
            }
        }
    }
    entries.retain(|e| {
        !(other_name_is(e, PROP_X_ABLABEL)
            && e.group
                .as_ref()
                .is_some_and(|g| converted.iter().any(|c| c.eq_ignore_ascii_case(g))))
    });
}

/// Gives an unknown property a known name: its raw value text (see [`super::read`]) is decoded.
fn rename_from_other(entry: &mut VCardEntry, name: VCardProperty) {
    if matches!(entry.name, VCardProperty::Other(_)) {
        for value in &mut entry.values {
            if let VCardValue::Text(t) = value {
                if t.contains('\\') {
                    *t = unescape_raw(t);
                }
            }
        }
    }
    entry.name = name;
}

/// A known property becomes an unknown one again: its text takes the raw (escaped) form, and a
/// date becomes the text it is written as (an unknown property's value is text: a date left
/// typed would be written as nothing, and the next read would see an empty value).
fn rename_to_other(entry: &mut VCardEntry, name: &str) {
    let fmt = default_value_type(&entry.name);
    for value in &mut entry.values {
        match value {
            VCardValue::Text(t) => *t = escape_raw(t),
            VCardValue::PartialDateTime(dt) => {
                let mut text = String::new();
                let _ = dt.format_as_vcard(&mut text, &fmt);
                *value = VCardValue::Text(escape_raw(&text));
            }
            _ => {}
        }
    }
    entry.name = VCardProperty::Other(name.into());
}

/// The decoded text of an unknown property's first value.
fn other_text(entry: &VCardEntry) -> Option<String> {
    entry
        .values
        .first()
        .and_then(|v| v.as_text())
        .map(unescape_raw)
}

fn normalize_entry(entry: &mut VCardEntry) {
    // Property renames.
    if other_name_is(entry, PROP_X_ADDRESSBOOKSERVER_KIND) {
        rename_from_other(entry, VCardProperty::Kind);
    } else if other_name_is(entry, PROP_X_ADDRESSBOOKSERVER_MEMBER) {
        rename_from_other(entry, VCardProperty::Member);
    } else if other_name_is(entry, PROP_X_ANNIVERSARY) {
        rename_from_other(entry, VCardProperty::Anniversary);
    } else if let Some(scheme) = legacy_im_scheme(entry) {
        rename_from_other(entry, VCardProperty::Impp);
        for value in &mut entry.values {
            if let VCardValue::Text(t) = value {
                let handle = t.trim();
                if !handle.contains(':') {
                    *t = format!("{scheme}:{handle}");
                }
            }
        }
    }

    // Values.
    let unify_breaks = |text: &mut String| {
        if text.as_bytes().contains(&b'\r') {
            *text = text.replace("\r\n", "\n").replace('\r', "\n");
        }
    };
    for value in &mut entry.values {
        match value {
            VCardValue::Text(text) => unify_breaks(text),
            VCardValue::Component(items) => items.iter_mut().for_each(unify_breaks),
            _ => {}
        }
    }
    match entry.name {
        // calcard's list tokenizer trims and collapses blanks only sometimes: make it always.
        VCardProperty::Categories | VCardProperty::Nickname => {
            for value in &mut entry.values {
                if let VCardValue::Text(text) = value {
                    if text.contains(char::is_whitespace) {
                        *text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    }
                }
            }
            entry
                .values
                .retain(|v| !matches!(v, VCardValue::Text(t) if t.is_empty()));
        }
        VCardProperty::Kind => {
            for value in &mut entry.values {
                if let VCardValue::Text(text) = value {
                    if let Some(kind) = VCardKind::parse(text.trim().as_bytes()) {
                        *value = VCardValue::Kind(kind);
                    }
                }
            }
        }
        VCardProperty::Bday | VCardProperty::Anniversary | VCardProperty::Deathdate => {
            // Inline data in a date property (`ENCODING=b`) is written back as a `data:` URI,
            // which is text here: make it text now, so that it gets its VALUE=text below.
            drop_bogus_media_types(entry);
            text_for_binary_of_text_properties(entry);
            let text_typed = entry.params.iter().any(|p| {
                p.name == VCardParameterName::Value
                    && p.value == VCardParameterValue::ValueType(VCardValueType::Text)
            });
            for value in &mut entry.values {
                if text_typed {
                    break;
                }
                if let VCardValue::Text(text) = value {
                    if let Some(dt) = parse_date_text(text) {
                        *value = VCardValue::PartialDateTime(dt);
                    }
                }
            }
            let omit = entry.params.iter().find_map(|p| match (&p.name, &p.value) {
                (VCardParameterName::Other(n), v)
                    if n.eq_ignore_ascii_case(PARAM_X_APPLE_OMIT_YEAR) =>
                {
                    Some(match v {
                        VCardParameterValue::Text(t) => {
                            t.trim().parse::<u16>().unwrap_or(APPLE_OMIT_YEAR)
                        }
                        VCardParameterValue::Integer(i) => {
                            u16::try_from(*i).unwrap_or(APPLE_OMIT_YEAR)
                        }
                        _ => APPLE_OMIT_YEAR,
                    })
                }
                _ => None,
            });
            if let Some(year) = omit {
                for value in &mut entry.values {
                    if let VCardValue::PartialDateTime(dt) = value {
                        if dt.year == Some(year) {
                            dt.year = None;
                        }
                    }
                }
                entry.params.retain(|p| !matches!(&p.name, VCardParameterName::Other(n) if n.eq_ignore_ascii_case(PARAM_X_APPLE_OMIT_YEAR)));
            }
            // RFC 6350 §6.2.5: a date property holding text says so (VALUE=text); without it
            // the text would be read as a (partial) date next time.
            if !text_typed
                && entry
                    .values
                    .iter()
                    .any(|v| matches!(v, VCardValue::Text(t) if !t.is_empty()))
            {
                entry.params.retain(|p| p.name != VCardParameterName::Value);
                entry.params.push(VCardParameter::new(
                    VCardParameterName::Value,
                    VCardValueType::Text,
                ));
            }
        }
        VCardProperty::Geo => {
            for value in &mut entry.values {
                if let VCardValue::Text(text) = value {
                    if let Some((lat, lon)) = text.split_once(';') {
                        let (lat, lon) = (lat.trim(), lon.trim());
                        if lat.parse::<f64>().is_ok() && lon.parse::<f64>().is_ok() {
                            *text = format!("{GEO_URI_SCHEME}{lat},{lon}");
                        }
                    }
                }
            }
        }
        _ => {}
    }

    text_for_impossible_dates(entry);
    drop_bogus_media_types(entry);
    text_for_binary_of_text_properties(entry);

    let is_binary_prop = is_binary_prop(&entry.name);
    let has_binary = entry
        .values
        .iter()
        .any(|v| matches!(v, VCardValue::Binary(_)));

    // Parameters: TYPE first, then PREF, then the rest in their order.
    let is_email = entry.name == VCardProperty::Email;
    let old_params = std::mem::take(&mut entry.params);
    // TYPE parameters come first: they go straight into the new list (one allocation per
    // entry with parameters, none for one without).
    let mut types: Vec<VCardParameter> = Vec::with_capacity(if old_params.is_empty() {
        0
    } else {
        old_params.len() + 1
    });
    let mut pref: Option<u32> = None;
    let mut want_pref = false;
    let mut media_hint: Option<String> = None;
    let mut rest: Vec<VCardParameter> = Vec::new();
    let default_type = default_value_type(&entry.name);
    let first_value_is_date = matches!(entry.values.first(), Some(VCardValue::PartialDateTime(_)));

    for param in old_params {
        match (&param.name, param.value) {
            // RFC 6350 §3.3: a parameter name is an iana-token or x-name (ALPHA, DIGIT, "-").
            // calcard keeps whatever stood before `=`; such a name cannot be written back.
            (VCardParameterName::Other(name), _) if !is_param_name(name) => {}
            // Transfer encodings (vCard 2.1 §2.1.3/2.1.4, RFC 2426 §5.8.4) are undone on reading;
            // one left over would make the next read decode the value a second time.
            (VCardParameterName::Other(name), _)
                if [
                    ENC_QUOTED_PRINTABLE,
                    PARAM_ENCODING,
                    PARAM_CHARSET,
                    "BASE64",
                ]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name)) => {}
            (VCardParameterName::Type, VCardParameterValue::Text(text)) => {
                if is_binary_prop
                    && !text.contains(',')
                    && VCardType::parse(text.as_bytes()).is_none()
                    && !text.eq_ignore_ascii_case(TYPE_PREF)
                {
                    media_hint.get_or_insert(text);
                    continue;
                }
                for word in text.split(',') {
                    push_type_word(word, is_email, &mut types, &mut want_pref);
                }
            }
            (VCardParameterName::Type, VCardParameterValue::Null) => {}
            (VCardParameterName::Type, value) => push_type(&mut types, value),
            (VCardParameterName::Pref, VCardParameterValue::Integer(i)) => {
                let i = i.clamp(1, 100);
                pref = Some(pref.map_or(i, |p| p.min(i)));
            }
            (VCardParameterName::Pref, VCardParameterValue::Text(t)) => {
                if let Ok(i) = t.trim().parse::<u32>() {
                    let i = i.clamp(1, 100);
                    pref = Some(pref.map_or(i, |p| p.min(i)));
                }
            }
            (VCardParameterName::Pref, _) => want_pref = true,
            (VCardParameterName::Other(name), VCardParameterValue::Null)
                if is_binary_prop
                    && VCardType::parse(name.as_bytes()).is_none()
                    && legacy_media_type(entry.name.as_str(), name).is_some()
                    && !name.eq_ignore_ascii_case(TYPE_PREF)
                    && !name.eq_ignore_ascii_case("BASE64") =>
            {
                media_hint.get_or_insert(name.clone());
            }
            (VCardParameterName::Other(name), VCardParameterValue::Null)
                if is_legacy_type_word(name) =>
            {
                push_type_word(name, is_email, &mut types, &mut want_pref);
            }
            (VCardParameterName::Other(name), VCardParameterValue::Null)
                if name.eq_ignore_ascii_case("8BIT") || name.eq_ignore_ascii_case("7BIT") => {}
            (VCardParameterName::Value, VCardParameterValue::ValueType(vt)) => {
                let redundant = vt == default_type
                    || has_binary
                    || (first_value_is_date
                        && matches!(vt, VCardValueType::Date | VCardValueType::DateTime)
                        && default_type == VCardValueType::DateAndOrTime);
                if !redundant {
                    rest.push(VCardParameter::new(VCardParameterName::Value, vt));
                }
            }
            (VCardParameterName::Value, VCardParameterValue::Text(t))
                if t.eq_ignore_ascii_case("binary") || t.eq_ignore_ascii_case("b") => {}
            (VCardParameterName::Mediatype, VCardParameterValue::Text(t)) => {
                if has_binary {
                    media_hint.get_or_insert(t);
                } else {
                    rest.push(VCardParameter::new(
                        VCardParameterName::Mediatype,
                        VCardParameterValue::Text(t.to_ascii_lowercase()),
                    ));
                }
            }
            (name, value) => rest.push(VCardParameter {
                name: name.clone(),
                value,
            }),
        }
    }
    if want_pref && pref.is_none() {
        pref = Some(1);
    }

    // Binary values become data: URIs with a media type; a legacy TYPE=JPEG on a URI becomes MEDIATYPE.
    if is_binary_prop {
        for value in &mut entry.values {
            if let VCardValue::Binary(data) = value {
                if data.content_type.as_deref().is_none_or(str::is_empty) {
                    data.content_type = Some(guess_media_type(
                        entry.name.as_str(),
                        media_hint.as_deref(),
                        data,
                    ));
                }
            }
        }
        if !has_binary {
            if let Some(hint) = &media_hint {
                if let Some(mt) = legacy_media_type(entry.name.as_str(), hint) {
                    if !rest.iter().any(|p| p.name == VCardParameterName::Mediatype) {
                        rest.push(VCardParameter::new(
                            VCardParameterName::Mediatype,
                            VCardParameterValue::Text(mt),
                        ));
                    }
                }
            }
        }
    }

    let mut params = types;
    if let Some(p) = pref {
        params.push(VCardParameter::new(VCardParameterName::Pref, p));
    }
    // VALUE last: calcard moves it behind every other parameter when it reads a line.
    let value_at = rest
        .iter()
        .position(|p| p.name == VCardParameterName::Value);
    if value_at.is_some_and(|i| {
        rest.get(i..)
            .is_some_and(|tail| tail.iter().any(|p| p.name != VCardParameterName::Value))
    }) {
        let (values, others): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|p| p.name == VCardParameterName::Value);
        params.extend(others);
        params.extend(values);
    } else {
        params.extend(rest);
    }
    entry.params = params;
}

/// Whether every field of a date/time is in range (RFC 6350 §4.3; ISO 8601).
fn date_is_possible(dt: &PartialDateTime) -> bool {
    dt.year.is_none_or(|y| y <= 9999)
        && dt.month.is_none_or(|m| (1..=12).contains(&m))
        && dt.day.is_none_or(|d| (1..=31).contains(&d))
        && dt.hour.is_none_or(|h| h <= 24)
        && dt.minute.is_none_or(|m| m <= 59)
        && dt.second.is_none_or(|s| s <= 60)
        && dt.tz_hour.is_none_or(|h| h <= 23)
        && dt.tz_minute.is_none_or(|m| m <= 59)
}

/// calcard's parsers can return out-of-range fields (year 65535, hour 255) for text they
/// misread; written back, such a date reads as another one. It becomes text (`VALUE=text`), so
/// the card stays readable and normalizing stays idempotent.
fn text_for_impossible_dates(entry: &mut VCardEntry) {
    let fmt = default_value_type(&entry.name);
    let mut changed = false;
    for value in &mut entry.values {
        if let VCardValue::PartialDateTime(dt) = value {
            // A zone without a time cannot be written (RFC 6350 §4.3.4): it has no meaning.
            let has_date = dt.year.is_some() || dt.month.is_some() || dt.day.is_some();
            if has_date && dt.hour.is_none() && dt.minute.is_none() && dt.second.is_none() {
                dt.tz_hour = None;
                dt.tz_minute = None;
                dt.tz_minus = false;
            }
            if !date_is_possible(dt) {
                let mut text = String::new();
                let _ = dt.format_as_vcard(&mut text, &fmt);
                *value = VCardValue::Text(text);
                changed = true;
            }
        }
    }
    if changed
        && entry
            .values
            .iter()
            .all(|v| matches!(v, VCardValue::Text(_)))
    {
        entry.params.retain(|p| p.name != VCardParameterName::Value);
        entry.params.push(VCardParameter::new(
            VCardParameterName::Value,
            VCardValueType::Text,
        ));
    }
}

/// calcard gives an `ENCODING=b` value whose bytes are not UTF-8 as binary even on a text
/// property (`NOTE;ENCODING=b:...`). Only PHOTO/LOGO/SOUND/KEY and URI-valued properties carry
/// `data:` URIs; anywhere else the bytes are kept as the text of a `data:` URI, which is how
/// they were written back anyway and how they read back.
fn text_for_binary_of_text_properties(entry: &mut VCardEntry) {
    if !entry
        .values
        .iter()
        .any(|v| matches!(v, VCardValue::Binary(_)))
        || matches!(entry.name, VCardProperty::Other(_))
        || default_value_type(&entry.name) == VCardValueType::Uri
        || is_binary_prop(&entry.name)
    {
        return;
    }
    for value in &mut entry.values {
        if let VCardValue::Binary(data) = value {
            use base64::Engine as _;
            let media = data
                .content_type
                .as_deref()
                .filter(|c| !c.is_empty())
                .unwrap_or(MEDIA_OCTET_STREAM);
            let mut text = format!("{DATA_URI_SCHEME}{media};base64,");
            base64::prelude::BASE64_STANDARD.encode_string(&data.data, &mut text);
            *value = VCardValue::Text(text);
        }
    }
}

/// calcard takes whatever stands between `data:` and `;base64,` as the media type; one that is
/// not a media type (RFC 6838 §4.2) is dropped (and guessed again for binary properties).
fn drop_bogus_media_types(entry: &mut VCardEntry) {
    for value in &mut entry.values {
        if let VCardValue::Binary(data) = value {
            if data
                .content_type
                .as_deref()
                .is_some_and(|c| !is_media_type(c))
            {
                data.content_type = None;
            }
        }
    }
}

/// `type/subtype` made of RFC 6838 §4.2 restricted-name characters.
fn is_media_type(text: &str) -> bool {
    let restricted = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    text.split_once('/')
        .is_some_and(|(t, s)| restricted(t) && restricted(s))
}

/// An RFC 6350 §3.3 name token (we also allow `_`, which real exporters write).
fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn is_legacy_type_word(name: &str) -> bool {
    VCardType::parse(name.as_bytes()).is_some()
        || LEGACY_TYPE_WORDS
            .iter()
            .any(|w| w.eq_ignore_ascii_case(name))
}

fn push_type_word(
    word: &str,
    is_email: bool,
    types: &mut Vec<VCardParameter>,
    want_pref: &mut bool,
) {
    let word = word.trim();
    if word.is_empty() {
        return;
    }
    if word.eq_ignore_ascii_case(TYPE_PREF) {
        *want_pref = true;
        return;
    }
    if is_email && word.eq_ignore_ascii_case(TYPE_INTERNET) {
        return;
    }
    let value = match VCardType::parse(word.as_bytes()) {
        Some(t) => VCardParameterValue::Type(t),
        None => VCardParameterValue::Text(word.to_ascii_lowercase()),
    };
    push_type(types, value);
}

/// Adds a `TYPE` value to the list of TYPE parameters unless it is there already.
fn push_type(types: &mut Vec<VCardParameter>, value: VCardParameterValue) {
    if !types.iter().any(|p| p.value == value) {
        types.push(VCardParameter::new(VCardParameterName::Type, value));
    }
}

/// The RFC 6350 default value type of a property (§6), used to drop redundant `VALUE=`.
pub(crate) fn default_value_type(name: &VCardProperty) -> VCardValueType {
    match name {
        VCardProperty::Source
        | VCardProperty::Photo
        | VCardProperty::Impp
        | VCardProperty::Geo
        | VCardProperty::Logo
        | VCardProperty::Member
        | VCardProperty::Related
        | VCardProperty::Sound
        | VCardProperty::Uid
        | VCardProperty::Url
        | VCardProperty::Key
        | VCardProperty::Fburl
        | VCardProperty::Caladruri
        | VCardProperty::Caluri
        | VCardProperty::OrgDirectory
        | VCardProperty::ContactUri
        | VCardProperty::Socialprofile => VCardValueType::Uri,
        VCardProperty::Bday | VCardProperty::Anniversary | VCardProperty::Deathdate => {
            VCardValueType::DateAndOrTime
        }
        VCardProperty::Rev | VCardProperty::Created => VCardValueType::Timestamp,
        VCardProperty::Tz => VCardValueType::UtcOffset,
        VCardProperty::Language => VCardValueType::LanguageTag,
        _ => VCardValueType::Text,
    }
}

/// Media type from a legacy `TYPE=` token (vCard 2.1/3.0: `JPEG`, `PNG`, `PGP`, `image/jpeg`).
pub(crate) fn legacy_media_type(prop: &str, token: &str) -> Option<String> {
    let lower = token.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    if lower.contains('/') {
        return Some(lower);
    }
    let mapped = match (prop.to_ascii_uppercase().as_str(), lower.as_str()) {
        ("PHOTO" | "LOGO", "jpg" | "jpeg") => "image/jpeg".to_string(),
        ("PHOTO" | "LOGO", "tif") => "image/tiff".to_string(),
        ("PHOTO" | "LOGO", other) => format!("image/{other}"),
        ("SOUND", "mp3") => "audio/mpeg".to_string(),
        ("SOUND", "wav" | "wave") => "audio/wav".to_string(),
        ("SOUND", "aif" | "aiff") => "audio/aiff".to_string(),
        ("SOUND", other) => format!("audio/{other}"),
        ("KEY", "pgp" | "gpg") => "application/pgp-keys".to_string(),
        ("KEY", "x509") => "application/x-x509-user-cert".to_string(),
        _ => return None,
    };
    Some(mapped)
}

fn guess_media_type(prop: &str, hint: Option<&str>, data: &Data) -> String {
    if let Some(mt) = hint
        .and_then(|h| legacy_media_type(prop, h))
        .filter(|m| is_media_type(m))
    {
        return mt;
    }
    let d = &data.data;
    if d.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg".into()
    } else if d.starts_with(b"\x89PNG") {
        "image/png".into()
    } else if d.starts_with(b"GIF8") {
        "image/gif".into()
    } else {
        MEDIA_OCTET_STREAM.into()
    }
}

/// The IMPP URI scheme of a pre-RFC 4770 IM property (`X-AIM` → `aim`), if `entry` is one.
fn legacy_im_scheme(entry: &VCardEntry) -> Option<&'static str> {
    let VCardProperty::Other(name) = &entry.name else {
        return None;
    };
    LEGACY_IM_PROPS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, scheme)| *scheme)
}

/// Apple writes each IM handle twice (`IMPP` and `X-AIM`): an IMPP converted from a legacy
/// property is dropped when an earlier IMPP already has the same URI.
fn dedupe_impp(entries: &mut Vec<VCardEntry>) {
    let mut seen: Vec<String> = Vec::new();
    entries.retain(|e| {
        if e.name != VCardProperty::Impp {
            return true;
        }
        let Some(uri) = e.values.first().and_then(|v| v.as_text()) else {
            return true;
        };
        let key = uri.trim().to_ascii_lowercase();
        if seen.contains(&key) {
            return false;
        }
        seen.push(key);
        true
    });
}

/// Apple's `X-ABShowAs:COMPANY` (vCard 3.0) is `KIND:org` (RFC 6350 §6.1.4), as in sabre/vobject.
/// Every such line goes; the first becomes `KIND:org` unless the card already has a KIND.
fn convert_show_as(entries: &mut Vec<VCardEntry>) {
    let is_show_as_company = |e: &VCardEntry| {
        other_name_is(e, PROP_X_ABSHOWAS)
            && other_text(e).is_some_and(|t| t.trim().eq_ignore_ascii_case(ABSHOWAS_COMPANY))
    };
    let Some(first) = entries.iter().position(is_show_as_company) else {
        return;
    };
    let has_kind = entries.iter().any(|e| e.name == VCardProperty::Kind);
    if !has_kind {
        if let Some(entry) = entries.get_mut(first) {
            *entry = VCardEntry {
                group: None,
                name: VCardProperty::Kind,
                params: Vec::new(),
                values: vec![VCardValue::Kind(VCardKind::Org)],
            };
        }
    }
    entries.retain(|e| !is_show_as_company(e));
}

/// vCard 3.0 `SORT-STRING` (RFC 2426 §3.6.5) is the `SORT-AS` parameter of N in 4.0
/// (RFC 6350 §5.9): each one goes to the next N that has none; the rest (and any holding a
/// comma) stay as they are.
fn convert_sort_string(entries: &mut Vec<VCardEntry>) {
    let mut from = 0;
    while let Some(idx) = entries
        .iter()
        .skip(from)
        .position(|e| other_name_is(e, PROP_SORT_STRING))
        .map(|i| i + from)
    {
        let Some(n) = entries.iter().position(|e| {
            e.name == VCardProperty::N
                && !e
                    .params
                    .iter()
                    .any(|p| p.name == VCardParameterName::SortAs)
        }) else {
            return;
        };
        let text = entries.get(idx).and_then(other_text).unwrap_or_default();
        let text = text.trim();
        // SORT-AS is a comma-separated list (one per N component): a comma has no place in it.
        if text.is_empty() || text.contains(',') {
            from = idx + 1;
            continue;
        }
        if let Some(n) = entries.get_mut(n) {
            n.params.push(VCardParameter::new(
                VCardParameterName::SortAs,
                VCardParameterValue::Text(text.to_string()),
            ));
        }
        entries.remove(idx);
        from = idx;
    }
}

/// Only one ANNIVERSARY (RFC 6350 §6.2.6, cardinality *1): converted duplicates with the same
/// date are dropped; a converted one with a different date goes back to its X- name.
fn dedupe_anniversary(entries: &mut Vec<VCardEntry>) {
    let mut seen: Option<Vec<VCardValue>> = None;
    let mut drop = Vec::new();
    for (idx, entry) in entries.iter_mut().enumerate() {
        if entry.name != VCardProperty::Anniversary {
            continue;
        }
        match &seen {
            None => seen = Some(entry.values.clone()),
            Some(values) if *values == entry.values => drop.push(idx),
            Some(_) => rename_to_other(entry, PROP_X_ANNIVERSARY),
        }
    }
    for idx in drop.into_iter().rev() {
        entries.remove(idx);
    }
}

fn type_set(entry: &VCardEntry) -> Vec<&VCardParameterValue> {
    let mut v: Vec<&VCardParameterValue> = entry
        .params
        .iter()
        .filter(|p| p.name == VCardParameterName::Type)
        .map(|p| &p.value)
        .collect();
    v.sort();
    v
}

/// vCard 3.0 `LABEL` (RFC 2426 §3.2.2) becomes the `LABEL=` parameter of the matching ADR
/// (RFC 6350 §6.3.1): same group, else same TYPE set, else the only ADR without a label.
/// Repeats until nothing moves: attaching one label can leave a single free ADR for a label
/// skipped earlier, and stopping after one pass would attach it only on the next normalize.
fn attach_labels(entries: &mut Vec<VCardEntry>) {
    while attach_labels_once(entries) {}
}

/// One pass of [`attach_labels`]; whether any label was attached.
fn attach_labels_once(entries: &mut Vec<VCardEntry>) -> bool {
    let mut attached = false;
    let mut idx = 0;
    while idx < entries.len() {
        if !other_name_is(&entries[idx], PROP_LABEL) {
            idx += 1;
            continue;
        }
        let label = &entries[idx];
        let has_label =
            |e: &VCardEntry| e.params.iter().any(|p| p.name == VCardParameterName::Label);
        let is_free_adr = |e: &VCardEntry| e.name == VCardProperty::Adr && !has_label(e);
        let target = entries
            .iter()
            .position(|e| {
                is_free_adr(e)
                    && label.group.is_some()
                    && e.group.as_deref().map(str::to_ascii_lowercase)
                        == label.group.as_deref().map(str::to_ascii_lowercase)
            })
            .or_else(|| {
                let want = type_set(label);
                entries
                    .iter()
                    .position(|e| is_free_adr(e) && type_set(e) == want)
            })
            .or_else(|| {
                let free: Vec<usize> = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| is_free_adr(e))
                    .map(|(i, _)| i)
                    .collect();
                (free.len() == 1).then(|| free[0])
            });
        let Some(target) = target else {
            idx += 1;
            continue;
        };
        let raw: String = label
            .values
            .iter()
            .filter_map(|v| v.as_text())
            .collect::<Vec<_>>()
            .join(";");
        let text = unescape_raw(&raw);
        entries[target].params.push(VCardParameter::new(
            VCardParameterName::Label,
            VCardParameterValue::Text(text),
        ));
        entries.remove(idx);
        attached = true;
    }
    attached
}

/// RFC 6350 §6.2.1: FN is required. A card without one gets one made from N, ORG or EMAIL.
fn ensure_fn(entries: &mut Vec<VCardEntry>) {
    if entries.iter().any(|e| e.name == VCardProperty::Fn) {
        return;
    }
    let component = |e: &VCardEntry, i: usize| -> String {
        match e.values.get(i) {
            Some(VCardValue::Text(t)) => t.clone(),
            Some(VCardValue::Component(c)) => c.join(" "),
            _ => String::new(),
        }
    };
    let from_n = entries
        .iter()
        .find(|e| e.name == VCardProperty::N)
        .map(|n| {
            [3, 1, 2, 0, 4]
                .iter()
                .map(|&i| component(n, i))
                .filter(|s| !s.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty());
    let from_org = || {
        entries
            .iter()
            .find(|e| e.name == VCardProperty::Org)
            .map(|o| component(o, 0))
            .filter(|s| !s.is_empty())
    };
    let from_email = || {
        entries
            .iter()
            .find(|e| e.name == VCardProperty::Email)
            .map(|o| component(o, 0))
            .filter(|s| !s.is_empty())
    };
    let name = from_n
        .or_else(from_org)
        .or_else(from_email)
        .unwrap_or_default();
    let pos = entries
        .iter()
        .position(|e| e.name == VCardProperty::N)
        .unwrap_or(0);
    entries.insert(
        pos,
        VCardEntry {
            group: None,
            name: VCardProperty::Fn,
            params: Vec::new(),
            values: vec![VCardValue::Text(name)],
        },
    );
}
