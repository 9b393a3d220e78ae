//! Admin and self-service endpoints: the caller (`/me`, password, app passwords), users,
//! roles (a tree) and the company plan. Password and app-password hashes are never returned;
//! an app password's secret is returned once, at creation, with its bearer token.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{bearer_token, Admin, Caller};
use super::error::{ApiError, Body};
use super::{ok, ok_with, ApiState};
use crate::crm::repo::NewUser;
use crate::crm::visibility::allowed_visibilities;
use crate::crm::{Company, Plan, Role, RoleId, User, UserId};

/// A user as the API shows it.
#[derive(Debug, Serialize)]
pub struct UserView {
    /// Id.
    pub id: UserId,
    /// Login.
    pub login: String,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Role.
    pub role_id: Option<RoleId>,
    /// Admin flag.
    pub is_admin: bool,
    /// App passwords (id, label, creation time).
    pub app_passwords: Vec<serde_json::Value>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id,
            login: u.login.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            role_id: u.role_id,
            is_admin: u.is_admin,
            app_passwords: u
                .app_passwords
                .iter()
                .map(|p| json!({"id": p.id, "label": p.label, "created": p.created}))
                .collect(),
        }
    }
}

/// `GET /me`.
pub async fn me(caller: Caller) -> Response {
    ok(UserView::from(&caller.user))
}

/// `{"password": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    /// The new password.
    pub password: String,
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < 8 {
        return Err(ApiError::unprocessable(
            "the password is too short",
            "use at least 8 characters",
        ));
    }
    Ok(())
}

/// `PUT /me/password`.
pub async fn set_my_password(
    State(st): State<ApiState>,
    caller: Caller,
    Body(input): Body<PasswordInput>,
) -> Result<Response, ApiError> {
    check_password(&input.password)?;
    st.core
        .crm
        .set_password(caller.user.id, input.password)
        .await?;
    st.auth.clear_cache();
    Ok(ok(json!({"id": caller.user.id})))
}

/// `{"label": "iPhone"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPasswordInput {
    /// What the user calls it.
    pub label: String,
}

async fn new_app_password(st: &ApiState, user: UserId, label: &str) -> Result<Response, ApiError> {
    if label.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "an app password needs a label",
            "give `label`, e.g. the device that will use it",
        ));
    }
    let created = st.core.crm.create_app_password(user, label.trim()).await?;
    Ok(ok_with(
        StatusCode::CREATED,
        json!({
            "id": created.record.id,
            "label": created.record.label,
            "created": created.record.created,
            "password": created.secret,
            "bearer_token": bearer_token(user, &created.secret),
            "note": "shown once: store it now",
        }),
    ))
}

/// `GET /me/app-passwords`.
pub async fn my_app_passwords(caller: Caller) -> Response {
    ok(UserView::from(&caller.user).app_passwords)
}

/// `POST /me/app-passwords`.
pub async fn create_my_app_password(
    State(st): State<ApiState>,
    caller: Caller,
    Body(input): Body<AppPasswordInput>,
) -> Result<Response, ApiError> {
    new_app_password(&st, caller.user.id, &input.label).await
}

async fn revoke(st: &ApiState, user: UserId, pid: &str) -> Result<Response, ApiError> {
    if !st.core.crm.revoke_app_password(user, pid).await? {
        return Err(ApiError::not_found(format!("app password {pid}")));
    }
    st.auth.clear_cache();
    Ok(ok(json!({"id": pid})))
}

/// `DELETE /me/app-passwords/{pid}`.
pub async fn revoke_my_app_password(
    State(st): State<ApiState>,
    caller: Caller,
    Path(pid): Path<String>,
) -> Result<Response, ApiError> {
    revoke(&st, caller.user.id, &pid).await
}

/// `POST /admin/users/{id}/app-passwords`.
pub async fn create_user_app_password(
    State(st): State<ApiState>,
    _admin: Admin,
    Path(id): Path<UserId>,
    Body(input): Body<AppPasswordInput>,
) -> Result<Response, ApiError> {
    new_app_password(&st, id, &input.label).await
}

/// `DELETE /admin/users/{id}/app-passwords/{pid}`.
pub async fn revoke_user_app_password(
    State(st): State<ApiState>,
    _admin: Admin,
    Path((id, pid)): Path<(UserId, String)>,
) -> Result<Response, ApiError> {
    revoke(&st, id, &pid).await
}

/// `GET /admin/users`.
pub async fn list_users(State(st): State<ApiState>, _admin: Admin) -> Result<Response, ApiError> {
    let users = st.core.crm.list_users().await?;
    Ok(ok(users.iter().map(UserView::from).collect::<Vec<_>>()))
}

/// A new user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    /// Login.
    pub login: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Role.
    pub role_id: Option<RoleId>,
    /// Admin flag.
    #[serde(default)]
    pub is_admin: bool,
    /// Password.
    pub password: String,
}

/// `POST /admin/users`.
pub async fn create_user(
    State(st): State<ApiState>,
    _admin: Admin,
    Body(input): Body<NewUserInput>,
) -> Result<Response, ApiError> {
    if input.login.trim().is_empty() || input.login.contains(':') {
        return Err(ApiError::unprocessable(
            "invalid login",
            "give a non-empty login without `:`",
        ));
    }
    check_password(&input.password)?;
    let u = st
        .core
        .crm
        .create_user(NewUser {
            login: input.login.trim().to_string(),
            name: input.name,
            email: input.email,
            role_id: input.role_id,
            is_admin: input.is_admin,
            password: input.password,
        })
        .await?;
    Ok(ok_with(StatusCode::CREATED, UserView::from(&u)))
}

