//! The embedded CRM: persons, users, roles, the company plan, visibility, and the vCard ↔ person mapping.
