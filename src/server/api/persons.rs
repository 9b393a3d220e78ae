//! `/api/v1/persons`: create, read, update, delete and list with cursor paging. Every call
//! goes through [`crate::crm::access`] (via the CRM's access context): a person the caller
//! may not view answers 404, exactly like a missing one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ApiError, Body};
use super::{ok, ok_page, ok_with, ApiState};
use crate::crm::visibility::allowed_visibilities;
use crate::crm::{access, Acl, Address, LabeledValue, PersonFields, PersonId, UserId, Visibility};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 500;

/// `?cursor=&limit=`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Opaque cursor from `additional_data.pagination.next_cursor`.
    pub cursor: Option<String>,
    /// Page size (1..=500, default 100).
    pub limit: Option<usize>,
}

/// A person as the API takes it; on update, absent fields stay unchanged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    /// Full name.
    pub name: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Emails (`email` is accepted as Pipedrive spells it).
    #[serde(alias = "email")]
    pub emails: Option<Vec<LabeledValue>>,
    /// Phones (`phone` is accepted as Pipedrive spells it).
    #[serde(alias = "phone")]
    pub phones: Option<Vec<LabeledValue>>,
    /// Organization.
    pub org_name: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Addresses.
    pub addresses: Option<Vec<Address>>,
    /// Birthday.
    pub birthday: Option<Option<String>>,
    /// Notes.
    pub notes: Option<String>,
    /// URLs.
    pub urls: Option<Vec<String>>,
    /// Labels.
    pub labels: Option<Vec<String>>,
    /// Owner (admins only may set another user).
    pub owner_id: Option<UserId>,
    /// Followers.
    pub followers: Option<Vec<UserId>>,
    /// Visibility.
    pub visible_to: Option<Visibility>,
    /// For updates: the version the change is based on (412 when stale).
    pub version: Option<u64>,
}

impl PersonInput {
    fn apply(self, f: &mut PersonFields) {
        if let Some(v) = self.name {
            f.name = v;
        }
        if let Some(v) = self.first_name {
            f.first_name = v;
        }
        if let Some(v) = self.last_name {
            f.last_name = v;
        }
        if let Some(v) = self.emails {
            f.emails = v;
        }
        if let Some(v) = self.phones {
            f.phones = v;
        }
        if let Some(v) = self.org_name {
            f.org_name = v;
        }
        if let Some(v) = self.job_title {
            f.job_title = v;
        }
        if let Some(v) = self.addresses {
            f.addresses = v;
        }
        if let Some(v) = self.birthday {
            f.birthday = v;
        }
        if let Some(v) = self.notes {
            f.notes = v;
        }
        if let Some(v) = self.urls {
            f.urls = v;
        }
        if let Some(v) = self.labels {
            f.labels = v;
        }
        if f.name.trim().is_empty() {
            f.name = format!("{} {}", f.first_name.trim(), f.last_name.trim())
                .trim()
                .to_string();
        }
    }
}

fn parse_cursor(c: Option<&str>) -> Result<Option<PersonId>, ApiError> {
    match c {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            ApiError::bad_request(
                format!("invalid cursor {s:?}"),
                "pass the next_cursor of the previous page unchanged",
            )
        }),
    }
}

/// `GET /persons`.
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            format!("limit {limit} is out of range"),
            format!("use a limit from 1 to {MAX_LIMIT}"),
        ));
    }
    let crm = &st.core.crm;
    let ctx = crm.access_context().await?;
    let mut after = parse_cursor(q.cursor.as_deref())?;
    let mut out = Vec::new();
    let next = loop {
        let page = crm.list_persons(after, limit).await?;
        let mut last = after;
        let mut filled_at = None;
        for p in page.persons {
            last = Some(p.id);
            if access(&caller.user, &p.acl(), &ctx).view {
                out.push(p);
                if out.len() == limit {
                    filled_at = last;
                    break;
                }
            }
        }
        if let Some(at) = filled_at {
            // Only a cursor when something may follow.
            let more = crm.list_persons(Some(at), 1).await?;
            break (!more.persons.is_empty()).then_some(at);
        }
        match page.next_after {
            Some(n) => after = Some(n.max(last.unwrap_or(n))),
            None => break None,
        }
    };
    Ok(ok_page(out, next.map(|n| n.to_string()), limit))
}

