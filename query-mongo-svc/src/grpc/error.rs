//! The one mapping from query-side errors to gRPC statuses.

use platform::auth::AuthError;
use projection::ReadModelError;
use projection::wait::WaitError;
use tonic::Status;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input; the status carries the field violations.
    #[error("{}", .0.message())]
    Invalid(Status),
    /// No such course.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not see this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Missing or bad bearer token.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// No generation of the read model has been built yet.
    #[error("the read model is still being built")]
    NotBuilt,
    /// The read model did not catch up with `min_version`/`min_position` in time.
    #[error("{0}")]
    Behind(String),
    /// Storage failed.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

impl From<WaitError> for ApiError {
    fn from(err: WaitError) -> Self {
        match err {
            err @ WaitError::Behind { .. } => ApiError::Behind(err.to_string()),
            WaitError::ReadModel(err) => ApiError::ReadModel(err),
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Invalid(status) => status,
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::Unauthenticated(err) => err.into(),
            ApiError::NotBuilt => {
                Status::unavailable("the read model is still being built; retry shortly")
            }
            ApiError::Behind(message) => Status::unavailable(message),
            ApiError::ReadModel(ReadModelError::Unavailable(cause)) => {
                tracing::warn!(error = %format!("{cause:#}"), "read model unavailable");
                Status::unavailable("the read model is unavailable; retry later")
            }
            ApiError::ReadModel(ReadModelError::Unexpected(cause)) => {
                tracing::error!(error = %format!("{cause:#}"), "unexpected read model error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_error_text_never_reaches_the_client() {
        let err = ReadModelError::Unexpected(anyhow::anyhow!("secret connection string"));
        let status = Status::from(ApiError::from(err));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("secret"));
        let err = ReadModelError::Unavailable(anyhow::anyhow!("mongodb://user:pw@host"));
        let status = Status::from(ApiError::from(err));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("pw"));
    }

    #[test]
    fn a_read_model_that_is_behind_is_unavailable_with_the_reason() {
        let status = Status::from(ApiError::from(WaitError::Behind { have: 1, wanted: 3 }));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("behind"));
    }
}
