//! `src/providers/graph/`'s pure file: the Graph JSON ↔ vCard 4 mapping.

#[path = "../../../../src/providers/graph/mapping.rs"]
pub mod mapping;
