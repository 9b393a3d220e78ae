//! The embedded CRM: persons, users, roles, the company plan, visibility, and the
//! vCard ↔ person mapping.

pub mod person;

pub use person::{Address, LabeledValue, Person, PersonId, RoleId, UserId, Visibility};
