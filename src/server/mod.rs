//! The HTTP service: `app(state)` with the CardDAV server, the REST API and the dashboard.
