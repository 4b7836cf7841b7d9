//! meshless under a real tonic client and real tonic servers on 127.0.0.1: a gRPC endpoint that
//! answers UNAVAILABLE (trailers-only, `grpc-status: 14`) is retried around and avoided.
//!
//! The messages and the generated-code equivalents are written by hand: there is no `protoc`.
//! Run with `cargo test --test grpc`.

use bytes::Bytes;
use http::uri::PathAndQuery;
use meshless::balance::{Balance, EndpointStats};
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer, grpc_timeout};
use meshless::retry::{ReplayBody, RetryLayer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder, ServiceExt};

const SAY_HELLO: &str = "/demo.Greeter/SayHello";
/// Generous limits: on a loaded CI machine a slow attempt must not turn into a failed call.
const DEADLINE: Duration = Duration::from_secs(10);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
    /// The `grpc-timeout` the server received, so the test can see the deadline arrive.
    #[prost(string, tag = "2")]
    grpc_timeout: String,
}

#[tokio::test]
async fn calls_route_around_an_unavailable_endpoint() {
    let bad = serve(Greeter::unavailable("bad"));
    let good_1 = serve(Greeter::healthy("good-1"));
    let good_2 = serve(Greeter::healthy("good-2"));

    let balance = Balance::builder().build();
    let retry = RetryLayer::new(Budget::default());
    let retry_stats = retry.stats();
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE))
        .layer(retry)
        .layer(AttemptTimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(balance.clone());
    let mut client = GreeterClient::new(service);

    // Warm-up, made deterministic: with the failing endpoint alone in the balancer, a call has
    // nowhere else to go. UNAVAILABLE is retryable even for a POST, so it is tried 1 + 2 times,
    // and then the caller gets the server's own status, untouched.
    balance.insert("bad", channel(bad));
    let status = client.say_hello("warm-up").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "draining");
    assert_eq!(retry_stats.requests(), 1);
    assert_eq!(retry_stats.retries(), 2);
    assert_eq!(retry_stats.retries_exhausted(), 1);
    let warm_up = stats(&balance, "bad");
    assert_eq!((warm_up.requests, warm_up.failures), (3, 3));

    // Now the healthy endpoints join, and 100 calls go out, 4 at a time.
    balance.insert("good-1", channel(good_1));
    balance.insert("good-2", channel(good_2));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut client = client.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut replies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < 100 {
                replies.push(client.say_hello("test").await);
            }
            replies
        });
    }
    let mut replies = Vec::new();
    while let Some(batch) = workers.join_next().await {
        replies.extend(batch.unwrap());
    }

    // Every call succeeded, and was answered by a healthy endpoint.
    assert_eq!(replies.len(), 100);
    let replies: Vec<HelloReply> = replies
        .into_iter()
        .map(|r| r.expect("every call succeeds").into_inner())
        .collect();
    for reply in &replies {
        assert!(
            reply.message == "hello test, from good-1"
                || reply.message == "hello test, from good-2",
            "{}",
            reply.message
        );
        // The per-attempt limit reached the server as `grpc-timeout`, never above the limit.
        let header = http::HeaderValue::from_str(&reply.grpc_timeout).unwrap();
        let limit = grpc_timeout::parse(&header).expect("a grpc-timeout on every attempt");
        assert!(limit <= ATTEMPT_TIMEOUT, "{limit:?}");
    }
    assert_eq!(retry_stats.requests(), 101);

    // The failing endpoint: every answer it gave was a failure, and after the warm-up taught the
    // balancer that, it got a small share of the 100 calls (none, unless the machine stalls the
    // healthy endpoints for a second) — or it was ejected.
    let bad = stats(&balance, "bad");
    assert!(bad.failures >= 3);
    assert_eq!(bad.failures, bad.requests);
    let after_warm_up = bad.requests - warm_up.requests;
    assert!(
        after_warm_up <= 10 || bad.ejections >= 1,
        "the failing endpoint got {after_warm_up} of 100 calls and was never ejected"
    );

    // The healthy endpoints failed nothing and served every call; any retry the calls needed
    // was one that met the failing endpoint.
    let good: Vec<_> = ["good-1", "good-2"]
        .into_iter()
        .map(|k| stats(&balance, k))
        .collect();
    assert!(good.iter().all(|e| e.failures == 0));
    assert_eq!(good.iter().map(|e| e.requests).sum::<u64>(), 100);
    assert_eq!(retry_stats.retries() - 2, after_warm_up);
}

fn stats(balance: &Balance<&'static str, Attempt>, key: &str) -> EndpointStats<&'static str> {
    balance
        .endpoints()
        .into_iter()
        .find(|e| e.key == key)
        .expect("the endpoint is in the balancer")
}

// ---------------------------------------------------------------------------------------------
// Client side: a tonic Channel per endpoint, adapted to the body the retry layer sends.

/// An endpoint as the balancer holds it.
type Attempt = tower::util::MapRequest<
    tonic::transport::Channel,
    fn(http::Request<ReplayBody<Body>>) -> http::Request<Body>,
>;

fn channel(addr: SocketAddr) -> Attempt {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    channel.map_request(into_tonic_body as fn(_) -> _)
}

/// The retry layer sends a replayable copy of tonic's body; the Channel takes only its own.
fn into_tonic_body(req: http::Request<ReplayBody<Body>>) -> http::Request<Body> {
    req.map(Body::new)
}

/// What tonic's code generator would write for the client of `demo.Greeter`.
#[derive(Clone)]
struct GreeterClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: GrpcService<Body>,
    T::Error: Into<meshless::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<meshless::BoxError>,
{
    fn new(service: T) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::new(service),
        }
    }

    async fn say_hello(&mut self, name: &str) -> Result<tonic::Response<HelloReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("client not ready: {}", e.into())))?;
        let request = tonic::Request::new(HelloRequest { name: name.into() });
        let codec: ProstCodec<HelloRequest, HelloReply> = ProstCodec::default();
        self.inner
            .unary(request, PathAndQuery::from_static(SAY_HELLO), codec)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Server side.

/// A `demo.Greeter` server; an unhealthy one answers UNAVAILABLE, which tonic sends
/// trailers-only (`grpc-status: 14` in the response head).
#[derive(Clone)]
struct Greeter {
    name: &'static str,
    healthy: bool,
}

impl Greeter {
    fn healthy(name: &'static str) -> Self {
        Greeter {
            name,
            healthy: true,
        }
    }

    fn unavailable(name: &'static str) -> Self {
        Greeter {
            name,
            healthy: false,
        }
    }

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

fn serve(greeter: Greeter) -> SocketAddr {
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = incoming.local_addr().unwrap();
    let server = Server::builder()
        .add_service(greeter)
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    addr
}
