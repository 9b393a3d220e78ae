//! The DAV layer shared by the CardDAV client and server: one XML layer, one file per operation with both halves. Pure: no tokio, no I/O.
