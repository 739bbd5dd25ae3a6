//! The protobuf contracts of the course platform (`course.v1`), compiled with tonic, plus the
//! one place where protobuf messages and domain types are converted into each other.
//!
//! Use it as a client SDK: `course_proto::v1::course_command_service_client::CourseCommandServiceClient`.

pub mod affinity;
mod convert;

/// Generated messages, clients and servers of package `course.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("course.v1");
}

pub use convert::{PayloadError, timestamp};

/// Encoded `FileDescriptorSet` of every `course.v1` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("course_descriptor");
