//! The scheduler: runs each connection on its interval and on demand.
