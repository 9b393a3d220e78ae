//! The CardDAV server (RFC 6352 over RFC 4918, RFC 6578 sync, RFC 5397/3744 discovery
//! properties): CRM persons served as address books. The XML halves come from [`crate::dav`];
//! this module owns resources, access, state and the HTTP handlers.
//!
//! # Resources
//! - `/.well-known/carddav` redirects (301) to `/dav/` (RFC 6764 §5).
//! - `/dav/principals/{login}/` — the principal; `/dav/addressbooks/{login}/` — the home set.
//! - `/dav/addressbooks/{login}/persons/` — the built-in collection: exactly the persons that
//!   [`crate::crm::access`] lets the user view. Clients may MKCOL further collections in the home
//!   (vdirsyncer's suite does); such a collection holds the persons *created through it* (still
//!   filtered by visibility); DELETE removes the collection, never the persons.
//! - A user reaches only their own principal and home; any other login answers 404, exactly
//!   like a login that does not exist.
//!
//! # Hrefs
//! A person's href in a collection is the name its client chose when it PUT the card (kept per
//! user and collection in `carddav.names`/`carddav.hrefs`), else `crm-{person id}.vcf`. Names are
//! per user so that one user's names never collide with (or reveal) another's. Creating a card
//! at a `crm-{id}.vcf` name that does not resolve is refused (403) whatever the person's state,
//! so default names never clash with chosen ones and the answer reveals nothing.
//!
//! # Cards and ETags
//! A PUT maps the card to person fields ([`crate::crm::mapping::card_to_fields`]) and writes the
//! person and the client's card (`carddav.cards`) in ONE atomic batch with the CRM change entry.
//! GET serves the client's text *verbatim* while the person's fields are still those that PUT
//! produced; once the CRM changed a field, the CRM fields are merged into the client's card
//! ([`crate::crm::mapping::fields_to_card`]), so unmodeled properties survive either way.
//! The default representation is the version the client stored (4.0 for persons no client
//! wrote); `Accept: text/vcard; version=3.0|4.0` picks one. ETags are strong:
//! `"{id}-{version}"` for the default representation, `"{id}-{version}-v3|v4"` for the other.
//!
//! # Views, sync tokens and ctags
//! Each user has a materialized *view* (`carddav.member`: person → version they can see) and a
//! *view log* per collection (`carddav.vlog`: (seq, person) → in/out). Before answering, the
//! view is caught up with the CRM change log ([`crate::crm::Crm::changes_since`]):
//! - person events since the last catch-up: each touched person is re-evaluated with the one
//!   access function; a difference from the snapshot is logged at the event's sequence
//!   (O(changes));
//! - context events (a role, the role tree, an admin flag, a deleted user or the plan changed):
//!   the view is recomputed and the difference logged at the watermark (O(persons), only then).
//!
//! A sync token (and the ctag, which is the same string) is a position `(seq, person)` in the
//! user's own view log, so it changes only when *that user's* view changes; changes to persons
//! the user cannot see move neither. `sync-collection` reads the log after the token:
//! O(changes relevant to the user). A person that leaves the view (visibility, owner, followers,
//! role, role tree, plan) is reported 404; one that enters it is reported as added. A removal is
//! only ever logged for a person that was in the snapshot, so nothing reveals a person the user
//! never could see. With `limit`, the answer stops before the entry that would exceed it and the
//! 507 token is that exact log position, so nothing is skipped or lost. An initial sync lists
//! the snapshot (truncated listings get an `init` token that resumes after the last person and
//! then replays the log from where the listing started). Unknown tokens, or tokens ahead of the
//! view, get 403 `valid-sync-token`.
//!
//! # Access
//! Creating needs an authenticated user (every CRM user may add persons; they become the owner,
//! with the configured default visibility or the plan's narrowest). Updating and deleting need
//! [`crate::crm::can_edit`]. A person the user cannot view answers 404 everywhere (GET, PUT with
//! If-Match, DELETE, multiget, query, sync), exactly like one that does not exist.

pub mod data;
pub mod handlers;
pub mod paths;

use axum::Router;

use super::AppState;

/// RFC 4918 §10.1 / RFC 6352 §6.1 / RFC 5689 §3.1: the compliance classes this server
/// implements (no locking, so no class 2).
pub const DAV_CLASSES: &str = "1, 3, addressbook, extended-mkcol";
/// RFC 9110 §10.2.1 `Allow`: the methods of DAV resources.
pub const ALLOW: &str = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, REPORT, MKCOL";

/// The CardDAV routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", axum::routing::any(handlers::dispatch))
        .route("/{*path}", axum::routing::any(handlers::dispatch))
        .with_state(state)
}
