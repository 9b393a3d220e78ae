//! cardbridge keeps a CRM's persons and people's address books in sync.
//!
//! See `docs/ARCHITECTURE.md` for the layers; bottom up: [`vcard`] and [`dav`]
//! (pure), [`store`], [`crm`], [`providers`], [`sync`], [`server`], [`scheduler`].
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod cli;
pub mod config;
pub mod crm;
pub mod dav;
pub mod providers;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod sync;
pub mod vcard;
