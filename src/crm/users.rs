//! CRM users, roles (a tree), the company and its plan, and credentials: argon2 password
//! hashes and revocable app passwords.
//!
//! Pure data and CPU-only functions; storage lives in [`crate::crm::repo`].

use std::collections::{BTreeMap, BTreeSet};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::person::{RoleId, UserId};

/// Prefix of the stored hash of an app password (`$sha256$<hex>`).
///
/// App passwords are 32 random alphanumeric characters (≈190 bits), so a fast hash is as
/// safe as argon2 against guessing and keeps CardDAV Basic auth cheap on every request.
pub const APP_PASSWORD_HASH_PREFIX: &str = "$sha256$";

/// Length of a generated app password.
pub const APP_PASSWORD_LEN: usize = 32;

/// A CRM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The id, assigned by the repository.
    pub id: UserId,
    /// The login name (unique, used for HTTP Basic auth).
    pub login: String,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// The user's role, if any.
    pub role_id: Option<RoleId>,
    /// Admins see and edit every person.
    pub is_admin: bool,
    /// argon2 PHC string of the password.
    pub password_hash: String,
    /// Revocable app passwords.
    pub app_passwords: Vec<AppPassword>,
}

/// A revocable app password; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    /// Random id (UUID v4), used to revoke it.
    pub id: String,
    /// What the user called it ("iPhone").
    pub label: String,
    /// `$sha256$<hex>` of the secret.
    pub hash: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
}

/// A freshly created app password: the secret is shown to the user once and never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAppPassword {
    /// The stored record.
    pub record: AppPassword,
    /// The secret to show once.
    pub secret: String,
}

/// How a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// The account password.
    Password,
    /// The app password with this id.
    AppPassword(String),
}

/// Why a credential operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// argon2 refused to hash (parameters or salt); not caused by user input content.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The password is empty.
    #[error("the password must not be empty")]
    Empty,
}

/// Hashes a password with argon2id (default parameters) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    if password.is_empty() {
        return Err(CredentialError::Empty);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Verifies a password against a PHC string. An unparsable hash never verifies.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn app_password_hash(secret: &str) -> String {
    format!(
        "{APP_PASSWORD_HASH_PREFIX}{}",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

/// Constant-time byte comparison (length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl User {
    /// Adds a new app password and returns it with its secret (shown once).
    pub fn add_app_password(&mut self, label: &str, now: &str) -> NewAppPassword {
        let secret: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(APP_PASSWORD_LEN)
            .map(char::from)
            .collect();
        let record = AppPassword {
            id: uuid::Uuid::new_v4().to_string(),
            label: label.to_string(),
            hash: app_password_hash(&secret),
            created: now.to_string(),
        };
        self.app_passwords.push(record.clone());
        NewAppPassword { record, secret }
    }

    /// Revokes the app password with `id`; false when there was none.
    pub fn revoke_app_password(&mut self, id: &str) -> bool {
        let before = self.app_passwords.len();
        self.app_passwords.retain(|p| p.id != id);
        before != self.app_passwords.len()
    }

    /// Checks a secret against the account password, then the app passwords.
    pub fn verify(&self, secret: &str) -> Option<AuthMethod> {
        if secret.is_empty() {
            return None;
        }
        // App passwords first: they are cheap and the usual case for DAV clients.
        if secret.len() == APP_PASSWORD_LEN {
            let hash = app_password_hash(secret);
            if let Some(p) = self
                .app_passwords
                .iter()
                .find(|p| ct_eq(p.hash.as_bytes(), hash.as_bytes()))
            {
                return Some(AuthMethod::AppPassword(p.id.clone()));
            }
        }
        if verify_password(&self.password_hash, secret) {
            return Some(AuthMethod::Password);
        }
        None
    }
}

/// A role; roles form a tree through `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// The id, assigned by the repository.
    pub id: RoleId,
    /// Display name.
    pub name: String,
    /// The role directly above, or `None` for a root.
    pub parent: Option<RoleId>,
}

