//! Pulling: `sync-collection` (RFC 6578) from the cursor's token, one [`Page`] per answer (a
//! 507-truncated answer is a page with `complete: false` whose cursor resumes the run); an
//! invalid token (`DAV:valid-sync-token` as 403, 409 or 412) restarts as a full listing; servers
//! without `sync-collection` get a `getctag` short-circuit and a `PROPFIND Depth:1` ETag diff
//! against the ETags the cursor carries. Cards come through `addressbook-multiget` in batches;
//! hrefs the multiget answers 404 or leaves out are fetched once more by GET and otherwise
//! reported [`RemoteChange::Invalid`] — never as deletions, which only an explicit removal in a
//! sync answer or a complete listing can prove.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use url::Url;

use crate::dav::address_data::{address_data_text, AddressDataRequest, ReportProps};
use crate::dav::error::body_has_precondition;
use crate::dav::multiget::AddressbookMultiget;
use crate::dav::names;
use crate::dav::propfind::{Depth, Propfind};
use crate::dav::query::{
    AddressbookQuery, Collation, Filter, MatchType, PropFilter, Test, TextMatch,
};
use crate::dav::sync_collection::SyncCollection;
use crate::providers::{Page, ProviderError, PullKind, RemoteChange, RemoteItem};
use crate::vcard::{self, VCard};

use super::cards::{self, href_key, item_id};
use super::cursor::Cursor;
use super::discovery::book_info;
use super::{CarddavProvider, GroupRef};

/// vCard 4 `KIND` (RFC 6350 §6.1.4), for the group-card query.
pub const PROP_KIND: &str = "KIND";
/// vCard `UID` (RFC 6350 §6.7.6).
pub const PROP_UID: &str = "UID";
/// `KIND` value of a group (RFC 6350 §6.1.4).
pub const KIND_GROUP: &str = "group";

/// One card fetched for a page.
enum Fetched {
    Card {
        id: String,
        etag: Option<String>,
        card: VCard,
    },
    Invalid {
        id: String,
        reason: String,
    },
}

/// The next page of `target` after `cursor`.
pub async fn pull(
    p: &CarddavProvider,
    target: &GroupRef,
    cursor: Option<&str>,
) -> Result<Page, ProviderError> {
    match cursor.map(Cursor::decode).transpose()? {
        Some(Cursor::Sync {
            token,
            full,
            members,
        }) => pull_sync(p, target, Some(token), full, members).await,
        Some(Cursor::Etags { ctag, etags }) => pull_etags(p, target, ctag, Some(etags)).await,
        None => {
            let info = book_info(&p.client, &target.book).await?;
            if info.supports_sync_collection() {
                pull_sync(p, target, None, true, None).await
            } else {
                pull_etags(p, target, None, None).await
            }
        }
    }
}

/// True when a sync-collection answer says the token is no longer valid (RFC 6578 §3.7; 403 by
/// the RFC, 409 or 412 by some servers, with or without the condition body).
fn token_rejected(status: StatusCode, body: &[u8]) -> bool {
    match status.as_u16() {
        403 => body_has_precondition(body, &names::VALID_SYNC_TOKEN),
        409 | 412 => true,
        _ => false,
    }
}

