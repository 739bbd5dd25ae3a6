//! The gRPC edge: `course.v1.CourseQueryService`, its input validation and status mapping.

mod error;
mod query;

pub use error::ApiError;
pub use query::CourseQueryApi;
