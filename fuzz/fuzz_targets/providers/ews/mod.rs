//! `src/providers/ews/`'s pure files: names, SOAP building and reading, the `t:Contact` mapping
//! and the Autodiscover readers (not `autodiscover.rs`, `client.rs` or the provider itself).

#[path = "../../../../src/providers/ews/autodiscover_parse.rs"]
pub mod autodiscover_parse;
#[path = "../../../../src/providers/ews/mapping.rs"]
pub mod mapping;
#[path = "../../../../src/providers/ews/names.rs"]
pub mod names;
#[path = "../../../../src/providers/ews/soap.rs"]
pub mod soap;