async fn pull_sync(
    p: &CarddavProvider,
    target: &GroupRef,
    mut token: Option<String>,
    mut full: bool,
    mut members: Option<BTreeSet<String>>,
) -> Result<Page, ProviderError> {
    let book = &target.book;
    // A group sync group needs its members before it can filter anything.
    if let (Some(uid), None) = (&target.group_uid, &members) {
        members = Some(group_members(p, book, uid).await?);
        token = None;
        full = true;
    }
    // At most: the request, one restart after an invalid token, one after a membership change.
    for _ in 0..3 {
        let mut req = SyncCollection::new(token.as_deref(), &[names::GETETAG]);
        req.depth = p.profile.sync_depth;
        let http_req = req
            .build_request(book.as_str())
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let resp = p.client.send_dav(book, http_req).await?;
        if token.is_some() && token_rejected(resp.status, &resp.body) {
            tracing::info!(%book, status = %resp.status, "sync token rejected; full listing");
            token = None;
            full = true;
            if let Some(uid) = &target.group_uid {
                members = Some(group_members(p, book, uid).await?);
            }
            continue;
        }
        if !resp.status.is_success() {
            return Err(resp.error());
        }
        let result = SyncCollection::parse_response(&resp.body)
            .map_err(|e| ProviderError::Protocol(format!("sync-collection on {book}: {e}")))?;
        let new_token = result.new_token.clone().ok_or_else(|| {
            ProviderError::Protocol(format!("sync-collection on {book} returned no sync-token"))
        })?;
        if result.truncated
            && result.changed.is_empty()
            && result.removed.is_empty()
            && token.as_deref() == Some(new_token.as_str())
        {
            return Err(ProviderError::Protocol(format!(
                "{book} truncates sync-collection without progress"
            )));
        }
        let book_key = href_key(book, book.path());
        let ids: Vec<String> = result
            .changed
            .iter()
            .filter(|c| href_key(book, &c.href) != book_key && !c.href.ends_with('/'))
            .filter_map(|c| item_id(book, &c.href))
            .collect();
        let fetched = fetch_cards(p, book, &ids).await?;

        // A changed group card in an incremental run: membership may have changed, so the
        // group is listed anew (members who left are then simply not mentioned).
        if let (Some(uid), Some(old)) = (&target.group_uid, &members) {
            let new = fetched.iter().find_map(|f| match f {
                Fetched::Card { card, .. }
                    if cards::is_group(card) && vcard::uid(card) == Some(uid.as_str()) =>
                {
                    Some(cards::members(card))
                }
                _ => None,
            });
            if let Some(new) = new {
                if &new != old && !full {
                    tracing::info!(%book, group = %uid, "group membership changed; listing the group");
                    members = Some(new);
                    token = None;
                    full = true;
                    continue;
                }
                members = Some(new);
            }
        }

        let mut changes = Vec::with_capacity(fetched.len() + result.removed.len());
        for f in fetched {
            match f {
                Fetched::Card { id, etag, card } => {
                    if !wanted(p, target, members.as_ref(), &card) {
                        continue;
                    }
                    changes.push(RemoteChange::Upsert(RemoteItem { id, etag, card }));
                }
                Fetched::Invalid { id, reason } => {
                    changes.push(RemoteChange::Invalid { id, reason })
                }
            }
        }
        for href in &result.removed {
            if let Some(id) = item_id(book, href) {
                changes.push(RemoteChange::Delete { id });
            }
        }
        let complete = !result.truncated;
        return Ok(Page {
            changes,
            kind: if full {
                PullKind::FullListing
            } else {
                PullKind::Incremental
            },
            cursor: Some(
                Cursor::Sync {
                    token: new_token,
                    full: full && !complete,
                    members,
                }
                .encode(),
            ),
            complete,
        });
    }
    Err(ProviderError::Protocol(format!(
        "{book}: sync-collection kept restarting"
    )))
}

/// Whether a fetched card belongs in the page: group cards are not contacts when the profile
/// makes them sync groups; in a group sync group only members count.
fn wanted(
    p: &CarddavProvider,
    target: &GroupRef,
    members: Option<&BTreeSet<String>>,
    card: &VCard,
) -> bool {
    if p.profile.group_cards && cards::is_group(card) {
        return false;
    }
    match (&target.group_uid, members) {
        (Some(_), Some(m)) => vcard::uid(card).is_some_and(|u| m.contains(u)),
        _ => true,
    }
}

