//! jCard (RFC 7095): a card as JSON, `["vcard", [[name, {params}, type, value...], ...]]`.

use super::normalize::default_value_type;
use calcard::common::{IanaString, PartialDateTime};
use calcard::vcard::{
    VCard, VCardEntry, VCardParameterName, VCardParameterValue, VCardProperty, VCardValue,
    VCardValueType,
};
use serde_json::{json, Map, Value};

/// RFC 7095 §5: value type of a property whose default type is not known.
const JCARD_UNKNOWN: &str = "unknown";

/// RFC 7095 §3: the jCard of a (normalized) card.
pub fn to_jcard(card: &VCard) -> Value {
    let mut props = vec![json!(["version", {}, "text", "4.0"])];
    for entry in &card.entries {
        if matches!(
            entry.name,
            VCardProperty::Version | VCardProperty::Begin | VCardProperty::End
        ) {
            continue;
        }
        props.push(property(entry));
    }
    json!(["vcard", props])
}

fn property(entry: &VCardEntry) -> Value {
    let mut params = Map::new();
    if let Some(group) = &entry.group {
        // RFC 7095 §3.3.1.2: the group becomes the "group" parameter.
        params.insert("group".into(), Value::String(group.to_ascii_lowercase()));
    }
    let mut value_type: Option<VCardValueType> = None;
    for p in &entry.params {
        if p.name == VCardParameterName::Value {
            if let VCardParameterValue::ValueType(v) = &p.value {
                value_type.get_or_insert(*v);
            }
            continue;
        }
        let key = p.name.as_str().to_ascii_lowercase();
        let text = param_text(&p.value);
        match params.get_mut(&key) {
            Some(Value::Array(items)) => items.push(Value::String(text)),
            Some(existing) => {
                let prev = existing.take();
                *existing = Value::Array(vec![prev, Value::String(text)]);
            }
            None => {
                params.insert(key, Value::String(text));
            }
        }
    }
    let vt = value_type.unwrap_or_else(|| default_value_type(&entry.name));
    let structured = matches!(
        entry.name,
        VCardProperty::N
            | VCardProperty::Adr
            | VCardProperty::Gender
            | VCardProperty::Org
            | VCardProperty::Clientpidmap
    );
    let values: Vec<Value> = entry.values.iter().map(|v| value(v, vt)).collect();
    // RFC 7095 §5.1: an unknown property without VALUE= is "unknown", its value the raw text
    // (which is what an `Other` property's text is).
    let unknown = value_type.is_none()
        && matches!(entry.name, VCardProperty::Other(_))
        && matches!(entry.values.first(), Some(VCardValue::Text(_)));
    let type_text = if unknown {
        JCARD_UNKNOWN.to_string()
    } else {
        type_name(vt, &entry.values)
    };
    let mut out = vec![
        Value::String(entry.name.as_str().to_ascii_lowercase()),
        Value::Object(params),
        Value::String(type_text),
    ];
    if structured && values.len() > 1 {
        out.push(Value::Array(values));
    } else {
        out.extend(values);
    }
    Value::Array(out)
}

fn type_name(vt: VCardValueType, values: &[VCardValue]) -> String {
    match values.first() {
        Some(VCardValue::Binary(_)) => "uri".into(),
        Some(VCardValue::Text(_))
            if matches!(
                vt,
                VCardValueType::DateAndOrTime
                    | VCardValueType::Timestamp
                    | VCardValueType::UtcOffset
                    | VCardValueType::Date
                    | VCardValueType::DateTime
            ) =>
        {
            "text".into()
        }
        Some(VCardValue::Integer(_)) => "integer".into(),
        Some(VCardValue::Float(_)) => "float".into(),
        Some(VCardValue::Boolean(_)) => "boolean".into(),
        _ => vt.as_str().to_ascii_lowercase(),
    }
}

fn param_text(v: &VCardParameterValue) -> String {
    match v {
        VCardParameterValue::Text(t) => t.clone(),
        VCardParameterValue::Integer(i) => i.to_string(),
        VCardParameterValue::Timestamp(t) => t.to_string(),
        VCardParameterValue::Bool(b) => b.to_string().to_ascii_uppercase(),
        VCardParameterValue::ValueType(t) => t.as_str().to_ascii_lowercase(),
        VCardParameterValue::Type(t) => t.as_str().to_ascii_lowercase(),
        VCardParameterValue::Calscale(t) => t.as_str().to_ascii_lowercase(),
        VCardParameterValue::Level(t) => t.as_str().to_ascii_lowercase(),
        VCardParameterValue::Phonetic(t) => t.as_str().to_ascii_lowercase(),
        VCardParameterValue::Jscomps(_) | VCardParameterValue::Null => String::new(),
    }
}

fn value(v: &VCardValue, vt: VCardValueType) -> Value {
    match v {
        VCardValue::Text(t) => Value::String(t.clone()),
        VCardValue::Component(items) => {
            Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
        }
        VCardValue::Integer(i) => json!(i),
        VCardValue::Float(f) => json!(f),
        VCardValue::Boolean(b) => json!(b),
        VCardValue::PartialDateTime(dt) => Value::String(extended_date(dt, vt)),
        VCardValue::Binary(d) => {
            use base64::Engine as _;
            Value::String(format!(
                "data:{};base64,{}",
                d.content_type.as_deref().unwrap_or_default(),
                base64::prelude::BASE64_STANDARD.encode(&d.data)
            ))
        }
        VCardValue::Sex(s) => Value::String(s.as_str().to_string()),
        VCardValue::GramGender(g) => Value::String(g.as_str().to_ascii_lowercase()),
        VCardValue::Kind(k) => Value::String(k.as_str().to_ascii_lowercase()),
    }
}

/// RFC 7095 §3.5.3–3.5.7: dates and times in extended ISO 8601 form.
fn extended_date(dt: &PartialDateTime, vt: VCardValueType) -> String {
    let mut s = String::new();
    if vt == VCardValueType::UtcOffset {
        push_zone(&mut s, dt);
        return s;
    }
    match (dt.year, dt.month, dt.day) {
        (Some(y), Some(m), Some(d)) => s.push_str(&format!("{y:04}-{m:02}-{d:02}")),
        (Some(y), Some(m), None) => s.push_str(&format!("{y:04}-{m:02}")),
        (Some(y), None, _) => s.push_str(&format!("{y:04}")),
        (None, Some(m), Some(d)) => s.push_str(&format!("--{m:02}-{d:02}")),
        (None, Some(m), None) => s.push_str(&format!("--{m:02}")),
        (None, None, Some(d)) => s.push_str(&format!("---{d:02}")),
        (None, None, None) => {}
    }
    if dt.hour.is_some() || dt.minute.is_some() || dt.second.is_some() {
        s.push('T');
        let parts: Vec<String> = [dt.hour, dt.minute, dt.second]
            .iter()
            .map(|p| p.map_or("-".to_string(), |v| format!("{v:02}")))
            .collect();
        s.push_str(&parts.join(":").replace("-:", "-"));
    }
    push_zone(&mut s, dt);
    s
}

fn push_zone(s: &mut String, dt: &PartialDateTime) {
    if let Some(h) = dt.tz_hour {
        let m = dt.tz_minute.unwrap_or(0);
        if h == 0 && m == 0 {
            s.push('Z');
        } else {
            s.push_str(&format!(
                "{}{h:02}:{m:02}",
                if dt.tz_minus { '-' } else { '+' }
            ));
        }
    }
}
