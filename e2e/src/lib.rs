//! Holds only the end-to-end tests in `tests/mesh`.
