//! Real tonic servers on 127.0.0.1 for the channel's tests, and a client for them. Messages
//! are written by hand with `prost` derives (there is no `protoc` here); the server routes as
//! tonic's generated code would.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use http::uri::PathAndQuery;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Status, client::GrpcService};
use tonic_prost::ProstCodec;
use tower::Service;

/// An idempotent read: the tests declare it so.
pub const GET: &str = "/test.Store/Get";
/// A write: never declared idempotent.
pub const CREATE: &str = "/test.Store/Create";
/// A server-streaming read: `Ping` in, `Pong`s out.
pub const WATCH: &str = "/test.Store/Watch";

/// `message Ping { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `message Pong { string from = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {
    #[prost(string, tag = "1")]
    pub from: String,
}

/// How a server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers every call.
    Healthy,
    /// Answers every unary call with UNAVAILABLE (trailers-only).
    Unavailable,
    /// Never answers.
    Stall,
    /// Streams one `Pong`, then ends with INTERNAL in the trailers.
    FailMidStream,
}

/// One `test.Store` server and what it saw.
#[derive(Clone)]
pub struct Store {
    pub name: &'static str,
    pub behaviour: Behaviour,
    /// Calls that reached the server's handler.
    pub calls: Arc<AtomicUsize>,
    /// The `grpc-timeout` of each call, as it arrived.
    pub timeouts: Arc<Mutex<Vec<String>>>,
    /// Woken when a call arrives.
    pub arrived: Arc<tokio::sync::Notify>,
}

impl Store {
    pub fn new(name: &'static str, behaviour: Behaviour) -> Self {
        Store {
            name,
            behaviour,
            calls: Arc::default(),
            timeouts: Arc::default(),
            arrived: Arc::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn arrive<T>(&self, request: &tonic::Request<T>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.timeouts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(timeout.clone());
        self.arrived.notify_one();
    }

    async fn unary(self, request: tonic::Request<Ping>) -> Result<tonic::Response<Pong>, Status> {
        self.arrive(&request);
        match self.behaviour {
            Behaviour::Unavailable => Err(Status::unavailable("draining")),
            Behaviour::Stall => std::future::pending().await,
            Behaviour::Healthy | Behaviour::FailMidStream => Ok(tonic::Response::new(Pong {
                from: self.name.into(),
            })),
        }
    }

    async fn watch(self, request: tonic::Request<Ping>) -> Result<tonic::Response<Items>, Status> {
        self.arrive(&request);
        let pong = Pong {
            from: self.name.into(),
        };
        let mut items = VecDeque::from([Ok(pong)]);
        if self.behaviour == Behaviour::FailMidStream {
            items.push_back(Err(Status::internal("lost the cursor")));
        }
        Ok(tonic::Response::new(Items(items)))
    }
}

/// A response stream of items known in advance.
pub struct Items(VecDeque<Result<Pong, Status>>);

impl futures_core::Stream for Items {
    type Item = Result<Pong, Status>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.pop_front())
    }
}

impl Service<http::Request<Body>> for Store {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let store = self.clone();
        Box::pin(async move {
            let codec: ProstCodec<Pong, Ping> = ProstCodec::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match req.uri().path() {
                GET | CREATE => {
                    let method = tower::service_fn(move |r| store.clone().unary(r));
                    grpc.unary(method, req).await
                }
                WATCH => {
                    let method = tower::service_fn(move |r| store.clone().watch(r));
                    grpc.server_streaming(method, req).await
                }
                other => Status::unimplemented(other.to_owned()).into_http(),
            })
        })
    }
}

impl NamedService for Store {
    const NAME: &'static str = "test.Store";
}

/// Serves `store` on 127.0.0.1, on a port the OS picks, until the test's runtime ends.
pub fn serve(store: Store) -> SocketAddr {
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = incoming.local_addr().expect("local address");
    let server = Server::builder()
        .add_service(store)
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    addr
}

/// An address where nothing listens, so connecting is refused (see `common::refusing_port`).
pub fn refusing() -> SocketAddr {
    super::common::refusing_port()
}

pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}")).expect("a valid URI")
}

/// A unary call to `path` through any channel, as a generated client makes it.
pub async fn unary<T>(
    channel: T,
    path: &'static str,
    request: tonic::Request<Ping>,
) -> Result<Pong, Status>
where
    T: GrpcService<Body>,
    T::Error: Into<meshless::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<meshless::BoxError>,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let path = PathAndQuery::from_static(path);
    grpc.unary(request, path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// A server-streaming call to `WATCH`: the replies, then how the stream ended.
pub async fn watch<T>(channel: T) -> (Vec<Pong>, Result<(), Status>)
where
    T: GrpcService<Body>,
    T::Error: Into<meshless::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<meshless::BoxError>,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return (Vec::new(), Err(Status::from_error(e.into())));
    }
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let path = PathAndQuery::from_static(WATCH);
    let request = tonic::Request::new(ping("watch"));
    let mut stream = match grpc.server_streaming(request, path, codec).await {
        Ok(res) => res.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut pongs = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(pong)) => pongs.push(pong),
            Ok(None) => return (pongs, Ok(())),
            Err(status) => return (pongs, Err(status)),
        }
    }
}

pub fn ping(name: &str) -> Ping {
    Ping { name: name.into() }
}
