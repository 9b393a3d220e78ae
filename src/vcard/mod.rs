//! The vCard layer: reading 2.1/3.0/4.0, normalizing to vCard 4, writing 4.0 and 3.0, fingerprints. Pure: no tokio, no I/O.

pub use calcard::vcard::VCard;