/// `GET /persons/{id}`.
pub async fn get_one(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<PersonId>,
) -> Result<Response, ApiError> {
    let crm = &st.core.crm;
    let ctx = crm.access_context().await?;
    let p = crm
        .get_person_as(&caller.user, id, &ctx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("person {id}")))?;
    Ok(ok(p))
}

/// `POST /persons`.
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Body(input): Body<PersonInput>,
) -> Result<Response, ApiError> {
    let crm = &st.core.crm;
    let owner = input.owner_id.unwrap_or(caller.user.id);
    if owner != caller.user.id && !caller.user.is_admin {
        return Err(ApiError::forbidden(
            "only admins may create persons owned by another user",
            "leave owner_id out (you become the owner) or ask an admin",
        ));
    }
    if crm.get_user(owner).await?.is_none() {
        return Err(ApiError::unprocessable(
            format!("owner_id {owner} is not a user"),
            "give the id of an existing user",
        ));
    }
    let plan = crm.company().await?.plan;
    let visible_to = match input.visible_to {
        Some(v) => v,
        None => allowed_visibilities(plan)
            .first()
            .copied()
            .unwrap_or(Visibility::EntireCompany),
    };
    let acl = Acl {
        owner_id: owner,
        followers: input.followers.clone().unwrap_or_default(),
        visible_to,
    };
    let mut fields = PersonFields::default();
    input.apply(&mut fields);
    if fields.name.is_empty() {
        return Err(ApiError::unprocessable(
            "a person needs a name",
            "give `name`, or `first_name` and/or `last_name`",
        ));
    }
    let p = crm.create_person(fields, acl).await?;
    Ok(ok_with(StatusCode::CREATED, p))
}

/// `PATCH`/`PUT /persons/{id}`.
pub async fn update(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<PersonId>,
    Body(input): Body<PersonInput>,
) -> Result<Response, ApiError> {
    let crm = &st.core.crm;
    let ctx = crm.access_context().await?;
    let p = crm
        .get_person(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("person {id}")))?;
    let acc = access(&caller.user, &p.acl(), &ctx);
    if !acc.view {
        return Err(ApiError::not_found(format!("person {id}")));
    }
    if !acc.edit {
        return Err(ApiError::forbidden(
            format!("you may view person {id} but not change it"),
            "ask its owner or an admin",
        ));
    }
    let mut acl = p.acl();
    if let Some(owner) = input.owner_id {
        if owner != acl.owner_id && !caller.user.is_admin && caller.user.id != acl.owner_id {
            return Err(ApiError::forbidden(
                "only the owner or an admin may hand a person to another owner",
                "ask the owner or an admin",
            ));
        }
        if crm.get_user(owner).await?.is_none() {
            return Err(ApiError::unprocessable(
                format!("owner_id {owner} is not a user"),
                "give the id of an existing user",
            ));
        }
        acl.owner_id = owner;
    }
    if let Some(f) = &input.followers {
        acl.followers = f.clone();
    }
    if let Some(v) = input.visible_to {
        acl.visible_to = v;
    }
    let expected = input.version.unwrap_or(p.version);
    let mut fields = p.fields();
    input.apply(&mut fields);
    if fields.name.is_empty() {
        return Err(ApiError::unprocessable(
            "a person needs a name",
            "give `name`, or `first_name` and/or `last_name`",
        ));
    }
    let updated = crm.update_person(id, expected, fields, acl).await?;
    Ok(ok(updated))
}

/// `DELETE /persons/{id}`.
pub async fn remove(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<PersonId>,
) -> Result<Response, ApiError> {
    let crm = &st.core.crm;
    let ctx = crm.access_context().await?;
    let p = crm
        .get_person(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("person {id}")))?;
    let acc = access(&caller.user, &p.acl(), &ctx);
    if !acc.view {
        return Err(ApiError::not_found(format!("person {id}")));
    }
    if !acc.edit {
        return Err(ApiError::forbidden(
            format!("you may view person {id} but not delete it"),
            "ask its owner or an admin",
        ));
    }
    crm.delete_person(id, Some(p.version)).await?;
    Ok(ok(serde_json::json!({ "id": id })))
}
