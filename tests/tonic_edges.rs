//! `meshless::tonic::Channel` at the edges of its contracts, with real tonic servers (and a raw
//! socket) on 127.0.0.1: `https` endpoints, call timeouts against the deadline, stalled and
//! dropped streams, trailers, odd `grpc-timeout` metadata.
#![cfg(feature = "tonic")]

#[path = "tonic/support.rs"]
mod support;

mod common;

use bytes::Bytes;
use http::uri::PathAndQuery;
use meshless::backoff::Backoff;
use meshless::tonic::Channel;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use support::{Behaviour, CREATE, GET, Pong, Store, WATCH, endpoint, ping, serve, unary};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tonic::Code;
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_prost::ProstCodec;
use tower::Service;

/// The first bytes a channel given `endpoint` writes to the socket of its first call, and how
/// the call ended.
async fn first_bytes_of_call(endpoint: impl FnOnce(SocketAddr) -> Endpoint) -> (Vec<u8>, bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first_bytes = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 24];
        let mut got = 0;
        while got < buf.len() {
            match tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf[got..])).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => got += n,
            }
        }
        buf.truncate(got);
        buf
    });
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .deadline(Duration::from_millis(800))
        .metrics(false)
        .build()
        .unwrap();
    let mut request = tonic::Request::new(ping("secret"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cr3t".parse().unwrap());
    let failed = unary(channel, GET, request).await.is_err();
    let bytes = tokio::time::timeout(Duration::from_secs(5), first_bytes)
        .await
        .expect("the server task ended")
        .unwrap();
    (bytes, failed)
}

/// Contract: `https` is TLS or an error, never clear text. An `https://` endpoint with no TLS
/// settings: the call fails, and nothing (no HTTP/2 preface, no metadata) reaches the socket.
/// (tonic without its TLS compiled in wrote `PRI * HTTP/2.0` and the metadata in clear text.)
#[tokio::test]
async fn an_https_endpoint_without_tls_settings_gets_nothing() {
    let (bytes, failed) =
        first_bytes_of_call(|addr| Endpoint::from_shared(format!("https://{addr}")).unwrap()).await;
    assert!(failed);
    assert!(
        bytes.is_empty(),
        "an https endpoint got bytes without TLS: {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

/// An endpoint whose scheme is spelled `HTTPS` (kept so by `http::Uri::builder`) would get
/// its calls in clear text from tonic, which speaks TLS only to `https`: the channel refuses
/// it, at build and at insert, naming `endpoints`.
#[tokio::test]
async fn an_endpoint_with_a_scheme_tonic_would_not_encrypt_is_refused() {
    let uri = || {
        http::Uri::builder()
            .scheme("HTTPS")
            .authority("127.0.0.1:9")
            .path_and_query("/")
            .build()
            .unwrap()
    };
    let err = Channel::builder()
        .endpoint(Endpoint::from(uri()))
        .build()
        .expect_err("a scheme tonic would send in clear text");
    assert_eq!(err.setting(), "endpoints", "{err}");
    let channel = Channel::builder()
        .endpoint(Endpoint::from_shared("http://127.0.0.1:9").unwrap())
        .build()
        .unwrap();
    let err = channel
        .insert(Endpoint::from(uri()))
        .expect_err("refused at insert too");
    assert_eq!(err.setting(), "endpoints", "{err}");
}

/// With tonic's TLS settings, an `https://` endpoint gets a TLS handshake: a record of type
/// 22 (handshake), version 3.x.
#[tokio::test]
async fn an_https_endpoint_with_tls_settings_gets_a_tls_handshake() {
    let (bytes, failed) = first_bytes_of_call(|addr| {
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tonic::transport::ClientTlsConfig::new().domain_name("localhost"))
            .unwrap()
    })
    .await;
    // The listener never answers the handshake.
    assert!(failed);
    assert!(
        bytes.len() >= 3 && bytes[0] == 0x16 && bytes[1] == 0x03,
        "not a TLS handshake: {bytes:?}"
    );
}

/// A TLS handshake the server ends (it reads the ClientHello and closes) is a connect failure:
/// no byte of the call left, so even a method not declared idempotent is sent again, as the
/// http client does (README: "connect failure | every request").
#[tokio::test]
async fn a_failed_tls_handshake_is_never_sent_and_retried_for_any_method() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            // The ClientHello, then the close.
            let _ = tcp.read(&mut [0u8; 4096]).await;
        }
    });
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().domain_name("localhost"))
        .unwrap();
    let channel = Channel::builder()
        .endpoint(endpoint)
        .backoff(Backoff::none())
        .deadline(Duration::from_secs(5))
        .metrics(false)
        .build()
        .unwrap();
    let out = unary(channel.clone(), CREATE, tonic::Request::new(ping("x"))).await;
    let status = out.expect_err("no server to answer");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The first attempt and the default two retries, each on a new connection.
    assert_eq!(connections.load(Ordering::SeqCst), 3, "{status:?}");
}

