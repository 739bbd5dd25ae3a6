//! The one gRPC server shell of the mesh: binding, reflection, health, drain on shutdown, and
//! the tower layers — request timeout, request size, concurrency per connection, load shedding,
//! metrics by known method, tracing and authorization — from one configuration struct
//! ([`ServerArgs`]). A service hands over its routes and its [`Policy`] (which method needs
//! which caller); everything else is here.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::auth::{AuthArgs, Authenticator, Identity};

/// Settings of the gRPC server shell. Every flag has an environment-variable fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// How bearer tokens are verified.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Longest a request may run before it is cancelled (milliseconds); a shorter client
    /// deadline (grpc-timeout) wins. Streams are bounded by their own idle limits instead.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,
    /// Largest accepted request message, in bytes.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,
    /// Requests one connection may have in flight (more wait).
    #[arg(long, env = "CONCURRENCY_LIMIT_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency_limit_per_connection: u64,
    /// Requests the whole server may have in flight; more are shed at once with
    /// RESOURCE_EXHAUSTED instead of queueing.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent_requests: u64,
    /// HTTP/2 keep-alive ping interval (seconds; 0 turns pings off): dead clients of long
    /// streams are noticed and their streams end.
    #[arg(long, env = "HTTP2_KEEPALIVE_INTERVAL_SECS", default_value_t = 30)]
    pub http2_keepalive_interval_secs: u64,
    /// How long a keep-alive ping may go unanswered before the connection is closed (seconds).
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http2_keepalive_timeout_secs: u64,
}

impl ServerArgs {
    /// The documented defaults with `auth` (tests and embedding).
    pub fn with_auth(auth: AuthArgs) -> Self {
        Self {
            auth,
            request_timeout_ms: 10_000,
            max_request_bytes: 64 * 1024,
            concurrency_limit_per_connection: 256,
            max_concurrent_requests: 2048,
            http2_keepalive_interval_secs: 30,
            http2_keepalive_timeout_secs: 10,
        }
    }
}

/// Who may call a method. Relationships (instructor of, participant in) are checked by the
/// handler, with the [`Identity`] this layer attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a token, when sent, must be valid and is attached.
    Public,
    /// A valid token.
    Authenticated,
    /// A valid token with one of these roles.
    Roles(&'static [&'static str]),
}

/// Which caller each method needs, by full path (`/package.Service/Method`). A method that is
/// not listed is not served (UNIMPLEMENTED), so a new RPC is closed until it is listed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    methods: HashMap<String, Access>,
}

impl Policy {
    /// No method.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists `methods` of `service` (`package.Service`) with `access`.
    pub fn service(mut self, service: &str, methods: &[&str], access: Access) -> Self {
        for method in methods {
            self.methods.insert(format!("/{service}/{method}"), access);
        }
        self
    }

    /// The access rule of a path, if the method is listed.
    pub fn access(&self, path: &str) -> Option<Access> {
        self.methods.get(path).copied()
    }

    /// Every listed path.
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.methods.keys()
    }

    /// Health and reflection: public.
    fn with_infrastructure(self) -> Self {
        self.service("grpc.health.v1.Health", &["Check", "Watch"], Access::Public)
            .service(
                "grpc.reflection.v1.ServerReflection",
                &["ServerReflectionInfo"],
                Access::Public,
            )
            .service(
                "grpc.reflection.v1alpha.ServerReflection",
                &["ServerReflectionInfo"],
                Access::Public,
            )
    }
}

/// The caller a request was authorized as (attached by the shell), if it sent a token.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Identity> {
    request.extensions().get::<Identity>()
}

