//! meshless in front of tonic: three gRPC endpoints, one of which answers every call with
//! UNAVAILABLE, and a tonic client that never sees it fail.
//!
//! ```text
//! cargo run --example grpc --features tonic
//! ```
//!
//! The servers are ordinary tonic servers on 127.0.0.1 (ports the OS picks). The client is a
//! tonic client over `meshless::tonic::Channel`, which stacks, for every call:
//!
//! ```text
//! Deadline (2 s for the whole call, or the call's own grpc-timeout when shorter)
//!   Breaker → Retry (budgeted; SayHello is declared idempotent, so its UNAVAILABLE is retried)
//!     AttemptTimeout (500 ms per attempt; tells the server through grpc-timeout)
//!       Balance (P2C over peak-EWMA latency, failures and misses raise the cost, outlier ejection)
//!         one tonic Channel per endpoint, from the tonic Endpoint you give
//! ```
//!
//! For contrast, the same calls first go through tonic alone: one `Channel::balance_list` over
//! the same endpoints, which has no retries and no notion of a failing endpoint.
//!
//! There is no `protoc` here, so the messages are written by hand with `prost` derives, and the
//! server and client are the small structs tonic's code generator would have produced.

use bytes::Bytes;
use http::uri::PathAndQuery;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Status, client::GrpcService};
use tonic_prost::ProstCodec;
use tower::Service;

const CALLS: usize = 300;
const CONCURRENCY: usize = 8;
pub(crate) const SAY_HELLO: &str = "/demo.Greeter/SayHello";

/// `message HelloRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HelloRequest {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
}

/// `message HelloReply { string message = 1; string grpc_timeout = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HelloReply {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
    /// The `grpc-timeout` the server received: the caller's deadline, as it reached the server.
    #[prost(string, tag = "2")]
    pub(crate) grpc_timeout: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = [
        ("greeter-1", true),
        ("greeter-2", true),
        ("greeter-3", false), // answers every call with UNAVAILABLE
    ];
    let mut addrs = Vec::new();
    for (name, healthy) in endpoints {
        let addr = serve(Greeter { name, healthy })?;
        let role = if healthy { "healthy" } else { "UNAVAILABLE" };
        println!("{name} on {addr}: {role}");
        addrs.push((name, addr));
    }
    let endpoint = |addr: &SocketAddr| Endpoint::from_shared(format!("http://{addr}"));

    // The meshless channel: one tonic Channel per endpoint (connected on first use, with the
    // Endpoint's own settings) under meshless's layers. Every gRPC call is a POST, and an
    // UNAVAILABLE may come after the server acted, so it is retried only for methods declared
    // idempotent: SayHello only reads, as `option idempotency_level = NO_SIDE_EFFECTS;` would
    // say in the proto.
    let channel = meshless::tonic::Channel::builder()
        .endpoints(
            addrs
                .iter()
                .map(|(_, a)| endpoint(a))
                .collect::<Result<Vec<_>, _>>()?,
        )
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .idempotent_method(SAY_HELLO)
        .build()?;

    // For comparison, tonic on its own: one Channel balancing over the same three endpoints
    // (tower's P2C by pending requests), no retries.
    let plain = Channel::balance_list(
        addrs
            .iter()
            .map(|(_, a)| endpoint(a))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter(),
    );

    println!("\n{CALLS} unary calls to {SAY_HELLO}, {CONCURRENCY} at a time\n");
    let tonic_alone = run(GreeterClient::new(plain)).await?;
    let with_meshless = run(GreeterClient::new(channel.clone())).await?;

    // Every meshless attempt, first or retry, went through the balancer once: its counts are
    // the attempts the servers saw.
    let stats = channel.endpoints();
    let attempts: u64 = stats.iter().map(|e| e.requests).sum();
    println!("{:<20} {:>12} {:>16}", "", "tonic alone", "tonic+meshless");
    let row = |name: &str, a: String, b: String| println!("{name:<20} {a:>12} {b:>16}");
    row("calls sent", CALLS.to_string(), CALLS.to_string());
    row(
        "calls OK",
        tonic_alone.ok.to_string(),
        with_meshless.ok.to_string(),
    );
    row(
        "calls failed",
        tonic_alone.failed.to_string(),
        with_meshless.failed.to_string(),
    );
    row(
        "attempts per call",
        "1.000".into(),
        format!("{:.3}", attempts as f64 / CALLS as f64),
    );
    row(
        "retries",
        "-".into(),
        channel.retry_stats().retries().to_string(),
    );
    row(
        "elapsed",
        format!("{} ms", tonic_alone.elapsed.as_millis()),
        format!("{} ms", with_meshless.elapsed.as_millis()),
    );
    if let Some(status) = &tonic_alone.first_error {
        println!(
            "(tonic alone fails with {:?}: {:?})",
            status.code(),
            status.message()
        );
    }

    println!("\nthe meshless channel's endpoints:\n");
    println!(
        "{:<10} {:>9} {:>8} {:>9} {:>10}  status",
        "endpoint", "attempts", "share", "failures", "ejections"
    );
    for e in &stats {
        let name = addrs
            .iter()
            .find(|(_, a)| e.key.authority().map(|x| x.as_str()) == Some(a.to_string().as_str()))
            .map_or("?", |(name, _)| *name);
        println!(
            "{:<10} {:>9} {:>7.1}% {:>9} {:>10}  {:?}",
            name,
            e.requests,
            100.0 * e.requests as f64 / attempts.max(1) as f64,
            e.failures,
            e.ejections,
            e.status
        );
    }
    Ok(())
}