/// Contract: deadlines are never extended. A call's own timeout longer than the channel's
/// deadline: the server is told at most the channel's deadline.
#[tokio::test]
async fn a_longer_call_timeout_does_not_extend_the_channel_deadline() {
    let store = Store::new("healthy", Behaviour::Healthy);
    let addr = serve(store.clone());
    let deadline = Duration::from_millis(500);
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .deadline(deadline)
        .metrics(false)
        .build()
        .unwrap();
    let mut request = tonic::Request::new(ping("x"));
    request.set_timeout(Duration::from_secs(60));
    unary(channel, GET, request).await.unwrap();
    let told = store.timeouts.lock().unwrap()[0].clone();
    let told = common::grpc_timeout(&told).unwrap_or_else(|| panic!("no grpc-timeout: {told:?}"));
    assert!(
        told <= deadline,
        "the server was told {told:?}, above the {deadline:?} deadline"
    );
}

/// A `test.Store` whose `Watch` sends one message and then neither sends nor ends.
#[derive(Clone, Default)]
struct StallMidStream {
    calls: Arc<AtomicUsize>,
}

struct OneThenPending(bool);

impl futures_core::Stream for OneThenPending {
    type Item = Result<Pong, tonic::Status>;
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.0 {
            self.0 = true;
            return Poll::Ready(Some(Ok(Pong { from: "one".into() })));
        }
        Poll::Pending
    }
}

impl Service<http::Request<Body>> for StallMidStream {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let calls = self.calls.clone();
        Box::pin(async move {
            let codec: ProstCodec<Pong, support::Ping> = ProstCodec::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            let method = tower::service_fn(move |_r: tonic::Request<support::Ping>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, tonic::Status>(tonic::Response::new(OneThenPending(false))) }
            });
            Ok(grpc.server_streaming(method, req).await)
        })
    }
}

impl NamedService for StallMidStream {
    const NAME: &'static str = "test.Store";
}

fn serve_stall_mid_stream(store: StallMidStream) -> SocketAddr {
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(store)
            .serve_with_incoming(incoming),
    );
    addr
}

async fn open_watch(
    channel: Channel,
    timeout: Option<Duration>,
) -> Result<tonic::Streaming<Pong>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::from_error(e.into()))?;
    let codec: ProstCodec<support::Ping, Pong> = ProstCodec::default();
    let mut request = tonic::Request::new(ping("watch"));
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    grpc.server_streaming(request, PathAndQuery::from_static(WATCH), codec)
        .await
        .map(tonic::Response::into_inner)
}

