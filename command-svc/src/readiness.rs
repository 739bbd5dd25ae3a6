//! Whether the event store is migrated and reachable: gates commands, background work and
//! health.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared readiness flag that can also be awaited.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<watch::Sender<bool>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Readiness {
    /// Marks ready or not.
    pub fn set(&self, ready: bool) {
        self.0.send_if_modified(|current| std::mem::replace(current, ready) != ready);
    }

    /// True while the schema is migrated and the store answers.
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once ready.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// UNAVAILABLE while not ready.
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
