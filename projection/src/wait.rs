//! Read-your-writes: wait, by notification, until the read model has applied what a client
//! wrote.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::progress::Progress;
use crate::read_model::{ReadModel, ReadModelError};

/// Why a wait ended without the data.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Timed out.
    #[error(
        "the read model is behind: it has applied {have} but {wanted} was asked for; retry shortly"
    )]
    Behind {
        /// What is applied.
        have: u64,
        /// What was asked for.
        wanted: u64,
    },
    /// Storage failed.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// Waits until `course_id` is at `min_version` or later in the active generation.
pub async fn for_version<M: ReadModel>(
    model: &M,
    progress: &Progress,
    course_id: Uuid,
    min_version: u64,
    timeout: Duration,
) -> Result<(), WaitError> {
    let current = || async {
        let generation = model.generations().await?.active;
        Ok::<_, ReadModelError>(
            model.summary(generation, course_id).await?.map_or(0, |s| s.version),
        )
    };
    wait(progress, min_version, timeout, current, |a| a.has(course_id, min_version)).await
}

/// Waits until every event up to `min_position` is applied to the active generation.
pub async fn for_position<M: ReadModel>(
    model: &M,
    progress: &Progress,
    min_position: u64,
    timeout: Duration,
) -> Result<(), WaitError> {
    let current = || async {
        let generation = model.generations().await?.active;
        model.watermark(generation).await
    };
    wait(progress, min_position, timeout, current, |a| a.watermark >= min_position).await
}

async fn wait<F, Fut>(
    progress: &Progress,
    wanted: u64,
    timeout: Duration,
    current: F,
    relevant: impl Fn(&crate::progress::Applied) -> bool,
) -> Result<(), WaitError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, ReadModelError>>,
{
    // Subscribe first: a notice sent between the check and the subscription is not lost.
    let mut notices = progress.subscribe();
    let mut have = current().await?;
    if have >= wanted {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notice = tokio::time::timeout_at(deadline, notices.recv()).await;
        match notice {
            Err(_elapsed) => return Err(WaitError::Behind { have, wanted }),
            Ok(Ok(applied)) if !relevant(&applied) => continue,
            // Relevant notice, or we lagged behind the channel: look at the store again.
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => return Err(WaitError::Behind { have, wanted }),
        }
        have = current().await?;
        if have >= wanted {
            return Ok(());
        }
    }
}
