//! Shared scaffolding of the server tests and benches: a CRM with users over the in-memory
//! [`MemoryStore`].
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use cardbridge::crm::repo::{CrmConfig, NewUser};
use cardbridge::crm::Crm;
use cardbridge::store::memory::MemoryStore;

/// A CRM over a fresh [`MemoryStore`].
pub async fn crm() -> Arc<Crm> {
    Arc::new(
        Crm::open(Arc::new(MemoryStore::new()), CrmConfig::default())
            .await
            .unwrap(),
    )
}

/// A new user record.
pub fn user(login: &str, password: &str, role: Option<u64>) -> NewUser {
    NewUser {
        login: login.into(),
        name: login.into(),
        email: format!("{login}@example.com"),
        role_id: role,
        is_admin: false,
        password: password.into(),
    }
}