/// `GET /admin/users/{id}`.
pub async fn get_user(
    State(st): State<ApiState>,
    _admin: Admin,
    Path(id): Path<UserId>,
) -> Result<Response, ApiError> {
    let u = st
        .core
        .crm
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    Ok(ok(UserView::from(&u)))
}

/// A user change; absent fields stay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Login.
    pub login: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Role (`null` removes it).
    pub role_id: Option<Option<RoleId>>,
    /// Admin flag.
    pub is_admin: Option<bool>,
}

/// `PATCH /admin/users/{id}`.
pub async fn update_user(
    State(st): State<ApiState>,
    Admin(admin): Admin,
    Path(id): Path<UserId>,
    Body(p): Body<UserPatch>,
) -> Result<Response, ApiError> {
    let crm = &st.core.crm;
    let mut u = crm
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    if id == admin.user.id && p.is_admin == Some(false) {
        return Err(ApiError::unprocessable(
            "you cannot remove your own admin flag",
            "let another admin do it",
        ));
    }
    if let Some(v) = p.login {
        u.login = v;
    }
    if let Some(v) = p.name {
        u.name = v;
    }
    if let Some(v) = p.email {
        u.email = v;
    }
    if let Some(v) = p.role_id {
        u.role_id = v;
    }
    if let Some(v) = p.is_admin {
        u.is_admin = v;
    }
    let u = crm.update_user(u).await?;
    Ok(ok(UserView::from(&u)))
}

/// `DELETE /admin/users/{id}`.
pub async fn delete_user(
    State(st): State<ApiState>,
    Admin(admin): Admin,
    Path(id): Path<UserId>,
) -> Result<Response, ApiError> {
    if id == admin.user.id {
        return Err(ApiError::unprocessable(
            "you cannot delete yourself",
            "let another admin do it",
        ));
    }
    st.core.crm.delete_user(id).await?;
    st.auth.clear_cache();
    Ok(ok(json!({"id": id})))
}

/// `PUT /admin/users/{id}/password`.
pub async fn set_user_password(
    State(st): State<ApiState>,
    _admin: Admin,
    Path(id): Path<UserId>,
    Body(input): Body<PasswordInput>,
) -> Result<Response, ApiError> {
    check_password(&input.password)?;
    st.core.crm.set_password(id, input.password).await?;
    st.auth.clear_cache();
    Ok(ok(json!({"id": id})))
}

/// `GET /admin/roles`: the roles, each with its parent.
pub async fn list_roles(State(st): State<ApiState>, _admin: Admin) -> Result<Response, ApiError> {
    let tree = st.core.crm.role_tree().await?;
    let roles: Vec<&Role> = tree.roles().collect();
    Ok(ok(roles))
}

/// A role to create or change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// Name.
    pub name: Option<String>,
    /// Parent role (`null`: a root).
    #[serde(alias = "parent")]
    pub parent_id: Option<Option<RoleId>>,
}

/// `POST /admin/roles`.
pub async fn create_role(
    State(st): State<ApiState>,
    _admin: Admin,
    Body(input): Body<RoleInput>,
) -> Result<Response, ApiError> {
    let name = input.name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "a role needs a name",
            "give `name`",
        ));
    }
    let r = st
        .core
        .crm
        .create_role(name.trim(), input.parent_id.flatten())
        .await?;
    Ok(ok_with(StatusCode::CREATED, r))
}

/// `PATCH /admin/roles/{id}`.
pub async fn update_role(
    State(st): State<ApiState>,
    _admin: Admin,
    Path(id): Path<RoleId>,
    Body(input): Body<RoleInput>,
) -> Result<Response, ApiError> {
    let crm = &st.core.crm;
    let mut r = crm
        .role_tree()
        .await?
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("role {id}")))?;
    if let Some(n) = input.name {
        r.name = n;
    }
    if let Some(p) = input.parent_id {
        r.parent = p;
    }
    Ok(ok(crm.update_role(r).await?))
}

/// `DELETE /admin/roles/{id}`.
pub async fn delete_role(
    State(st): State<ApiState>,
    _admin: Admin,
    Path(id): Path<RoleId>,
) -> Result<Response, ApiError> {
    st.core.crm.delete_role(id).await?;
    Ok(ok(json!({"id": id})))
}

/// `GET /company`: name, plan and the visibility settings the plan offers.
pub async fn company(State(st): State<ApiState>, _caller: Caller) -> Result<Response, ApiError> {
    let c = st.core.crm.company().await?;
    Ok(ok(json!({
        "name": c.name,
        "plan": c.plan,
        "visibility_options": allowed_visibilities(c.plan),
    })))
}

/// A company change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyInput {
    /// Name.
    pub name: Option<String>,
    /// Plan.
    pub plan: Option<String>,
}

/// `PUT /admin/company`.
pub async fn set_company(
    State(st): State<ApiState>,
    _admin: Admin,
    Body(input): Body<CompanyInput>,
) -> Result<Response, ApiError> {
    let mut c: Company = st.core.crm.company().await?;
    if let Some(n) = input.name {
        c.name = n;
    }
    if let Some(p) = input.plan {
        c.plan = match p.as_str() {
            "silver" => Plan::Silver,
            "gold" => Plan::Gold,
            "platinum" => Plan::Platinum,
            other => {
                return Err(ApiError::unprocessable(
                    format!("unknown plan `{other}`"),
                    "choose one of: silver, gold, platinum",
                ))
            }
        };
    }
    st.core.crm.set_company(c.clone()).await?;
    Ok(ok(json!({
        "name": c.name,
        "plan": c.plan,
        "visibility_options": allowed_visibilities(c.plan),
    })))
}
