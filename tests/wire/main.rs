//! What `meshless::http::Client` writes on the wire and how it reads HTTP/1.1 answers,
//! probed with raw TCP servers that record the exact bytes they receive.

#[path = "../common/mod.rs"]
mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Clone)]
enum Act {
    /// Writes these bytes and keeps the connection.
    Answer(Vec<u8>),
    /// Writes these bytes and closes the connection.
    AnswerClose(Vec<u8>),
    /// Resets the connection (RST) without answering.
    Reset,
}

type Respond = Arc<dyn Fn(usize, &str) -> Act + Send + Sync>;

/// Each request's raw bytes with the number of the connection it came on.
type Log = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// A server that records every request's raw bytes (head and body) with its connection number.
struct Wire {
    addr: SocketAddr,
    log: Log,
    conns: Arc<AtomicUsize>,
}

impl Wire {
    fn requests(&self) -> Vec<(usize, Vec<u8>)> {
        self.log.lock().unwrap().clone()
    }
    fn heads(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|(_, r)| {
                let text = String::from_utf8_lossy(&r).into_owned();
                let end = text.find("\r\n\r\n").map_or(text.len(), |e| e + 4);
                text[..end].to_string()
            })
            .collect()
    }
    fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Reads the body that follows `head` (content-length or chunked) into `pending`'s front.
async fn read_body(socket: &mut TcpStream, head: &str, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    let chunked = header_value(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            if let Some(end) = pending.windows(5).position(|w| w == b"0\r\n\r\n") {
                return Some(pending.drain(..end + 5).collect());
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let length: usize = header_value(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while pending.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
    Some(pending.drain(..length).collect())
}

fn reset(socket: TcpStream) {
    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    drop(socket);
}

async fn wire(respond: Respond) -> Wire {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (log2, conns2) = (log.clone(), conns.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let conn = conns2.fetch_add(1, Ordering::SeqCst);
            let (log, respond, hits) = (log2.clone(), respond.clone(), hits.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = common::read_head(&mut socket, &mut pending).await {
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut raw = head.clone();
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    let act = respond(n, &text);
                    // A request announcing `Expect` is answered before its body arrives.
                    let expects = header_value(&text, "expect").is_some();
                    if !expects {
                        match read_body(&mut socket, &text, &mut pending).await {
                            Some(body) => raw.extend_from_slice(&body),
                            None => {
                                log.lock().unwrap().push((conn, raw));
                                return;
                            }
                        }
                    }
                    if expects {
                        // Answer first, then take the body the client sent anyway.
                        let bytes = match &act {
                            Act::Answer(b) | Act::AnswerClose(b) => b.clone(),
                            Act::Reset => Vec::new(),
                        };
                        let _ = socket.write_all(&bytes).await;
                        if let Some(body) = read_body(&mut socket, &text, &mut pending).await {
                            raw.extend_from_slice(&body);
                        }
                        log.lock().unwrap().push((conn, raw));
                        let _ = socket.shutdown().await;
                        return;
                    }
                    log.lock().unwrap().push((conn, raw));
                    match act {
                        Act::Answer(bytes) => {
                            if socket.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Act::AnswerClose(bytes) => {
                            let _ = socket.write_all(&bytes).await;
                            let _ = socket.shutdown().await;
                            return;
                        }
                        Act::Reset => {
                            reset(socket);
                            return;
                        }
                    }
                }
            });
        }
    });
    Wire { addr, log, conns }
}

fn always(bytes: &'static [u8]) -> Respond {
    Arc::new(move |_, _| Act::Answer(bytes.to_vec()))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .backoff(meshless::backoff::Backoff::none())
        .deadline(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn body_of(res: http::Response<meshless::http::ResponseBody>) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ends")
        .expect("body")
        .to_bytes()
}

fn books(client: &Client) {
    common::books_balance(&client.retry_stats(), &client.endpoints());
}

fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

async fn one(c: &Client, method: http::Method, uri: &str) -> (http::StatusCode, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(8), c.request(req))
        .await
        .expect("no hang")
        .expect("response");
    let status = res.status();
    (status, body_of(res).await)
}

mod answers;
mod headers;
mod more_answers;
mod retries;
mod upgrades;
mod uris;
