//! The sync engine: `reconcile` (pure) plans, `execute` applies the plan through a provider and the store.
