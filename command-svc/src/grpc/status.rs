//! The one mapping from command-side errors to gRPC statuses.

use course_domain::ErrorKind;
use tonic::Status;

use crate::app::AppError;
use crate::store::StoreError;

impl From<AppError> for Status {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Domain(rule) => {
                let message = rule.to_string();
                match rule.kind() {
                    ErrorKind::NotFound => Status::not_found(message),
                    ErrorKind::AlreadyExists => Status::already_exists(message),
                    ErrorKind::PermissionDenied => Status::permission_denied(message),
                    ErrorKind::FailedPrecondition => Status::failed_precondition(message),
                }
            }
            err @ (AppError::VersionMismatch { .. } | AppError::TooMuchContention) => {
                Status::aborted(err.to_string())
            }
            err @ AppError::CommandIdReused(_) => Status::already_exists(err.to_string()),
            AppError::Unavailable(cause) => {
                tracing::warn!(error = %error_chain(cause.as_ref()), "event store unavailable");
                Status::unavailable("the event store is unavailable; retry later")
            }
            AppError::Unexpected(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "unexpected error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        crate::app::AppError::from(err).into()
    }
}

/// "outer: inner: innermost", for logs only.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
