//! Placeholder crate: the read model lands with its own issue.
