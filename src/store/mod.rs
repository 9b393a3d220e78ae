//! Persistent state behind the `Store` trait: sync cursors, item state, CRM records; the sled backend and the conformance suite.