/// What one run of `CALLS` calls came to.
#[derive(Default)]
struct Outcome {
    ok: usize,
    failed: usize,
    first_error: Option<Status>,
    elapsed: Duration,
}

/// Sends `CALLS` calls through `client`, `CONCURRENCY` at a time.
async fn run<T>(client: GreeterClient<T>) -> Result<Outcome, tokio::task::JoinError>
where
    T: GrpcService<Body> + Clone + Send + 'static,
    T::Error: Into<meshless::BoxError>,
    T::Future: Send,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<meshless::BoxError>,
{
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let mut client = client.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            while next.fetch_add(1, Ordering::Relaxed) < CALLS {
                let request = HelloRequest {
                    name: "meshless".into(),
                };
                match client.say_hello(request).await {
                    Ok(_) => outcome.ok += 1,
                    Err(status) => {
                        outcome.failed += 1;
                        outcome.first_error.get_or_insert(status);
                    }
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(outcome) = workers.join_next().await {
        let outcome = outcome?;
        total.ok += outcome.ok;
        total.failed += outcome.failed;
        total.first_error = total.first_error.or(outcome.first_error);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// The client side.

/// What tonic's code generator would write for `service Greeter { rpc SayHello(..) }`: a
/// `tonic::client::Grpc` over any channel: tonic's own, or meshless's.
#[derive(Clone)]
pub(crate) struct GreeterClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: GrpcService<Body>,
    T::Error: Into<meshless::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<meshless::BoxError>,
{
    pub(crate) fn new(service: T) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::new(service),
        }
    }

    pub(crate) async fn say_hello(
        &mut self,
        request: HelloRequest,
    ) -> Result<tonic::Response<HelloReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("client not ready: {}", e.into())))?;
        let codec: ProstCodec<HelloRequest, HelloReply> = ProstCodec::default();
        let path = PathAndQuery::from_static(SAY_HELLO);
        self.inner
            .unary(tonic::Request::new(request), path, codec)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// The server side.

/// One `demo.Greeter` server. An unhealthy one still decodes each request (it is a real gRPC
/// server), then answers UNAVAILABLE: a trailers-only response, `grpc-status: 14` in the head.
#[derive(Clone)]
pub(crate) struct Greeter {
    pub(crate) name: &'static str,
    pub(crate) healthy: bool,
}

impl Greeter {
    async fn say_hello(
        self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, Status> {
        if !self.healthy {
            return Err(Status::unavailable("draining"));
        }
        let grpc_timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let message = format!("hello {}, from {}", request.get_ref().name, self.name);
        Ok(tonic::Response::new(HelloReply {
            message,
            grpc_timeout,
        }))
    }
}

/// The routing tonic's generated server does: one unary method, UNIMPLEMENTED for the rest.
impl Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let greeter = self.clone();
        Box::pin(async move {
            if req.uri().path() != SAY_HELLO {
                return Ok(Status::unimplemented(req.uri().path().to_owned()).into_http());
            }
            let codec: ProstCodec<HelloReply, HelloRequest> = ProstCodec::default();
            let method = tower::service_fn(move |r| greeter.clone().say_hello(r));
            Ok(tonic::server::Grpc::new(codec).unary(method, req).await)
        })
    }
}

impl NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

/// Serves one greeter on 127.0.0.1, on a port the OS picks, until the program ends.
pub(crate) fn serve(greeter: Greeter) -> std::io::Result<SocketAddr> {
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = incoming.local_addr()?;
    let server = Server::builder()
        .add_service(greeter)
        .serve_with_incoming(incoming);
    tokio::spawn(async move {
        if let Err(e) = server.await {
            eprintln!("server on {addr} stopped: {e}");
        }
    });
    Ok(addr)
}