async fn pull_etags(
    p: &CarddavProvider,
    target: &GroupRef,
    old_ctag: Option<String>,
    old: Option<BTreeMap<String, String>>,
) -> Result<Page, ProviderError> {
    if target.group_uid.is_some() {
        return Err(ProviderError::Unsupported(
            "a group sync group needs a server with sync-collection".into(),
        ));
    }
    let book = &target.book;
    let book_key = href_key(book, book.path());
    if let (Some(_), Some(prev)) = (&old_ctag, &old) {
        let resp = p
            .client
            .propfind(book, &Propfind::props(Depth::Zero, &[names::GETCTAG]))
            .await?;
        let ms = resp.multistatus()?;
        let ctag = ms
            .responses
            .iter()
            .find_map(|r| r.prop_text(&names::GETCTAG).map(str::to_string));
        if ctag.is_some() && ctag == old_ctag {
            return Ok(Page {
                changes: vec![],
                kind: PullKind::Incremental,
                cursor: Some(
                    Cursor::Etags {
                        ctag,
                        etags: prev.clone(),
                    }
                    .encode(),
                ),
                complete: true,
            });
        }
    }
    let resp = p
        .client
        .propfind(
            book,
            &Propfind::props(
                Depth::One,
                &[names::GETETAG, names::RESOURCETYPE, names::GETCTAG],
            ),
        )
        .await?;
    let ms = resp.multistatus()?;
    let mut ctag = None;
    let mut listing: BTreeMap<String, String> = BTreeMap::new();
    for r in &ms.responses {
        if href_key(book, &r.href) == book_key {
            ctag = r.prop_text(&names::GETCTAG).map(str::to_string);
            continue;
        }
        if r.href.ends_with('/') || r.status.is_some_and(|s| !s.is_success()) {
            continue;
        }
        if let (Some(id), Some(etag)) = (item_id(book, &r.href), r.prop_text(&names::GETETAG)) {
            listing.insert(id, etag.to_string());
        }
    }
    let changed: Vec<String> = listing
        .iter()
        .filter(|(id, etag)| old.as_ref().and_then(|o| o.get(*id)) != Some(*etag))
        .map(|(id, _)| id.clone())
        .collect();
    let mut changes = Vec::new();
    for f in fetch_cards(p, book, &changed).await? {
        match f {
            Fetched::Card { id, etag, card } => {
                if wanted(p, target, None, &card) {
                    changes.push(RemoteChange::Upsert(RemoteItem { id, etag, card }));
                }
            }
            Fetched::Invalid { id, reason } => {
                // Not remembered, so the next diff tries it again.
                listing.remove(&id);
                changes.push(RemoteChange::Invalid { id, reason });
            }
        }
    }
    if let Some(prev) = &old {
        for id in prev.keys() {
            if !listing.contains_key(id) && !changed.contains(id) {
                changes.push(RemoteChange::Delete { id: id.clone() });
            }
        }
    }
    Ok(Page {
        changes,
        kind: if old.is_some() {
            PullKind::Incremental
        } else {
            PullKind::FullListing
        },
        cursor: Some(
            Cursor::Etags {
                ctag,
                etags: listing,
            }
            .encode(),
        ),
        complete: true,
    })
}

/// Fetches `ids` with `addressbook-multiget` in batches, the profile's
/// `multiget_concurrency` requests in flight: the next batches' requests are out while the
/// previous answer is parsed and its cards normalized, so the server's work and ours overlap
/// instead of adding up. Hrefs the server answers 404 or leaves out are tried once with GET,
/// then reported invalid. Order follows `ids`.
async fn fetch_cards(
    p: &CarddavProvider,
    book: &Url,
    ids: &[String],
) -> Result<Vec<Fetched>, ProviderError> {
    let mut out = Vec::with_capacity(ids.len());
    // Owned batches: a closure over borrowed slices is not general enough for the `Send`
    // future `async_trait` requires.
    let batches: Vec<Vec<String>> = ids
        .chunks(p.profile.multiget_batch.max(1))
        .map(<[String]>::to_vec)
        .collect();
    let mut answers = futures::stream::iter(batches)
        .map(|chunk| async move {
            let mg = AddressbookMultiget::new(chunk.clone());
            let req = mg
                .build_request(book.as_str())
                .map_err(|e| ProviderError::Protocol(e.to_string()))?;
            let resp = p.client.send_dav(book, req).await?;
            Ok::<_, ProviderError>((chunk, mg, resp))
        })
        .buffered(p.profile.multiget_concurrency.max(1));
    while let Some(answer) = answers.next().await {
        let (chunk, mg, resp) = answer?;
        if !resp.status.is_success() {
            return Err(resp.error());
        }
        let result = mg
            .parse_response(&resp.body)
            .map_err(|e| ProviderError::Protocol(format!("multiget on {book}: {e}")))?;
        let mut found: HashMap<String, (Option<String>, String)> = result
            .cards
            .into_iter()
            .map(|c| (href_key(book, &c.href), (c.etag, c.data)))
            .collect();
        for id in chunk {
            match found.remove(&href_key(book, &id)) {
                Some((etag, data)) => out.push(match cards::read_one(&data) {
                    Ok(card) => Fetched::Card { id, etag, card },
                    Err(reason) => Fetched::Invalid { id, reason },
                }),
                None => out.push(get_card(p, book, &id).await?),
            }
        }
    }
    Ok(out)
}

