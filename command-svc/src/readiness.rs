//! Whether the event store is migrated and reachable: gates commands and drives health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared readiness flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// True once the schema is migrated.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// UNAVAILABLE while migrations have not run.
    pub fn check(&self) -> Result<(), tonic::Status> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(tonic::Status::unavailable(
                "the event store is not ready yet (PostgreSQL unreachable or migrations pending)",
            ))
        }
    }
}