/// Why a role tree was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The role would be its own ancestor.
    #[error("role {role} cannot be placed under {parent}: that would make a cycle")]
    Cycle {
        /// The role being placed.
        role: RoleId,
        /// The requested parent.
        parent: RoleId,
    },
    /// The parent does not exist.
    #[error("role {role} names a parent {parent} that does not exist")]
    UnknownParent {
        /// The role being placed.
        role: RoleId,
        /// The missing parent.
        parent: RoleId,
    },
    /// The role does not exist.
    #[error("role {0} does not exist")]
    Unknown(RoleId),
    /// The role still has roles below it.
    #[error("role {0} still has roles below it")]
    HasChildren(RoleId),
}

/// The roles as a tree (a forest: several roots are allowed). Always acyclic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleTree {
    roles: BTreeMap<RoleId, Role>,
}

impl RoleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from roles in any order; refuses cycles and unknown parents.
    pub fn from_roles(roles: impl IntoIterator<Item = Role>) -> Result<Self, RoleError> {
        let tree = RoleTree {
            roles: roles.into_iter().map(|r| (r.id, r)).collect(),
        };
        for role in tree.roles.values() {
            if let Some(parent) = role.parent {
                if !tree.roles.contains_key(&parent) {
                    return Err(RoleError::UnknownParent {
                        role: role.id,
                        parent,
                    });
                }
                // Walking up from the parent must terminate without meeting the role.
                if tree.walk_up_meets(parent, role.id) {
                    return Err(RoleError::Cycle {
                        role: role.id,
                        parent,
                    });
                }
            }
        }
        Ok(tree)
    }

    /// True when walking up from `start` (inclusive) meets `target` or loops.
    fn walk_up_meets(&self, start: RoleId, target: RoleId) -> bool {
        let mut seen = BTreeSet::new();
        let mut cur = Some(start);
        while let Some(id) = cur {
            if id == target || !seen.insert(id) {
                return true;
            }
            cur = self.roles.get(&id).and_then(|r| r.parent);
        }
        false
    }

    /// Inserts or replaces a role (a re-parent); refuses a cycle or an unknown parent and then
    /// leaves the tree unchanged.
    pub fn upsert(&mut self, role: Role) -> Result<(), RoleError> {
        if let Some(parent) = role.parent {
            if !self.roles.contains_key(&parent) {
                return Err(RoleError::UnknownParent {
                    role: role.id,
                    parent,
                });
            }
            if self.walk_up_meets(parent, role.id) {
                return Err(RoleError::Cycle {
                    role: role.id,
                    parent,
                });
            }
        }
        self.roles.insert(role.id, role);
        Ok(())
    }

    /// Removes a leaf role; refuses a role that still has children.
    pub fn remove(&mut self, id: RoleId) -> Result<Role, RoleError> {
        if self.roles.values().any(|r| r.parent == Some(id)) {
            return Err(RoleError::HasChildren(id));
        }
        self.roles.remove(&id).ok_or(RoleError::Unknown(id))
    }

    /// The role with `id`.
    pub fn get(&self, id: RoleId) -> Option<&Role> {
        self.roles.get(&id)
    }

    /// All roles by id.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// True when `role` is `ancestor` or lies below it. A role id equal to `ancestor` is
    /// "same" even if the tree does not know it; otherwise unknown roles are below nothing.
    pub fn is_same_or_below(&self, role: RoleId, ancestor: RoleId) -> bool {
        let mut cur = Some(role);
        // The tree is acyclic, so the walk is bounded by its size.
        for _ in 0..=self.roles.len() {
            match cur {
                Some(id) if id == ancestor => return true,
                Some(id) => cur = self.roles.get(&id).and_then(|r| r.parent),
                None => return false,
            }
        }
        false
    }
}

/// The company's plan; it decides which visibility settings are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Offers `owner_followers` and `entire_company`.
    Silver,
    /// Offers `owner_followers` and `entire_company`.
    Gold,
    /// Offers `owner_only`, `owners_role`, `owners_role_and_below` and `entire_company`.
    Platinum,
}

impl Plan {
    /// The plan's name as the product shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Silver => "silver",
            Plan::Gold => "gold",
            Plan::Platinum => "platinum",
        }
    }
}

/// The company owning the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// Display name.
    pub name: String,
    /// The plan.
    pub plan: Plan,
}

