//! Building rich gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Collects field violations while a request is validated.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Starts empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs a check; on failure records the violation for `field` and returns `None`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.0.push(FieldViolation::new(field, description));
                None
            }
        }
    }

    /// `Ok(())` when nothing was recorded, else INVALID_ARGUMENT with a `google.rpc.BadRequest`.
    pub fn finish(self) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let summary = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {summary}"),
            ErrorDetails::with_bad_request(self.0),
        ))
    }
}

/// INVALID_ARGUMENT for one field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let mut violations = Violations::new();
    violations.check::<()>(field, Err(description.into()));
    match violations.finish() {
        Err(status) => status,
        Ok(()) => Status::invalid_argument(field.to_owned()),
    }
}

/// Server reflection (v1 and the v1alpha that grpcurl 1.8 asks for) over our descriptor sets,
/// plus the health and `google.rpc` error-detail types so clients can decode them too.
pub fn reflection_services(
    descriptor_sets: &[&[u8]],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        for set in descriptor_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        builder
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// The span of one incoming gRPC call (used with tonic's `trace_fn`): named after the method,
/// and a child of the caller's W3C trace context when the request carries one.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
    );
    crate::propagation::set_parent_from_headers(&span, request.headers());
    span
}

/// The connections a gRPC server accepts on `listener`, with `TCP_NODELAY` on (tonic sets it
/// only for listeners it binds itself; without it small responses can wait for delayed ACKs)
/// and TCP keepalive, so that dead peers are noticed.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)))
}

/// Reports `status` under every name in `names` (`grpc.health.v1`).
pub async fn set_health(
    health: &tonic_health::server::HealthReporter,
    names: &[&str],
    status: tonic_health::ServingStatus,
) {
    for name in names {
        health.set_service_status(*name, status).await;
    }
}
