//! Who may view and edit a person: the plan's offered visibility settings and the ONE access
//! function ([`access`]) that every entry point (API, CardDAV server, sync push) must use.
//!
//! The table, exactly as the help article states it, for viewing and editing alike:
//!
//! | plan | setting | who can view and edit |
//! |---|---|---|
//! | Silver, Gold | `owner_followers` | the owner and the person's followers |
//! | Silver, Gold | `entire_company` | every user |
//! | Platinum | `owner_only` | the owner |
//! | Platinum | `owners_role` | users whose role is the owner's role |
//! | Platinum | `owners_role_and_below` | users whose role is the owner's role or below it |
//! | Platinum | `entire_company` | every user |
//!
//! Admins see and edit everything. The owner always sees and edits their own persons.
//!
//! **A stored setting the current plan does not offer** (after a downgrade or upgrade, or data
//! imported from another plan) is *never widened*: it is evaluated as `owner_only` (the owner
//! and admins), the narrowest rule, until someone picks an offered setting. The stored value is
//! kept unchanged, so moving back to a plan that offers it restores the original audience.
//! Writing such a setting is refused by [`check_allowed`]; keeping an existing one on update
//! is allowed (the repository only checks a *changed* setting).
//!
//! Role rules compare the owner's role (from [`AccessContext`]) with the viewer's role (from
//! the viewer's [`User`] record). A user without a role shares a role with nobody; an owner
//! missing from the context (deleted user) has no role.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::person::{Person, RoleId, UserId, Visibility};
use super::users::{Plan, RoleTree, User};

/// Settings offered on Silver and Gold.
const SILVER_GOLD: &[Visibility] = &[Visibility::OwnerFollowers, Visibility::EntireCompany];
/// Settings offered on Platinum.
const PLATINUM: &[Visibility] = &[
    Visibility::OwnerOnly,
    Visibility::OwnersRole,
    Visibility::OwnersRoleAndBelow,
    Visibility::EntireCompany,
];

impl Visibility {
    /// The setting's wire name (`owner_followers`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::OwnerFollowers => "owner_followers",
            Visibility::OwnerOnly => "owner_only",
            Visibility::OwnersRole => "owners_role",
            Visibility::OwnersRoleAndBelow => "owners_role_and_below",
            Visibility::EntireCompany => "entire_company",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The visibility settings `plan` offers, in the order the product lists them.
pub fn allowed_visibilities(plan: Plan) -> &'static [Visibility] {
    match plan {
        Plan::Silver | Plan::Gold => SILVER_GOLD,
        Plan::Platinum => PLATINUM,
    }
}

/// A visibility setting the plan does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "visibility `{requested}` is not offered on the {} plan; allowed: {}",
    plan.as_str(),
    join(allowed)
)]
pub struct VisibilityError {
    /// The company's plan.
    pub plan: Plan,
    /// The refused setting.
    pub requested: Visibility,
    /// What the plan offers.
    pub allowed: &'static [Visibility],
}

impl VisibilityError {
    /// HTTP status for API answers (422 Unprocessable Content).
    pub fn http_status(&self) -> u16 {
        422
    }
}

fn join(v: &[Visibility]) -> String {
    v.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
}

/// Refuses a setting that `plan` does not offer, listing the allowed ones.
pub fn check_allowed(plan: Plan, requested: Visibility) -> Result<(), VisibilityError> {
    let allowed = allowed_visibilities(plan);
    if allowed.contains(&requested) {
        Ok(())
    } else {
        Err(VisibilityError {
            plan,
            requested,
            allowed,
        })
    }
}

/// The setting that is actually enforced for a stored `visible_to` under `plan`: itself when
/// offered, otherwise `owner_only` (never wider; see the module doc).
pub fn effective_visibility(plan: Plan, stored: Visibility) -> Visibility {
    if allowed_visibilities(plan).contains(&stored) {
        stored
    } else {
        Visibility::OwnerOnly
    }
}

/// The access-relevant part of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owner.
    pub owner_id: UserId,
    /// Followers (meaningful for `owner_followers`).
    pub followers: Vec<UserId>,
    /// The stored setting.
    pub visible_to: Visibility,
}

impl From<&Person> for Acl {
    fn from(p: &Person) -> Self {
        Acl {
            owner_id: p.owner_id,
            followers: p.followers.clone(),
            visible_to: p.visible_to,
        }
    }
}

impl Person {
    /// The person's access-relevant fields.
    pub fn acl(&self) -> Acl {
        Acl::from(self)
    }
}

/// Everything besides the person and the viewer that access depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessContext {
    /// The company's current plan.
    pub plan: Plan,
    /// The role tree.
    pub roles: RoleTree,
    /// Every user's role (users absent from the map have no role).
    pub user_roles: BTreeMap<UserId, Option<RoleId>>,
}

impl AccessContext {
    /// The role of `user`, if known.
    pub fn role_of(&self, user: UserId) -> Option<RoleId> {
        self.user_roles.get(&user).copied().flatten()
    }
}

