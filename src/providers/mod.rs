//! The `Provider` trait and one module per protocol: CardDAV, Google People, Microsoft Graph, EWS.
