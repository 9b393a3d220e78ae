//! The Google People API provider: sync groups from `contactGroups`, full and incremental
//! pulls of `people/me/connections` with sync tokens, group filtering via `memberships`, and
//! writes (`createContact`, `updateContact`, `deleteContact`).
//!
//! Cursor: an opaque JSON string. Between pages it carries the page token (and, when
//! incremental, the sync token the run started from, since Google wants every parameter of
//! the first call repeated); after the last page it is the `nextSyncToken`.
//!
//! Photos: reads stay `PHOTO` URIs (the `photos[].url` Google serves; providers.md §2). A write
//! compares the card's photo with the one Google holds (the engine's stored card, see
//! [`Provider::update_with_base`]): unchanged (the same URI Google gave us) sends nothing, so
//! a Google photo is never pushed back; new inline bytes go to
//! `people/{id}:updateContactPhoto` (base64 `photoBytes`), a removed photo to
//! `:deleteContactPhoto`; both answer the person, whose new etag and photo URL are what the
//! engine stores. A photo given by a foreign URI cannot be uploaded and is logged.
//!
//! Recovery: an expired sync token (HTTP 400 `FAILED_PRECONDITION`, reason
//! `EXPIRED_SYNC_TOKEN`, not 410) makes the provider drop the incremental run, pages
//! included, and answer with the first page of a fresh full listing
//! ([`PullKind::FullListing`]).

pub mod client;
pub mod mapping;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use self::client::{
    GoogleError, ListContactGroupsResponse, PeopleClient, Q_GROUP_FIELDS, Q_PAGE_SIZE,
    Q_PAGE_TOKEN, Q_PERSON_FIELDS, Q_REQUEST_SYNC_TOKEN, Q_SYNC_TOKEN, Q_UPDATE_PERSON_FIELDS,
};
use self::mapping::{
    person_to_vcard, update_person_fields, vcard_to_person, ContactGroupMembership, Membership,
    Person, PERSON_FIELDS,
};
use super::http::{AccessTokenSource, RetryPolicy};
use super::{
    Page, Provider, ProviderError, ProviderKind, PullKind, RemoteChange, RemoteItem, SyncGroup,
    SyncGroupKind, Written,
};
use crate::vcard::photo::{photo_change, PhotoChange};
use crate::vcard::VCard;

/// `people/{resourceName}:updateContactPhoto` (People API v1, `people.updateContactPhoto`).
pub const OP_UPDATE_CONTACT_PHOTO: &str = "updateContactPhoto";
/// `people/{resourceName}:deleteContactPhoto` (People API v1, `people.deleteContactPhoto`).
pub const OP_DELETE_CONTACT_PHOTO: &str = "deleteContactPhoto";
/// `UpdateContactPhotoRequest.photoBytes`: the image, base64.
pub const FIELD_PHOTO_BYTES: &str = "photoBytes";
/// `UpdateContactPhotoRequest.personFields`: the fields of the person in the answer.
pub const FIELD_PERSON_FIELDS: &str = "personFields";

/// The answer of `updateContactPhoto` / `deleteContactPhoto`.
#[derive(Debug, Deserialize)]
struct PhotoResponse {
    #[serde(default)]
    person: Option<Person>,
}

/// The system group holding every contact; pulling it applies no membership filter.
pub const GROUP_ALL: &str = "contactGroups/all";
/// The system group "My Contacts".
pub const GROUP_MY_CONTACTS: &str = "contactGroups/myContacts";
/// The system group "Starred".
pub const GROUP_STARRED: &str = "contactGroups/starred";
/// `groupType` of a user-made group.
pub const USER_CONTACT_GROUP: &str = "USER_CONTACT_GROUP";
/// `groupFields` we ask for.
pub const GROUP_FIELDS: &str = "name,groupType,memberCount,metadata";

/// How to reach and page through the People API.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// The API root (production: [`client::DEFAULT_BASE_URL`]).
    pub base_url: Url,
    /// `pageSize` for connections (1–1000).
    pub page_size: u32,
    /// Retry policy for throttling and server errors.
    pub retry: RetryPolicy,
}

impl GoogleConfig {
    /// Production settings with the largest page.
    pub fn production() -> Result<Self, ProviderError> {
        Ok(Self {
            base_url: Url::parse(client::DEFAULT_BASE_URL)
                .map_err(|e| ProviderError::Protocol(e.to_string()))?,
            page_size: 1000,
            retry: RetryPolicy::default(),
        })
    }
}

