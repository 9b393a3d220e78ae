//! Pushing: create with `PUT` + `If-None-Match: *` (honouring `Location`, reading the card back
//! when the server sends no ETag), update with `PUT` + `If-Match`, delete with `DELETE` +
//! `If-Match`; a 412 is [`ProviderError::Conflict`]. For servers that ignore `If-Match`
//! (profile `honours_if_match: false`) the current ETag is compared first. In an iCloud group
//! sync group a new card is also added to the group card.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use url::Url;

use crate::dav::names;
use crate::dav::propfind::{Depth, Propfind};
use crate::providers::{ProviderError, RemoteItem, Written};
use crate::vcard::VCard;

use super::cards::{self, CONTENT_TYPE_VCARD_UTF8};
use super::client::{DavResponse, HEADER_ETAG};
use super::pull::group_card;
use super::{CarddavProvider, GroupRef};

/// RFC 7232 §3.2 `If-None-Match: *`.
pub const ANY_ETAG: &str = "*";
/// Attempts at adding a member to a group card that keeps changing under us.
pub const GROUP_UPDATE_ATTEMPTS: usize = 3;

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ProviderError> {
    Ok((
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ProviderError::Protocol(e.to_string()))?,
        HeaderValue::from_str(value).map_err(|e| ProviderError::Protocol(e.to_string()))?,
    ))
}

fn card_url(book: &Url, id: &str) -> Result<Url, ProviderError> {
    book.join(id)
        .map_err(|e| ProviderError::Protocol(format!("bad item id {id}: {e}")))
}

async fn put(
    p: &CarddavProvider,
    url: &Url,
    body: &str,
    condition: Option<(&str, &str)>,
) -> Result<DavResponse, ProviderError> {
    let mut h = HeaderMap::new();
    let (n, v) = header("content-type", CONTENT_TYPE_VCARD_UTF8)?;
    h.insert(n, v);
    if let Some((name, value)) = condition {
        let (n, v) = header(name, value)?;
        h.insert(n, v);
    }
    p.client
        .send("PUT", url, h, Bytes::from(body.to_string()))
        .await
}

/// What the server now holds after a successful PUT of `body` to `url`.
async fn written(
    p: &CarddavProvider,
    url: &Url,
    resp: &DavResponse,
    body: &str,
    card: &VCard,
) -> Result<Written, ProviderError> {
    let target = match resp.header(names::HEADER_LOCATION) {
        Some(loc) => url
            .join(loc)
            .map_err(|e| ProviderError::Protocol(format!("bad Location {loc}: {e}")))?,
        None => url.clone(),
    };
    let id = target.path().to_string();
    match resp.header(HEADER_ETAG) {
        // RFC 6352 §6.3.2.3: a server that changed the card sends no (strong) ETag.
        Some(etag) if !etag.starts_with("W/") => Ok(Written {
            id,
            etag: Some(etag.to_string()),
            card: cards::as_stored(body, card),
        }),
        _ => match get(p, &target).await? {
            Some((etag, stored)) => Ok(Written {
                id,
                etag,
                card: stored,
            }),
            None => Err(ProviderError::Protocol(format!(
                "{target} is gone right after it was written"
            ))),
        },
    }
}

async fn get(
    p: &CarddavProvider,
    url: &Url,
) -> Result<Option<(Option<String>, VCard)>, ProviderError> {
    let resp = p
        .client
        .send("GET", url, HeaderMap::new(), Bytes::new())
        .await?;
    if matches!(resp.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
        return Ok(None);
    }
    if !resp.status.is_success() {
        return Err(resp.error());
    }
    let card = cards::read_one(&String::from_utf8_lossy(&resp.body))
        .map_err(|e| ProviderError::Protocol(format!("{url}: {e}")))?;
    Ok(Some((resp.header(HEADER_ETAG).map(str::to_string), card)))
}

/// One item, freshly read.
pub async fn fetch(
    p: &CarddavProvider,
    target: &GroupRef,
    id: &str,
) -> Result<Option<RemoteItem>, ProviderError> {
    let url = card_url(&target.book, id)?;
    Ok(get(p, &url).await?.map(|(etag, card)| RemoteItem {
        id: url.path().to_string(),
        etag,
        card,
    }))
}

