//! The DAV layer shared by the CardDAV client and server: one XML layer, one file per operation with both halves. Pure: no tokio, no I/O.

pub mod address_data;
pub mod discovery;
pub mod error;
pub mod mkcol;
pub mod multiget;
pub mod multistatus;
pub mod names;
pub mod prop;
pub mod propfind;
pub mod proppatch;
pub mod query;
pub mod sync_collection;
pub mod xml;