/// The persisted cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub enum Cursor {
    /// Next run: incremental from this sync token.
    Sync {
        /// `nextSyncToken` of the last page.
        sync_token: String,
    },
    /// Mid full listing.
    FullPage {
        /// `nextPageToken`.
        page_token: String,
    },
    /// Mid incremental run.
    IncrementalPage {
        /// The sync token the run started from (repeated on every page).
        sync_token: String,
        /// `nextPageToken`.
        page_token: String,
    },
}

impl Cursor {
    /// Parses a stored cursor.
    pub fn parse(s: &str) -> Result<Self, ProviderError> {
        serde_json::from_str(s).map_err(|e| ProviderError::Protocol(format!("bad cursor: {e}")))
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        // Serializing a plain enum of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The Google People provider for one account.
pub struct GoogleProvider {
    client: PeopleClient,
    config: GoogleConfig,
    /// Google asks for one mutation at a time per user.
    write_lock: tokio::sync::Mutex<()>,
}

impl GoogleProvider {
    /// A provider using `tokens` for bearer tokens.
    pub fn new(
        http: reqwest::Client,
        tokens: Arc<dyn AccessTokenSource>,
        config: GoogleConfig,
    ) -> Self {
        let client = PeopleClient::new(http, config.base_url.clone(), tokens, config.retry);
        Self {
            client,
            config,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The identical parameters of every connections call in a run.
    fn list_query(
        &self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut q = vec![
            (Q_PERSON_FIELDS, PERSON_FIELDS.to_string()),
            (
                Q_PAGE_SIZE,
                self.config.page_size.clamp(1, 1000).to_string(),
            ),
            (Q_REQUEST_SYNC_TOKEN, "true".to_string()),
        ];
        if let Some(s) = sync_token {
            q.push((Q_SYNC_TOKEN, s.to_string()));
        }
        if let Some(p) = page_token {
            q.push((Q_PAGE_TOKEN, p.to_string()));
        }
        q
    }

    async fn list_page(
        &self,
        group: &str,
        kind: PullKind,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<Page, GoogleError> {
        let resp = self
            .client
            .list_connections(&self.list_query(sync_token, page_token))
            .await?;
        let mut changes = Vec::with_capacity(resp.connections.len());
        for raw in resp.connections {
            let id = raw
                .get("resourceName")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let person: Person = match serde_json::from_value(raw) {
                Ok(p) => p,
                Err(e) => {
                    changes.push(RemoteChange::Invalid {
                        id,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if id.is_empty() {
                continue;
            }
            if person.is_deleted() {
                if kind == PullKind::Incremental {
                    changes.push(RemoteChange::Delete { id });
                }
                continue;
            }
            if !in_group(&person, group) {
                // Not (or no longer) in the sync group. In a full listing it is simply not
                // mentioned; incrementally it may have just left the group.
                if kind == PullKind::Incremental {
                    changes.push(RemoteChange::Delete { id });
                }
                continue;
            }
            changes.push(RemoteChange::Upsert(item(person, id)));
        }
        let (cursor, complete) = match (resp.next_page_token, resp.next_sync_token) {
            (Some(page_token), _) if !page_token.is_empty() => (
                Some(match sync_token {
                    Some(s) => Cursor::IncrementalPage {
                        sync_token: s.to_string(),
                        page_token,
                    },
                    None => Cursor::FullPage { page_token },
                }),
                false,
            ),
            (_, Some(sync_token)) => (Some(Cursor::Sync { sync_token }), true),
            // No sync token offered: the next run starts with a full listing again.
            (_, None) => (None, true),
        };
        Ok(Page {
            changes,
            kind,
            cursor: cursor.map(|c| c.encode()),
            complete,
        })
    }

    fn person_fields_query() -> Vec<(&'static str, String)> {
        vec![(Q_PERSON_FIELDS, PERSON_FIELDS.to_string())]
    }

    /// Brings Google's photo of `id` in line with `card`'s when it differs from `held`'s;
    /// the person Google answered when it wrote one.
    async fn write_photo(
        &self,
        id: &str,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<Option<Person>, ProviderError> {
        let resp: PhotoResponse = match photo_change(held, card) {
            PhotoChange::Unchanged => return Ok(None),
            PhotoChange::Unwritable(reason) => {
                tracing::warn!(contact = id, %reason, "contact photo not written to Google");
                return Ok(None);
            }
            PhotoChange::Set { bytes, .. } => {
                use base64::Engine as _;
                let body = serde_json::json!({
                    FIELD_PHOTO_BYTES: base64::prelude::BASE64_STANDARD.encode(bytes),
                    FIELD_PERSON_FIELDS: PERSON_FIELDS,
                });
                let url = self
                    .client
                    .url(&format!("{id}:{OP_UPDATE_CONTACT_PHOTO}"), &[])?;
                self.client
                    .call(Method::PATCH, url, Some(&body))
                    .await
                    .map_err(GoogleError::into_provider)?
            }
            PhotoChange::Remove => {
                let url = self.client.url(
                    &format!("{id}:{OP_DELETE_CONTACT_PHOTO}"),
                    &Self::person_fields_query(),
                )?;
                self.client
                    .call(Method::DELETE, url, None)
                    .await
                    .map_err(GoogleError::into_provider)?
            }
        };
        Ok(resp.person)
    }

    fn written(person: Person, fallback_id: &str) -> Written {
        let id = person
            .resource_name
            .clone()
            .unwrap_or_else(|| fallback_id.to_string());
        Written {
            id,
            etag: person.etag.clone(),
            card: person_to_vcard(&person),
        }
    }
}

fn in_group(person: &Person, group: &str) -> bool {
    group == GROUP_ALL || group.is_empty() || person.is_member_of(group)
}

fn item(person: Person, id: String) -> RemoteItem {
    RemoteItem {
        id,
        etag: person.etag.clone(),
        card: person_to_vcard(&person),
    }
}

fn to_json(p: &Person) -> Result<serde_json::Value, ProviderError> {
    serde_json::to_value(p).map_err(|e| ProviderError::Protocol(e.to_string()))
}

#[async_trait]
impl Provider for GoogleProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Google
    }

    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        let mut groups = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut q = vec![
                (Q_PAGE_SIZE, "1000".to_string()),
                (Q_GROUP_FIELDS, GROUP_FIELDS.to_string()),
            ];
            if let Some(p) = &page_token {
                q.push((Q_PAGE_TOKEN, p.clone()));
            }
            let url = self.client.url("contactGroups", &q)?;
            let resp: ListContactGroupsResponse = self
                .client
                .call(Method::GET, url, None)
                .await
                .map_err(GoogleError::into_provider)?;
            for g in resp.contact_groups {
                let user = g.group_type.as_deref() == Some(USER_CONTACT_GROUP);
                let writable = user
                    || g.resource_name == GROUP_MY_CONTACTS
                    || g.resource_name == GROUP_STARRED
                    || g.resource_name == GROUP_ALL;
                let name = g
                    .formatted_name
                    .or(g.name)
                    .unwrap_or_else(|| g.resource_name.clone());
                groups.push(SyncGroup {
                    id: g.resource_name,
                    name,
                    kind: SyncGroupKind::Group,
                    writable,
                });
            }
            match resp.next_page_token {
                Some(p) if !p.is_empty() => page_token = Some(p),
                _ => break,
            }
        }
        Ok(groups)
    }

    async fn pull(&self, group: &str, cursor: Option<&str>) -> Result<Page, ProviderError> {
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let result = match &cursor {
            None => {
                self.list_page(group, PullKind::FullListing, None, None)
                    .await
            }
            Some(Cursor::FullPage { page_token }) => {
                self.list_page(group, PullKind::FullListing, None, Some(page_token))
                    .await
            }
            Some(Cursor::Sync { sync_token }) => {
                self.list_page(group, PullKind::Incremental, Some(sync_token), None)
                    .await
            }
            Some(Cursor::IncrementalPage {
                sync_token,
                page_token,
            }) => {
                self.list_page(
                    group,
                    PullKind::Incremental,
                    Some(sync_token),
                    Some(page_token),
                )
                .await
            }
        };
        match result {
            Ok(page) => Ok(page),
            Err(GoogleError::ExpiredSyncToken) => {
                tracing::info!(group, "Google sync token expired; starting a full listing");
                self.list_page(group, PullKind::FullListing, None, None)
                    .await
                    .map_err(GoogleError::into_provider)
            }
            Err(e) => Err(e.into_provider()),
        }
    }

    async fn fetch(&self, group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError> {
        let person = self
            .client
            .get_person(id, PERSON_FIELDS)
            .await
            .map_err(GoogleError::into_provider)?;
        Ok(person
            .filter(|p| !p.is_deleted() && in_group(p, group))
            .map(|p| item(p, id.to_string())))
    }

    async fn create(
        &self,
        group: &str,
        card: &VCard,
        crm_id: &str,
    ) -> Result<Written, ProviderError> {
        let mut person = vcard_to_person(card);
        person
            .client_data
            .retain(|c| c.key != mapping::CLIENT_DATA_CRM_ID_KEY);
        person.client_data.push(mapping::ClientData {
            key: mapping::CLIENT_DATA_CRM_ID_KEY.to_string(),
            value: crm_id.to_string(),
            ..Default::default()
        });
        if !group.is_empty() && group != GROUP_ALL {
            person.memberships.push(Membership {
                contact_group_membership: Some(ContactGroupMembership {
                    contact_group_resource_name: Some(group.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let body = to_json(&person)?;
        let url = self
            .client
            .url("people:createContact", &Self::person_fields_query())?;
        let _guard = self.write_lock.lock().await;
        let created: Person = self
            .client
            .call(Method::POST, url, Some(&body))
            .await
            .map_err(GoogleError::into_provider)?;
        let Some(id) = created.resource_name.clone() else {
            return Err(ProviderError::Protocol(
                "createContact answered without resourceName".into(),
            ));
        };
        let created = self.write_photo(&id, None, card).await?.unwrap_or(created);
        Ok(Self::written(created, &id))
    }

    async fn update(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        self.update_with_base(group, id, etag, None, card).await
    }

    async fn update_with_base(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        let _guard = self.write_lock.lock().await;
        // Google rejects an update without an etag; without one from the engine we use the
        // current one (last writer wins, by the engine's choice).
        let etag = match etag {
            Some(e) => e.to_string(),
            None => self
                .client
                .get_person(id, PERSON_FIELDS)
                .await
                .map_err(GoogleError::into_provider)?
                .filter(|p| !p.is_deleted())
                .and_then(|p| p.any_etag().map(str::to_string))
                .ok_or(ProviderError::NotFound)?,
        };
        let _ = group;
        let mut person = vcard_to_person(card);
        person.resource_name = Some(id.to_string());
        person.etag = Some(etag);
        let mask = update_person_fields(&person);
        let body = to_json(&person)?;
        let mut q = vec![(Q_UPDATE_PERSON_FIELDS, mask)];
        q.extend(Self::person_fields_query());
        let url = self.client.url(&format!("{id}:updateContact"), &q)?;
        let updated: Person = self
            .client
            .call(Method::PATCH, url, Some(&body))
            .await
            .map_err(GoogleError::into_provider)?;
        let updated = self.write_photo(id, held, card).await?.unwrap_or(updated);
        Ok(Self::written(updated, id))
    }

    async fn delete(
        &self,
        _group: &str,
        id: &str,
        etag: Option<&str>,
    ) -> Result<(), ProviderError> {
        let _guard = self.write_lock.lock().await;
        // deleteContact takes no etag: check it first (a narrow race remains).
        if let Some(expected) = etag {
            let current = self
                .client
                .get_person(id, PERSON_FIELDS)
                .await
                .map_err(GoogleError::into_provider)?
                .filter(|p| !p.is_deleted())
                .ok_or(ProviderError::NotFound)?;
            if current.etag.as_deref() != Some(expected) {
                return Err(ProviderError::Conflict);
            }
        }
        let url = self.client.url(&format!("{id}:deleteContact"), &[])?;
        self.client
            .call_raw(Method::DELETE, url, None)
            .await
            .map_err(GoogleError::into_provider)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        for c in [
            Cursor::Sync {
                sync_token: "s:1|x".into(),
            },
            Cursor::FullPage {
                page_token: "p".into(),
            },
            Cursor::IncrementalPage {
                sync_token: "s".into(),
                page_token: "p".into(),
            },
        ] {
            assert_eq!(Cursor::parse(&c.encode()).unwrap(), c);
        }
        assert!(matches!(
            Cursor::parse("nope"),
            Err(ProviderError::Protocol(_))
        ));
    }
}
