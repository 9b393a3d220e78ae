//! A content fingerprint of a card's meaning: SHA-256 over its properties in a canonical form
//! that ignores `REV`, `PRODID`, `VERSION`, property order, parameter order, the case of
//! property and parameter names, and group names (a group is known by its members' content).
//! Feed it normalized cards.

use super::write::{write_entry, Dialect};
use calcard::vcard::{VCard, VCardEntry, VCardParameter, VCardProperty};
use sha2::{Digest, Sha256};
use std::fmt;

/// SHA-256 of a card's canonical form. `Display` is lower-case hex; serializes as that hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the hex form.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("not a 64-digit hex fingerprint"))
    }
}

/// Fingerprint of a (normalized) card.
///
/// Group names carry no meaning of their own (Apple renumbers `item1`, `item2`, ... whenever a
/// card is edited), so a grouped line is hashed with its group replaced by the digest of the
/// group's members: renaming groups keeps the fingerprint, while any change of a value inside a
/// group changes it.
pub fn fingerprint(card: &VCard) -> Fingerprint {
    let entries: Vec<&VCardEntry> = card
        .entries
        .iter()
        .filter(|e| {
            !matches!(
                e.name,
                VCardProperty::Rev
                    | VCardProperty::Prodid
                    | VCardProperty::Version
                    | VCardProperty::Begin
                    | VCardProperty::End
            )
        })
        .collect();
    let bodies: Vec<String> = entries.iter().map(|e| canonical_line(e)).collect();
    // group name (lower case) → digest of its members' sorted canonical lines.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for (entry, body) in entries.iter().zip(&bodies) {
        if let Some(group) = &entry.group {
            let group = group.to_ascii_lowercase();
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, members)) => members.push(body),
                None => groups.push((group, vec![body])),
            }
        }
    }
    let digests: Vec<(String, String)> = groups
        .into_iter()
        .map(|(group, mut members)| {
            members.sort_unstable();
            let mut hasher = Sha256::new();
            for m in members {
                hasher.update(m.as_bytes());
                hasher.update(b"\n");
            }
            (group, hex::encode(hasher.finalize()))
        })
        .collect();
    let mut lines: Vec<String> = entries
        .iter()
        .zip(bodies)
        .map(|(entry, body)| match &entry.group {
            Some(group) => {
                let group = group.to_ascii_lowercase();
                let digest = digests
                    .iter()
                    .find(|(g, _)| *g == group)
                    .map(|(_, d)| d.as_str())
                    .unwrap_or_default();
                format!("group:{digest}.{body}")
            }
            None => body,
        })
        .collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    Fingerprint(hasher.finalize().into())
}

/// One entry's canonical content line, without its group.
fn canonical_line(entry: &VCardEntry) -> String {
    let mut params: Vec<VCardParameter> = entry
        .params
        .iter()
        .map(|p| VCardParameter {
            name: calcard::vcard::VCardParameterName::parse(&p.name.as_str().to_ascii_uppercase()),
            value: p.value.clone(),
        })
        .collect();
    params.sort();
    params.dedup();
    let canonical = VCardEntry {
        group: None,
        name: match &entry.name {
            VCardProperty::Other(n) => VCardProperty::Other(n.to_ascii_uppercase()),
            other => other.clone(),
        },
        params,
        values: entry.values.clone(),
    };
    let mut line = String::new();
    write_entry(&mut line, &canonical, Dialect::V4);
    line
}