/// What a viewer may do with a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// May see it (GET, listings, sync).
    pub view: bool,
    /// May change or delete it.
    pub edit: bool,
}

impl Access {
    const NONE: Access = Access {
        view: false,
        edit: false,
    };
    const FULL: Access = Access {
        view: true,
        edit: true,
    };
}

/// THE access decision. The article grants viewing and editing together, so `view == edit`
/// today; the struct keeps the two apart so that a future rule can split them in one place.
pub fn access(viewer: &User, acl: &Acl, ctx: &AccessContext) -> Access {
    if viewer.is_admin || viewer.id == acl.owner_id {
        return Access::FULL;
    }
    let allowed = match effective_visibility(ctx.plan, acl.visible_to) {
        Visibility::EntireCompany => true,
        Visibility::OwnerOnly => false,
        Visibility::OwnerFollowers => acl.followers.contains(&viewer.id),
        Visibility::OwnersRole => match (viewer.role_id, ctx.role_of(acl.owner_id)) {
            (Some(mine), Some(owners)) => mine == owners,
            _ => false,
        },
        Visibility::OwnersRoleAndBelow => match (viewer.role_id, ctx.role_of(acl.owner_id)) {
            (Some(mine), Some(owners)) => ctx.roles.is_same_or_below(mine, owners),
            _ => false,
        },
    };
    if allowed {
        Access::FULL
    } else {
        Access::NONE
    }
}

/// May `viewer` see the person? (See [`access`].)
pub fn can_view(viewer: &User, acl: &Acl, ctx: &AccessContext) -> bool {
    access(viewer, acl, ctx).view
}