/// The user a request was sent by: UNAUTHENTICATED without a token, PERMISSION_DENIED for a
/// token that names no user (a service).
pub fn user<T>(request: &tonic::Request<T>) -> Result<uuid::Uuid, Status> {
    caller(request)
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>` metadata"))?
        .user_id()
}

/// A bound server, not yet serving: its health reporter is usable (NOT_SERVING under every
/// name of the service until the service says otherwise).
pub struct GrpcServer {
    listener: TcpListener,
    args: ServerArgs,
    auth: Authenticator,
    health: HealthReporter,
    health_names: &'static [&'static str],
}

impl GrpcServer {
    /// Validates the settings (a bad verification key fails here) and binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        args: ServerArgs,
        health_names: &'static [&'static str],
    ) -> anyhow::Result<Self> {
        let auth = args.auth.authenticator()?;
        let listener =
            TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let health = HealthReporter::new();
        crate::grpc::set_health(&health, health_names, ServingStatus::NotServing).await;
        Ok(Self { listener, args, auth, health, health_names })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The health reporter of this server.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// The settings.
    pub fn args(&self) -> &ServerArgs {
        &self.args
    }

    /// Serves `routes` (plus health and reflection over `descriptor_sets`) under `policy`
    /// until `shutdown` resolves; then reports NOT_SERVING and drains in-flight calls.
    pub async fn serve(
        self,
        routes: Routes,
        policy: Policy,
        descriptor_sets: &[&[u8]],
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Self { listener, args, auth, health, health_names } = self;
        let policy = Arc::new(policy.with_infrastructure());
        let (reflection_v1, reflection_v1alpha) =
            crate::grpc::reflection_services(descriptor_sets)?;
        let routes = routes
            .add_service(HealthServer::new(HealthService::from_health_reporter(health.clone())))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let layers = tower::ServiceBuilder::new()
            .layer(crate::metrics::GrpcMetricsLayer::new(policy.paths().cloned()))
            .layer(ShedLayer::new(args.max_concurrent_requests as usize))
            .layer(AuthorizeLayer { auth: Arc::new(auth), policy })
            .into_inner();
        let keepalive = (args.http2_keepalive_interval_secs > 0)
            .then(|| Duration::from_secs(args.http2_keepalive_interval_secs));
        let drain = async move {
            shutdown.await;
            crate::grpc::set_health(&health, health_names, ServingStatus::NotServing).await;
            tracing::info!("draining in-flight calls");
        };
        Server::builder()
            .timeout(Duration::from_millis(args.request_timeout_ms))
            .concurrency_limit_per_connection(args.concurrency_limit_per_connection as usize)
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(Some(Duration::from_secs(args.http2_keepalive_timeout_secs)))
            .trace_fn(crate::grpc::request_span)
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(crate::grpc::incoming(listener), drain)
            .await
            .context("gRPC server failed")
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type HttpResponse = http::Response<Body>;

/// Sheds requests past a server-wide limit with RESOURCE_EXHAUSTED (no queueing).
#[derive(Debug, Clone)]
struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl ShedLayer {
    fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)) }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Shed { inner, permits: self.permits.clone() }
    }
}

#[derive(Debug, Clone)]
struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse> + Send,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!("server overloaded; shedding a request");
            let status = Status::resource_exhausted("the server is overloaded; retry later");
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(permit);
            response
        })
    }
}

/// Authenticates the bearer token (if any), attaches the [`Identity`] and applies the
/// [`Policy`] before a request reaches its service.
#[derive(Clone)]
struct AuthorizeLayer {
    auth: Arc<Authenticator>,
    policy: Arc<Policy>,
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize { inner, auth: self.auth.clone(), policy: self.policy.clone() }
    }
}

#[derive(Clone)]
struct Authorize<S> {
    inner: S,
    auth: Arc<Authenticator>,
    policy: Arc<Policy>,
}

impl<S> Authorize<S> {
    fn check<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let Some(access) = self.policy.access(request.uri().path()) else {
            return Err(Status::unimplemented("unknown method"));
        };
        let metadata = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
        let identity = self.auth.identify(&metadata)?;
        let allowed = match (access, &identity) {
            (Access::Public, _) => true,
            (_, None) => {
                return Err(Status::unauthenticated(
                    "missing `authorization: Bearer <token>` metadata",
                ));
            }
            (Access::Authenticated, Some(_)) => true,
            (Access::Roles(roles), Some(identity)) => roles.iter().any(|r| identity.has_role(r)),
        };
        if !allowed {
            return Err(Status::permission_denied("the caller's roles do not allow this call"));
        }
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity);
        }
        Ok(())
    }
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse> + Send,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.check(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}
