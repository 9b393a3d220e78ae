//! What the loopback CardDAV fakes (books, icloud, truncating) answer alike: an
//! `addressbook-multiget` over their name → (ETag, text) map, and the numeric `tok-<seq>` sync
//! tokens of the fakes that use them. A test crate that includes one of those fakes includes
//! this file beside it: `#[path = "fakes/dav_common.rs"] mod dav_common;`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cardbridge::dav::error::{render_error_body, Precondition};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::multistatus::Multistatus;
use cardbridge::dav::names;
use cardbridge::dav::prop;

/// The answer to `mg` from `cards` (name → (ETag, text)): each href by its last segment, found
/// with its ETag and card, or 404.
pub fn multiget(
    mg: &AddressbookMultiget,
    cards: &BTreeMap<String, (String, String)>,
) -> Multistatus {
    let responses = mg
        .hrefs
        .iter()
        .map(|h| {
            let name = h.rsplit('/').next().unwrap_or("");
            match cards.get(name) {
                Some((etag, text)) => mg.respond_found(h, text, |q| {
                    (*q == names::GETETAG).then(|| prop::text(q, etag.clone()))
                }),
                None => AddressbookMultiget::respond_missing(h),
            }
        })
        .collect();
    Multistatus {
        responses,
        sync_token: None,
        description: None,
    }
}

/// The sync token of change `seq`.
pub fn token(seq: u64) -> String {
    format!("tok-{seq}")
}

/// The change a client's token stands for (0 without one); `None` for a token that is not
/// ours or lies in the future, which [`invalid_token`] answers.
pub fn since(token: Option<&str>, seq: u64) -> Option<u64> {
    let Some(t) = token else {
        return Some(0);
    };
    t.strip_prefix("tok-")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n <= seq)
}

/// 403 `valid-sync-token` (RFC 6578 §3.2).
pub fn invalid_token() -> Response {
    (
        StatusCode::FORBIDDEN,
        render_error_body(&Precondition::ValidSyncToken),
    )
        .into_response()
}