/// May `viewer` change or delete the person? (See [`access`].)
pub fn can_edit(viewer: &User, acl: &Acl, ctx: &AccessContext) -> bool {
    access(viewer, acl, ctx).edit
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crm::users::Role;

    // Role tree:  1 (sales lead) ─ 2 (sales) ─ 3 (junior sales)
    //             1 ─ 4 (support)
    //             5 (other root)
    // Users: 10 owner (role 2), 11 same role (2), 12 below (3), 13 above (1),
    //        14 sibling branch (4), 15 no role, 16 follower (role 5), 17 admin (no role),
    //        18 other root (5).
    const OWNER: UserId = 10;

    fn ctx(plan: Plan) -> AccessContext {
        let roles = RoleTree::from_roles(
            [
                (1, None),
                (2, Some(1)),
                (3, Some(2)),
                (4, Some(1)),
                (5, None),
            ]
            .map(|(id, parent)| Role {
                id,
                name: format!("r{id}"),
                parent,
            }),
        )
        .unwrap();
        let user_roles = users().into_iter().map(|u| (u.id, u.role_id)).collect();
        AccessContext {
            plan,
            roles,
            user_roles,
        }
    }

    fn u(id: UserId, role: Option<RoleId>, admin: bool) -> User {
        User {
            id,
            login: format!("u{id}"),
            name: format!("U{id}"),
            email: String::new(),
            role_id: role,
            is_admin: admin,
            password_hash: String::new(),
            app_passwords: vec![],
        }
    }

    fn users() -> Vec<User> {
        vec![
            u(10, Some(2), false),
            u(11, Some(2), false),
            u(12, Some(3), false),
            u(13, Some(1), false),
            u(14, Some(4), false),
            u(15, None, false),
            u(16, Some(5), false),
            u(17, None, true),
            u(18, Some(5), false),
        ]
    }

    fn acl(v: Visibility) -> Acl {
        Acl {
            owner_id: OWNER,
            followers: vec![16],
            visible_to: v,
        }
    }

    /// The ids of users who may view (and, checked alike, edit).
    fn audience(plan: Plan, v: Visibility) -> Vec<UserId> {
        let c = ctx(plan);
        let a = acl(v);
        users()
            .iter()
            .filter(|user| {
                let acc = access(user, &a, &c);
                assert_eq!(acc.view, acc.edit, "view and edit alike");
                assert_eq!(can_view(user, &a, &c), acc.view);
                assert_eq!(can_edit(user, &a, &c), acc.edit);
                acc.view
            })
            .map(|user| user.id)
            .collect()
    }

    #[test]
    fn allowed_sets_per_plan() {
        use Visibility::*;
        assert_eq!(
            allowed_visibilities(Plan::Silver),
            &[OwnerFollowers, EntireCompany]
        );
        assert_eq!(
            allowed_visibilities(Plan::Gold),
            &[OwnerFollowers, EntireCompany]
        );
        assert_eq!(
            allowed_visibilities(Plan::Platinum),
            &[OwnerOnly, OwnersRole, OwnersRoleAndBelow, EntireCompany]
        );
    }

    #[test]
    fn silver_gold_owner_followers_is_owner_followers_and_admin() {
        for plan in [Plan::Silver, Plan::Gold] {
            assert_eq!(
                audience(plan, Visibility::OwnerFollowers),
                vec![10, 16, 17],
                "{plan:?}"
            );
        }
    }

    #[test]
    fn every_plan_entire_company_is_everyone() {
        for plan in [Plan::Silver, Plan::Gold, Plan::Platinum] {
            assert_eq!(
                audience(plan, Visibility::EntireCompany),
                vec![10, 11, 12, 13, 14, 15, 16, 17, 18],
                "{plan:?}"
            );
        }
    }

    #[test]
    fn platinum_owner_only_is_owner_and_admin() {
        assert_eq!(
            audience(Plan::Platinum, Visibility::OwnerOnly),
            vec![10, 17],
            "the follower (16) does not see it"
        );
    }

    #[test]
    fn platinum_owners_role_is_same_role_only() {
        assert_eq!(
            audience(Plan::Platinum, Visibility::OwnersRole),
            vec![10, 11, 17],
            "below (12), above (13), sibling (14), no role (15), follower (16) excluded"
        );
    }

    #[test]
    fn platinum_owners_role_and_below_includes_lower_roles_only() {
        assert_eq!(
            audience(Plan::Platinum, Visibility::OwnersRoleAndBelow),
            vec![10, 11, 12, 17],
            "above (13) and the sibling branch (14) excluded"
        );
    }

    #[test]
    fn owner_without_role_shares_no_role() {
        let mut c = ctx(Plan::Platinum);
        c.user_roles.insert(OWNER, None);
        c.user_roles.insert(15, None);
        let roleless_owner = Acl {
            owner_id: OWNER,
            followers: vec![],
            visible_to: Visibility::OwnersRole,
        };
        let no_role = u(15, None, false);
        assert!(!can_view(&no_role, &roleless_owner, &c));
        // The owner still sees their own person.
        assert!(can_view(&u(OWNER, None, false), &roleless_owner, &c));
        // A deleted owner (absent from the context) has no role either.
        let orphan = Acl {
            owner_id: 999,
            followers: vec![],
            visible_to: Visibility::OwnersRoleAndBelow,
        };
        assert!(!can_view(&u(11, Some(2), false), &orphan, &c));
        assert!(can_view(&u(17, None, true), &orphan, &c));
    }

    #[test]
    fn admin_sees_everything_on_every_plan() {
        let admin = u(17, None, true);
        for plan in [Plan::Silver, Plan::Gold, Plan::Platinum] {
            for v in [
                Visibility::OwnerFollowers,
                Visibility::OwnerOnly,
                Visibility::OwnersRole,
                Visibility::OwnersRoleAndBelow,
                Visibility::EntireCompany,
            ] {
                assert_eq!(access(&admin, &acl(v), &ctx(plan)), Access::FULL);
            }
        }
    }

    #[test]
    fn refusal_lists_the_allowed_settings() {
        let e = check_allowed(Plan::Gold, Visibility::OwnersRole).unwrap_err();
        assert_eq!(
            e.to_string(),
            "visibility `owners_role` is not offered on the gold plan; \
             allowed: owner_followers, entire_company"
        );
        assert_eq!(e.http_status(), 422);
        let e = check_allowed(Plan::Platinum, Visibility::OwnerFollowers).unwrap_err();
        assert_eq!(
            e.to_string(),
            "visibility `owner_followers` is not offered on the platinum plan; \
             allowed: owner_only, owners_role, owners_role_and_below, entire_company"
        );
        for plan in [Plan::Silver, Plan::Gold, Plan::Platinum] {
            for v in allowed_visibilities(plan) {
                assert!(check_allowed(plan, *v).is_ok());
            }
        }
        assert!(check_allowed(Plan::Silver, Visibility::OwnerOnly).is_err());
        assert!(check_allowed(Plan::Silver, Visibility::OwnersRoleAndBelow).is_err());
    }

    #[test]
    fn settings_not_offered_by_the_plan_narrow_to_owner_only() {
        // Downgrade: Platinum role settings on Silver/Gold never widen to followers or roles.
        for plan in [Plan::Silver, Plan::Gold] {
            for v in [
                Visibility::OwnerOnly,
                Visibility::OwnersRole,
                Visibility::OwnersRoleAndBelow,
            ] {
                assert_eq!(audience(plan, v), vec![10, 17], "{plan:?} {v}");
                assert_eq!(effective_visibility(plan, v), Visibility::OwnerOnly);
            }
        }
        // Upgrade: owner_followers is not a Platinum setting; followers lose access.
        assert_eq!(
            audience(Plan::Platinum, Visibility::OwnerFollowers),
            vec![10, 17]
        );
        assert_eq!(
            effective_visibility(Plan::Platinum, Visibility::OwnersRole),
            Visibility::OwnersRole
        );
    }

    #[test]
    fn serde_names_match_the_article() {
        assert_eq!(
            serde_json::to_string(&Visibility::OwnersRoleAndBelow).unwrap(),
            "\"owners_role_and_below\""
        );
        for v in PLATINUM.iter().chain(SILVER_GOLD) {
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
        }
    }
}
