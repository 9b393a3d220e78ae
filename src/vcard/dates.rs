//! Date text as exporters write it (`1985-04-12`, `19850412`, `--0415`, `--04-15`, with an
//! optional time), read into calcard's [`PartialDateTime`] (RFC 6350 §4.3, RFC 2426 §3.1.5).

use calcard::common::PartialDateTime;

/// Parses a date-and-or-time in basic or extended form; `None` when it is not one.
pub fn parse_date_text(text: &str) -> Option<PartialDateTime> {
    let t = text.trim();
    if t.is_empty()
        || !t.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b, b'-' | b':' | b'T' | b't' | b'Z' | b'z' | b'+')
        })
    {
        return None;
    }
    let (date, time) = match t.find(['T', 't']) {
        Some(i) => (t.get(..i)?, Some(t.get(i + 1..)?)),
        None => (t, None),
    };
    let db = date.as_bytes();
    let basic_date = if let Some(rest) = date.strip_prefix("---") {
        format!("---{rest}")
    } else if let Some(rest) = date.strip_prefix("--") {
        format!("--{}", rest.replace('-', ""))
    } else if db.len() == 7 && db.get(4) == Some(&b'-') {
        date.to_string()
    } else {
        date.replace('-', "")
    };
    let mut basic = basic_date;
    if let Some(time) = time {
        basic.push('T');
        basic.push_str(&time.replace(':', ""));
    }
    let mut dt = PartialDateTime::default();
    let mut iter = basic.as_bytes().iter().peekable();
    dt.parse_vcard_date_and_or_time(&mut iter);
    if iter.next().is_some() || dt.is_null() {
        return None;
    }
    if dt.month.is_some_and(|m| !(1..=12).contains(&m))
        || dt.day.is_some_and(|d| !(1..=31).contains(&d))
    {
        return None;
    }
    Some(dt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let d = parse_date_text("1985-04-12").unwrap();
        assert_eq!((d.year, d.month, d.day), (Some(1985), Some(4), Some(12)));
        let d = parse_date_text("--04-15").unwrap();
        assert_eq!((d.year, d.month, d.day), (None, Some(4), Some(15)));
        let d = parse_date_text("--0415").unwrap();
        assert_eq!((d.year, d.month, d.day), (None, Some(4), Some(15)));
        let d = parse_date_text("19850412T101112Z").unwrap();
        assert_eq!((d.hour, d.minute, d.second), (Some(10), Some(11), Some(12)));
        assert!(parse_date_text("circa 1800").is_none());
        assert!(parse_date_text("1985-13-45").is_none());
    }
}