/// Contract: deadlines cover the response body. A stream that sends its head and one message
/// then stalls is cut at the call's deadline with DEADLINE_EXCEEDED.
#[tokio::test]
async fn a_stream_stalled_after_its_head_is_cut_at_the_deadline() {
    let store = StallMidStream::default();
    let addr = serve_stall_mid_stream(store.clone());
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .deadline(Duration::from_secs(30))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let mut stream = open_watch(channel.clone(), Some(timeout)).await.unwrap();
    assert!(
        stream.message().await.unwrap().is_some(),
        "the first message"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stalled stream was cut within 5 s");
    let took = started.elapsed();
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(took >= timeout, "cut early: {took:?}");
    assert!(
        took < timeout + Duration::from_millis(300),
        "cut late: {took:?}"
    );
    assert_eq!(store.calls.load(Ordering::SeqCst), 1);
}

/// Contract: cancellation (dropping the body) is never an endpoint's failure, and a request
/// ends once.
#[tokio::test]
async fn dropping_a_stream_midway_is_not_a_failure() {
    let store = StallMidStream::default();
    let addr = serve_stall_mid_stream(store.clone());
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..6 {
        let mut stream = open_watch(channel.clone(), None).await.unwrap();
        assert!(stream.message().await.unwrap().is_some());
        drop(stream);
    }
    tokio::task::yield_now().await;
    let e = &channel.endpoints()[0];
    assert_eq!(e.failures, 0, "{e:?}");
    assert_eq!(e.in_flight, 0, "{e:?}");
    assert_eq!(e.status, meshless::outlier::Status::Active, "{e:?}");
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0);
    assert_eq!(r.requests(), 6);
}

/// Contract: nothing that may have reached the server is sent again unless safe, and never
/// after the caller has seen part of the answer. An idempotent stream that fails with
/// UNAVAILABLE in its trailers after a message is not retried, and counts once as a failure.
#[tokio::test]
async fn an_idempotent_stream_failing_in_its_trailers_is_not_retried() {
    let failing = Store::new("failing", Behaviour::FailMidStream);
    let addr = serve(failing.clone());
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(WATCH)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let (pongs, end) = support::watch(channel.clone()).await;
    assert_eq!(pongs.len(), 1);
    assert_eq!(end.unwrap_err().code(), Code::Internal);
    assert_eq!(failing.calls(), 1);
    let r = channel.retry_stats();
    assert_eq!((r.requests(), r.failures(), r.retries()), (1, 1, 0));
    let _ = Bytes::new();
}

/// Contract: no panics on any input, deadlines never extended. A caller's own `grpc-timeout`
/// metadata with odd values: the call ends (an answer or a typed status), and the server is
/// never told more than the channel's deadline.
#[tokio::test]
async fn odd_grpc_timeout_metadata_is_handled() {
    let store = Store::new("healthy", Behaviour::Healthy);
    let addr = serve(store.clone());
    let deadline = Duration::from_millis(800);
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .deadline(deadline)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let mut wrong = Vec::new();
    for value in [
        "abc",
        "",
        "0n",
        "99999999H",
        "999999999H",
        "1x",
        "-1S",
        "18446744073709551615n",
        " 5S",
    ] {
        let mut request = tonic::Request::new(ping(value));
        match value.parse() {
            Ok(v) => {
                request.metadata_mut().insert("grpc-timeout", v);
            }
            Err(_) => continue,
        }
        let before = store.calls();
        let out =
            tokio::time::timeout(Duration::from_secs(5), unary(channel.clone(), GET, request))
                .await;
        let Ok(out) = out else {
            wrong.push(format!("{value:?}: the call did not end within 5 s"));
            continue;
        };
        if store.calls() > before {
            let told = store
                .timeouts
                .lock()
                .unwrap()
                .last()
                .cloned()
                .unwrap_or_default();
            match common::grpc_timeout(&told) {
                Some(t) if t <= deadline => {}
                other => wrong.push(format!(
                    "{value:?}: the server was told {told:?} ({other:?})"
                )),
            }
        }
        if let Err(status) = &out {
            if value != "0n" && status.code() != Code::DeadlineExceeded {
                wrong.push(format!("{value:?}: {status:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
