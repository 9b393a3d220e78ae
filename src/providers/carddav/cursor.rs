//! The CardDAV pull cursor: what the provider needs to resume, encoded into the opaque string the
//! engine stores (the provider keeps no state of its own). Either a `sync-collection` token (with
//! whether the run in progress is a full listing, and for a group sync group the members last
//! seen), or, for servers without `sync-collection`, the `getctag` and the ETag of every member
//! as last listed, so the next `PROPFIND Depth:1` can be diffed without a store.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::providers::ProviderError;

/// Prefix of every encoded cursor, with the format version.
pub const CURSOR_PREFIX: &str = "carddav1:";

/// Where a pull stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub enum Cursor {
    /// RFC 6578 sync.
    Sync {
        /// The sync token (opaque, not necessarily a URI).
        #[serde(rename = "t")]
        token: String,
        /// True while a full listing is in progress (a truncated initial sync).
        #[serde(rename = "f", default)]
        full: bool,
        /// For a group sync group: the member UIDs the pages so far were filtered by.
        #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
        members: Option<BTreeSet<String>>,
    },
    /// ETag diffing for servers without `sync-collection`.
    Etags {
        /// `CS:getctag` when the listing was taken.
        #[serde(rename = "c", default)]
        ctag: Option<String>,
        /// href → ETag of every member listed.
        #[serde(rename = "e")]
        etags: BTreeMap<String, String>,
    },
}

impl Cursor {
    /// The opaque string.
    pub fn encode(&self) -> String {
        // Serializing these plain maps and strings cannot fail.
        format!(
            "{CURSOR_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// Reads an opaque string back. A string without our prefix is taken as a bare sync token
    /// (a cursor written before this format, or by hand).
    pub fn decode(s: &str) -> Result<Self, ProviderError> {
        match s.strip_prefix(CURSOR_PREFIX) {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| ProviderError::Protocol(format!("unreadable CardDAV cursor: {e}"))),
            None => Ok(Cursor::Sync {
                token: s.to_string(),
                full: false,
                members: None,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = Cursor::Sync {
            token: "http://radicale.org/ns/sync/abc".into(),
            full: true,
            members: Some(["u1".to_string()].into_iter().collect()),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let e = Cursor::Etags {
            ctag: Some("3".into()),
            etags: [("/a.vcf".to_string(), "\"1\"".to_string())]
                .into_iter()
                .collect(),
        };
        assert_eq!(Cursor::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn bare_tokens_and_garbage() {
        assert_eq!(
            Cursor::decode("42").unwrap(),
            Cursor::Sync {
                token: "42".into(),
                full: false,
                members: None
            }
        );
        assert!(Cursor::decode("carddav1:{nope").is_err());
    }
}