impl Default for Company {
    fn default() -> Self {
        Company {
            name: String::new(),
            plan: Plan::Silver,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn role(id: RoleId, parent: Option<RoleId>) -> Role {
        Role {
            id,
            name: format!("r{id}"),
            parent,
        }
    }

    fn user() -> User {
        User {
            id: 1,
            login: "ann".into(),
            name: "Ann".into(),
            email: "ann@example.com".into(),
            role_id: None,
            is_admin: false,
            password_hash: hash_password("correct horse").unwrap(),
            app_passwords: vec![],
        }
    }

    #[test]
    fn password_hash_is_argon2_phc_and_verifies() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3creT"));
        assert!(!verify_password("not a phc string", "s3cret"));
        assert!(matches!(hash_password(""), Err(CredentialError::Empty)));
    }

    #[test]
    fn app_password_is_shown_once_verifies_and_revokes() {
        let mut u = user();
        let created = u.add_app_password("iPhone", "2025-01-01T00:00:00Z");
        assert_eq!(created.secret.len(), APP_PASSWORD_LEN);
        assert!(!u.app_passwords[0].hash.contains(&created.secret));
        assert!(u.app_passwords[0]
            .hash
            .starts_with(APP_PASSWORD_HASH_PREFIX));
        assert_eq!(
            u.verify(&created.secret),
            Some(AuthMethod::AppPassword(created.record.id.clone()))
        );
        assert_eq!(u.verify("correct horse"), Some(AuthMethod::Password));
        assert_eq!(u.verify("wrong"), None);
        assert_eq!(u.verify(""), None);
        assert!(u.revoke_app_password(&created.record.id));
        assert!(!u.revoke_app_password(&created.record.id));
        assert_eq!(u.verify(&created.secret), None);
    }

    #[test]
    fn two_app_passwords_differ() {
        let mut u = user();
        let a = u.add_app_password("a", "t");
        let b = u.add_app_password("b", "t");
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.record.id, b.record.id);
    }

    #[test]
    fn role_tree_same_or_below() {
        // 1 ─ 2 ─ 3 ;  1 ─ 4 ; 5 (separate root)
        let t = RoleTree::from_roles(vec![
            role(3, Some(2)),
            role(2, Some(1)),
            role(1, None),
            role(4, Some(1)),
            role(5, None),
        ])
        .unwrap();
        assert!(t.is_same_or_below(3, 3));
        assert!(t.is_same_or_below(3, 2));
        assert!(t.is_same_or_below(3, 1));
        assert!(t.is_same_or_below(4, 1));
        assert!(!t.is_same_or_below(1, 3), "above is not below");
        assert!(!t.is_same_or_below(4, 2), "sibling branch");
        assert!(!t.is_same_or_below(5, 1), "other root");
        assert!(!t.is_same_or_below(99, 1), "unknown role");
        assert!(t.is_same_or_below(99, 99));
    }

    #[test]
    fn role_tree_refuses_cycles_and_unknown_parents() {
        assert_eq!(
            RoleTree::from_roles(vec![role(1, Some(2)), role(2, Some(1))]).unwrap_err(),
            RoleError::Cycle { role: 1, parent: 2 }
        );
        assert!(matches!(
            RoleTree::from_roles(vec![role(1, Some(1))]),
            Err(RoleError::Cycle { .. })
        ));
        assert_eq!(
            RoleTree::from_roles(vec![role(1, Some(7))]).unwrap_err(),
            RoleError::UnknownParent { role: 1, parent: 7 }
        );
        let mut t =
            RoleTree::from_roles(vec![role(1, None), role(2, Some(1)), role(3, Some(2))]).unwrap();
        let before = t.clone();
        assert!(matches!(
            t.upsert(role(1, Some(3))),
            Err(RoleError::Cycle { role: 1, parent: 3 })
        ));
        assert_eq!(t, before, "a refused re-parent changes nothing");
        t.upsert(role(3, Some(1))).unwrap();
        assert!(!t.is_same_or_below(3, 2));
        assert_eq!(t.remove(1), Err(RoleError::HasChildren(1)));
        assert_eq!(t.remove(3).unwrap().id, 3);
        assert_eq!(t.remove(3), Err(RoleError::Unknown(3)));
    }
}