/// Creates a card (and, in a group sync group, makes it a member).
pub async fn create(
    p: &CarddavProvider,
    target: &GroupRef,
    card: &VCard,
    _crm_id: &str,
) -> Result<Written, ProviderError> {
    let (card, uid) = cards::ensure_uid(card);
    let url = card_url(&target.book, &cards::resource_name(&uid))?;
    let body = cards::serialize(&card, p.profile.write_version);
    let resp = put(
        p,
        &url,
        &body,
        Some((names::HEADER_IF_NONE_MATCH, ANY_ETAG)),
    )
    .await?;
    if !resp.status.is_success() {
        return Err(resp.error());
    }
    let w = written(p, &url, &resp, &body, &card).await?;
    if let Some(group) = &target.group_uid {
        add_member(p, &target.book, group, &uid).await?;
    }
    Ok(w)
}

async fn add_member(
    p: &CarddavProvider,
    book: &Url,
    group: &str,
    uid: &str,
) -> Result<(), ProviderError> {
    for _ in 0..GROUP_UPDATE_ATTEMPTS {
        let (href, etag, gcard) = group_card(p, book, group).await?;
        let Some(updated) = cards::with_member(&gcard, uid) else {
            return Ok(());
        };
        let url = card_url(book, &href)?;
        let body = cards::serialize(&updated, p.profile.write_version);
        let cond = etag.as_deref().map(|e| (names::HEADER_IF_MATCH, e));
        let resp = put(p, &url, &body, cond).await?;
        match resp.status {
            s if s.is_success() => return Ok(()),
            StatusCode::PRECONDITION_FAILED => continue,
            _ => return Err(resp.error()),
        }
    }
    Err(ProviderError::Conflict)
}

/// Replaces a card if its ETag is still `etag`.
pub async fn update(
    p: &CarddavProvider,
    target: &GroupRef,
    id: &str,
    etag: Option<&str>,
    card: &VCard,
) -> Result<Written, ProviderError> {
    let url = card_url(&target.book, id)?;
    if let (false, Some(expected)) = (p.profile.honours_if_match, etag) {
        if current_etag(p, &url).await?.as_deref() != Some(expected) {
            return Err(ProviderError::Conflict);
        }
    }
    let body = cards::serialize(card, p.profile.write_version);
    let cond = etag
        .filter(|_| p.profile.honours_if_match)
        .map(|e| (names::HEADER_IF_MATCH, e));
    let resp = put(p, &url, &body, cond).await?;
    if !resp.status.is_success() {
        return Err(resp.error());
    }
    written(p, &url, &resp, &body, card).await
}

/// Deletes a card if its ETag is still `etag`; an already absent card is fine.
pub async fn delete(
    p: &CarddavProvider,
    target: &GroupRef,
    id: &str,
    etag: Option<&str>,
) -> Result<(), ProviderError> {
    let url = card_url(&target.book, id)?;
    if let (false, Some(expected)) = (p.profile.honours_if_match, etag) {
        match current_etag(p, &url).await? {
            None => return Ok(()),
            Some(cur) if cur != expected => return Err(ProviderError::Conflict),
            Some(_) => {}
        }
    }
    let mut h = HeaderMap::new();
    if let Some(e) = etag.filter(|_| p.profile.honours_if_match) {
        let (n, v) = header(names::HEADER_IF_MATCH, e)?;
        h.insert(n, v);
    }
    let resp = p.client.send("DELETE", &url, h, Bytes::new()).await?;
    match resp.status {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND | StatusCode::GONE => Ok(()),
        _ => Err(resp.error()),
    }
}

async fn current_etag(p: &CarddavProvider, url: &Url) -> Result<Option<String>, ProviderError> {
    let resp = p
        .client
        .propfind(url, &Propfind::props(Depth::Zero, &[names::GETETAG]))
        .await?;
    if resp.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let ms = resp.multistatus()?;
    Ok(ms
        .responses
        .iter()
        .find_map(|r| r.prop_text(&names::GETETAG).map(str::to_string)))
}
