//! The embedded CRM: persons, users, roles, the company plan, visibility, the repository over
//! [`crate::store::Store`] (with secondary indexes and the change log), and the vCard ↔ person
//! mapping.

pub mod mapping;
pub mod person;
pub mod repo;
pub mod users;
pub mod visibility;

pub use mapping::{CrmField, Direction, MappingConfig, MappingPreview};
pub use person::{
    Address, LabeledValue, Person, PersonFields, PersonId, RoleId, UserId, Visibility,
};
pub use repo::{view_delta, Change, ChangeEvent, Crm, CrmError, ViewDelta};
pub use users::{AppPassword, Company, Plan, Role, RoleTree, User};
pub use visibility::{access, can_edit, can_view, Access, AccessContext, Acl};
