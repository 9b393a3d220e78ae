//! The pure files of `src/providers/` that the provider fuzz targets compile, at the module
//! paths they name each other by (`crate::providers::graph::mapping`, `super::names`, …). The
//! HTTP halves (clients, `Provider` impls) stay out, so the instrumented build needs no tokio or
//! reqwest. A target using this module also declares `mod vcard` and `mod dav` at its root.
#![allow(dead_code, unused_imports, clippy::all)]

pub mod ews;
pub mod graph;

use crate::vcard::{VCard, VCardEntry};

/// `src/providers/mod.rs`'s `reattach_entries`, the one function of that file the mapping
/// files call (from `reattach_overflow`). That file declares the HTTP providers, so it cannot
/// be compiled here whole; this is the same seven-line body, kept in step by hand.
pub fn reattach_entries(remote: &VCard, overflow: impl IntoIterator<Item = VCardEntry>) -> VCard {
    let mut out = remote.clone();
    for entry in overflow {
        if !out.entries.contains(&entry) {
            out.entries.push(entry);
        }
    }
    out
}
