//! A raw HTTP/2 server (the `h2` crate) for the gRPC edge tests: each stream is handed to
//! a script that may answer anything, well-formed gRPC or not.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub type Script =
    Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + Sync + 'static>;

/// What the server saw of one stream.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub grpc_timeout: Option<String>,
    pub headers: HeaderMap,
    pub at: Instant,
    pub connection: usize,
}

/// One stream handed to a script.
pub struct Call {
    /// The index of this stream among all the server saw, from 0.
    pub index: usize,
    pub request: http::Request<h2::RecvStream>,
    pub respond: h2::server::SendResponse<Bytes>,
    /// Tells the connection to send GOAWAY.
    pub control: mpsc::UnboundedSender<Control>,
}

#[derive(Clone, Copy, Debug)]
pub enum Control {
    Graceful,
    Abrupt(h2::Reason),
}

#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

pub async fn serve(script: Script) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            connections += 1;
            let connection = connections;
            let script = script.clone();
            let log = l.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                let (tx, mut rx) = mpsc::unbounded_channel();
                loop {
                    tokio::select! {
                        next = conn.accept() => match next {
                            Some(Ok((request, respond))) => {
                                let index = {
                                    let mut g = log.0.lock().unwrap();
                                    g.push(Seen {
                                        path: request.uri().path().to_owned(),
                                        grpc_timeout: request
                                            .headers()
                                            .get("grpc-timeout")
                                            .map(|v| v.to_str().unwrap_or("?").to_owned()),
                                        headers: request.headers().clone(),
                                        at: Instant::now(),
                                        connection,
                                    });
                                    g.len() - 1
                                };
                                let call = Call { index, request, respond, control: tx.clone() };
                                tokio::spawn(script(call));
                            }
                            _ => break,
                        },
                        Some(c) = rx.recv() => match c {
                            Control::Graceful => conn.graceful_shutdown(),
                            Control::Abrupt(r) => conn.abrupt_shutdown(r),
                        },
                    }
                }
            });
        }
    });
    (addr, log)
}

/// A gRPC message frame: uncompressed flag, length, payload.
pub fn message(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

pub fn pong(from: &str) -> Bytes {
    use prost::Message;
    let pong = crate::support::Pong { from: from.into() };
    message(&pong.encode_to_vec())
}

pub fn grpc_head() -> Response<()> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

/// A trailers-only answer: `grpc-status` (as raw bytes) and any more headers, in the head.
pub fn trailers_only(
    respond: &mut h2::server::SendResponse<Bytes>,
    status: &[u8],
    extra: &[(&str, &[u8])],
) {
    let mut res = grpc_head();
    res.headers_mut()
        .insert("grpc-status", HeaderValue::from_bytes(status).unwrap());
    for (k, v) in extra {
        res.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    let _ = respond.send_response(res, true);
}

pub fn trailers(status: &[u8]) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_bytes(status).unwrap());
    t
}

/// Reads the request body to its end (or error), returning the bytes.
pub async fn read_body(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                out.extend_from_slice(&c);
            }
            Err(_) => break,
        }
    }
    out
}

/// Reads request data until at least `n` bytes arrived.
pub async fn read_at_least(body: &mut h2::RecvStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        match body.data().await {
            Some(Ok(c)) => {
                let _ = body.flow_control().release_capacity(c.len());
                out.extend_from_slice(&c);
            }
            _ => break,
        }
    }
    out
}

pub fn script<F, Fut>(f: F) -> Script
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |c| Box::pin(f(c)))
}
