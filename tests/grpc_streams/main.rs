//! gRPC streams through `meshless::tonic::Channel` against a raw HTTP/2 server:
//! resets and GOAWAY mid-stream, cancellation of client and bidi streams, replay of request
//! streams, idle streams, and endpoints removed while calls are in flight.
#![cfg(feature = "tonic")]

#[path = "../tonic/support.rs"]
mod support;

#[path = "../grpc_raw/mod.rs"]
mod raw;

#[path = "../common/mod.rs"]
mod common;

use bytes::Bytes;
use http::uri::PathAndQuery;
use meshless::backoff::Backoff;
use meshless::tonic::Channel;
use prost::Message;
use raw::{
    Call, Control, grpc_head, pong, read_at_least, read_body, script, serve as serve_raw, trailers,
    trailers_only,
};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use support::{GET, Ping, Pong, WATCH, endpoint, ping};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tonic::Code;
use tonic_prost::ProstCodec;

const UPLOAD: &str = "/test.Store/Upload";
const CHAT: &str = "/test.Store/Chat";

fn channel(addr: SocketAddr) -> meshless::tonic::ChannelBuilder {
    Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .idempotent_method(WATCH)
        .idempotent_method(UPLOAD)
        .idempotent_method(CHAT)
        .backoff(Backoff::none())
        .metrics(false)
}

fn stats_add_up(channel: &Channel) {
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// The caller's request stream, fed by a channel.
struct Feed(mpsc::UnboundedReceiver<Ping>);

impl futures_core::Stream for Feed {
    type Item = Ping;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Ping>> {
        self.0.poll_recv(cx)
    }
}

async fn grpc(channel: &Channel) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc
}

async fn open_watch(channel: &Channel) -> Result<tonic::Streaming<Pong>, tonic::Status> {
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    grpc(channel)
        .await
        .server_streaming(
            tonic::Request::new(ping("w")),
            PathAndQuery::from_static(WATCH),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
}

async fn drain(mut stream: tonic::Streaming<Pong>) -> (usize, Result<(), tonic::Status>) {
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ended within 10 s")
        {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, Ok(())),
            Err(s) => return (n, Err(s)),
        }
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn encoded(pings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pings {
        out.extend_from_slice(&raw::message(&ping(p).encode_to_vec()));
    }
    out
}

mod cancellation;
mod ends;
mod replay;
mod resets;