/// GETs one card the multiget did not return.
async fn get_card(p: &CarddavProvider, book: &Url, id: &str) -> Result<Fetched, ProviderError> {
    let url = book
        .join(id)
        .map_err(|e| ProviderError::Protocol(e.to_string()))?;
    let resp = p
        .client
        .send("GET", &url, HeaderMap::new(), Bytes::new())
        .await?;
    if resp.status == StatusCode::NOT_FOUND || resp.status == StatusCode::GONE {
        return Ok(Fetched::Invalid {
            id: id.to_string(),
            reason: "listed as changed but not returned by the server (gone meanwhile?)".into(),
        });
    }
    if !resp.status.is_success() {
        return Err(resp.error());
    }
    let etag = resp.header(super::client::HEADER_ETAG).map(str::to_string);
    Ok(
        match cards::read_one(&String::from_utf8_lossy(&resp.body)) {
            Ok(card) => Fetched::Card {
                id: id.to_string(),
                etag,
                card,
            },
            Err(reason) => Fetched::Invalid {
                id: id.to_string(),
                reason,
            },
        },
    )
}

/// Runs an `addressbook-query` on `book` and returns (href, etag, card) of the readable matches.
async fn query(
    p: &CarddavProvider,
    book: &Url,
    filter: Filter,
) -> Result<Vec<(String, Option<String>, VCard)>, ProviderError> {
    let q = AddressbookQuery {
        props: ReportProps {
            props: vec![names::GETETAG],
            address_data: Some(AddressDataRequest::default()),
        },
        filter,
        limit: None,
    };
    let req = q
        .build_request(book.as_str())
        .map_err(|e| ProviderError::Protocol(e.to_string()))?;
    let ms = p.client.send_dav(book, req).await?.multistatus()?;
    let mut out = Vec::new();
    for r in &ms.responses {
        let Some(data) = r
            .prop(&names::ADDRESS_DATA)
            .and_then(|d| address_data_text(d).ok())
        else {
            continue;
        };
        if let (Ok(card), Some(id)) = (cards::read_one(data), item_id(book, &r.href)) {
            out.push((id, r.prop_text(&names::GETETAG).map(str::to_string), card));
        }
    }
    Ok(out)
}

fn equals(prop: &str, text: &str) -> PropFilter {
    PropFilter {
        name: prop.to_string(),
        test: Test::AnyOf,
        is_not_defined: false,
        text_matches: vec![TextMatch {
            text: text.to_string(),
            collation: Collation::AsciiCasemap,
            match_type: MatchType::Equals,
            negate: false,
        }],
        param_filters: vec![],
    }
}

/// The group card with `uid` in `book`: (href, etag, card).
pub async fn group_card(
    p: &CarddavProvider,
    book: &Url,
    uid: &str,
) -> Result<(String, Option<String>, VCard), ProviderError> {
    let filter = Filter {
        test: Test::AnyOf,
        prop_filters: vec![equals(PROP_UID, uid)],
    };
    query(p, book, filter)
        .await?
        .into_iter()
        .find(|(_, _, c)| cards::is_group(c) && vcard::uid(c) == Some(uid))
        .ok_or(ProviderError::NotFound)
}

async fn group_members(
    p: &CarddavProvider,
    book: &Url,
    uid: &str,
) -> Result<BTreeSet<String>, ProviderError> {
    Ok(cards::members(&group_card(p, book, uid).await?.2))
}

/// The group cards of `book` as (UID, name).
pub async fn group_cards(
    p: &CarddavProvider,
    book: &Url,
) -> Result<Vec<(String, String)>, ProviderError> {
    let filter = Filter {
        test: Test::AnyOf,
        prop_filters: vec![
            equals(
                crate::vcard::names::PROP_X_ADDRESSBOOKSERVER_KIND,
                KIND_GROUP,
            ),
            equals(PROP_KIND, KIND_GROUP),
        ],
    };
    Ok(query(p, book, filter)
        .await?
        .into_iter()
        .filter(|(_, _, c)| cards::is_group(c))
        .filter_map(|(_, _, c)| {
            let uid = vcard::uid(&c)?.to_string();
            let name = c
                .entries
                .iter()
                .find(|e| e.name == crate::vcard::VCardProperty::Fn)
                .and_then(|e| e.values.first())
                .and_then(|v| match v {
                    crate::vcard::VCardValue::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| uid.clone());
            Some((uid, name))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_token_statuses() {
        let body =
            br#"<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:valid-sync-token/></d:error>"#;
        assert!(token_rejected(StatusCode::FORBIDDEN, body));
        assert!(!token_rejected(StatusCode::FORBIDDEN, b"no"));
        assert!(token_rejected(StatusCode::CONFLICT, b""));
        assert!(token_rejected(StatusCode::PRECONDITION_FAILED, body));
        assert!(!token_rejected(StatusCode::INTERNAL_SERVER_ERROR, body));
    }
}
