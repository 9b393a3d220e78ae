//! The DAV layer shared by the CardDAV client and server: one XML layer, one file per operation with both halves. Pure: no tokio, no I/O.

pub mod error;
pub mod names;
pub mod xml;
