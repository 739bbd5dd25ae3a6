//! The read-side edge both query services share: which generation a read is served from (and
//! the answer while none is built), the `min_version` / `min_position` waits, the one paging
//! rule of the contract, the caller of an authenticated RPC, and the one mapping from a read's
//! failure to a gRPC status. A query service adds only its storage's reads and its RPCs.

use std::time::Duration;

use platform::auth::{AuthError, Identity};
use tonic::Status;
use uuid::Uuid;

use crate::progress::Progress;
use crate::read_model::{ReadModel, ReadModelError};
use crate::wait::{self, WaitError};

/// Page size when a request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page size (and `ListPopularCourses` limit) the contract allows: "1-100".
pub const MAX_PAGE_SIZE: u32 = 100;

/// The contract's paging rule: 0 asks for `default`, 1 to [`MAX_PAGE_SIZE`] is served as
/// asked, anything larger is refused (INVALID_ARGUMENT through [`platform::grpc::Violations`])
/// rather than quietly served smaller.
pub fn limit(raw: u32, default: u32) -> Result<u32, String> {
    match raw {
        0 => Ok(default),
        1..=MAX_PAGE_SIZE => Ok(raw),
        _ => Err(format!("must be 1-{MAX_PAGE_SIZE}, or 0 for {default} (got {raw})")),
    }
}

/// [`limit`] with [`DEFAULT_PAGE_SIZE`]: the `page_size` field of every list RPC.
pub fn page_size(raw: u32) -> Result<u32, String> {
    limit(raw, DEFAULT_PAGE_SIZE)
}

/// Why a read failed. Messages are safe to show the caller, except the storage's cause, which
/// is logged and replaced.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Malformed input; the status carries the field violations.
    #[error("{}", .0.message())]
    Invalid(Status),
    /// No such course in the served generation.
    #[error("course {0} not found")]
    CourseNotFound(Uuid),
    /// The caller may not see this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Missing or bad bearer token.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// No generation of the read model has been built yet (first start, or a flushed store):
    /// nothing can be answered truthfully, not even "not found".
    #[error("the read model is still being built; retry shortly")]
    NotBuilt,
    /// The read model did not reach `min_version` / `min_position` in time.
    #[error("{0}")]
    Behind(String),
    /// Storage failed.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

impl From<WaitError> for QueryError {
    fn from(err: WaitError) -> Self {
        match err {
            err @ WaitError::Behind { .. } => QueryError::Behind(err.to_string()),
            WaitError::ReadModel(err) => QueryError::ReadModel(err),
        }
    }
}

impl From<QueryError> for Status {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::Invalid(status) => status,
            err @ QueryError::CourseNotFound(_) => Status::not_found(err.to_string()),
            QueryError::PermissionDenied(message) => Status::permission_denied(message),
            QueryError::Unauthenticated(err) => err.into(),
            err @ QueryError::NotBuilt => Status::unavailable(err.to_string()),
            QueryError::Behind(message) => Status::unavailable(message),
            QueryError::ReadModel(ReadModelError::Unavailable(cause)) => {
                tracing::warn!(error = %format!("{cause:#}"), "read model unavailable");
                Status::unavailable("the read model is unavailable; retry later")
            }
            QueryError::ReadModel(ReadModelError::Unexpected(cause)) => {
                tracing::error!(error = %format!("{cause:#}"), "unexpected read model error");
                Status::internal("internal error")
            }
        }
    }
}

/// The caller the server shell authenticated; UNAUTHENTICATED when there is none (the
/// service's policy makes a token required for the RPCs that call this).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Identity, QueryError> {
    platform::server::caller(request)
        .cloned()
        .ok_or(QueryError::Unauthenticated(AuthError::Missing))
}

/// What every read RPC of a query service goes through before its storage's reads.
#[derive(Clone)]
pub struct ReadSide<M: ReadModel> {
    model: M,
    progress: Progress,
    wait_timeout: Duration,
}

impl<M: ReadModel> ReadSide<M> {
    /// Reads from `model`; `min_version` / `min_position` waits, woken through `progress`,
    /// give up after `wait_timeout`.
    pub fn new(model: M, progress: Progress, wait_timeout: Duration) -> Self {
        Self { model, progress, wait_timeout }
    }

    /// The storage.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The generation readers are served from; [`QueryError::NotBuilt`] before the first
    /// build has switched over.
    pub async fn active(&self) -> Result<u32, QueryError> {
        match self.model.generations().await?.active {
            0 => Err(QueryError::NotBuilt),
            generation => Ok(generation),
        }
    }

    /// Waits until `course` is at `min_version` or later (nothing to wait for: `None` or 0).
    /// A read model never built answers [`QueryError::NotBuilt`] at once, as without a wait.
    pub async fn wait_for_version(
        &self,
        course: Uuid,
        min_version: Option<u64>,
    ) -> Result<(), QueryError> {
        if let Some(min) = min_version.filter(|m| *m > 0) {
            self.active().await?;
            wait::for_version(&self.model, &self.progress, course, min, self.wait_timeout).await?;
        }
        Ok(())
    }

    /// Waits until every event up to `min_position` is applied (nothing to wait for: `None`
    /// or 0). A read model never built answers [`QueryError::NotBuilt`] at once.
    pub async fn wait_for_position(&self, min_position: Option<u64>) -> Result<(), QueryError> {
        if let Some(min) = min_position.filter(|m| *m > 0) {
            self.active().await?;
            wait::for_position(&self.model, &self.progress, min, self.wait_timeout).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_stop_at_the_contracts_maximum() {
        assert_eq!(page_size(0), Ok(20));
        assert_eq!(page_size(1), Ok(1));
        assert_eq!(page_size(100), Ok(100));
        assert!(page_size(101).is_err());
        assert_eq!(limit(0, 10), Ok(10));
        assert!(limit(u32::MAX, 10).is_err());
    }

    #[test]
    fn internal_error_text_never_reaches_the_client() {
        let err = ReadModelError::Unexpected(anyhow::anyhow!("secret connection string"));
        let status = Status::from(QueryError::from(err));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("secret"));
        let err = ReadModelError::Unavailable(anyhow::anyhow!("mongodb://user:pw@host"));
        let status = Status::from(QueryError::from(err));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("pw"));
    }

    #[test]
    fn behind_and_not_built_are_unavailable_with_the_reason() {
        let status = Status::from(QueryError::from(WaitError::Behind { have: 1, wanted: 3 }));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("behind"));
        let status = Status::from(QueryError::NotBuilt);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("being built"));
    }

    #[test]
    fn an_unknown_course_is_not_found_by_id() {
        let id = Uuid::nil();
        let status = Status::from(QueryError::CourseNotFound(id));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), format!("course {id} not found"));
    }
}
