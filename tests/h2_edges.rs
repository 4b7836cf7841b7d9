//! HTTP/2 in `meshless::http::Client` against a hand-written frame-level server:
//! GOAWAY last-stream-id, RST_STREAM codes, flow-control stalls.

#[path = "common/mod.rs"]
mod common;

use bytes::Bytes;
use http_body_util::BodyExt;
use meshless::http::Client;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use common::frames::{
    DATA, GOAWAY, HEADERS, PING, RST, SETTINGS, accept_preface, read_frame, write_frame,
};

async fn respond_200(tcp: &mut TcpStream, stream: u32) {
    // :status 200 is static table index 8.
    write_frame(tcp, HEADERS, 0x4 | 0x1, stream, &[0x88]).await;
}

/// What the server does on the first connection once `after` requests are complete.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// GOAWAY(last, code), then close the socket.
    GoAwayClose { last: u32, code: u32 },
    /// GOAWAY(last, code), keep the connection, answer streams <= last.
    GoAwayKeep { last: u32, code: u32 },
    /// RST_STREAM(code) on every stream, keep the connection.
    Reset { code: u32 },
    /// Response head, some data, then RST_STREAM(code).
    HeadThenReset { code: u32 },
    /// Response head, nothing more.
    HeadThenStall,
    /// Read nothing more, send nothing more (no WINDOW_UPDATE).
    Stall,
    /// Answer the first `after` streams, then GOAWAY(last, NO_ERROR), keep the connection
    /// open and ignore every later stream.
    AnswerThenGoAway { last: u32 },
}

#[derive(Default, Debug)]
struct Log {
    /// (connection, stream) of every request HEADERS seen.
    heads: Vec<(usize, u32)>,
    connections: usize,
}

async fn server(first: Act, after: usize) -> (SocketAddr, Arc<Mutex<Log>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let conn = {
                let mut g = l.lock().unwrap();
                g.connections += 1;
                g.connections - 1
            };
            let l = l.clone();
            tokio::spawn(connection(
                tcp,
                conn,
                if conn == 0 { Some(first) } else { None },
                after,
                l,
            ));
        }
    });
    (addr, log)
}

async fn connection(
    mut tcp: TcpStream,
    conn: usize,
    act: Option<Act>,
    after: usize,
    log: Arc<Mutex<Log>>,
) {
    if !accept_preface(&mut tcp, &[]).await {
        return;
    }
    let mut complete: Vec<u32> = Vec::new();
    let mut done = false;
    let mut answered: HashSet<u32> = HashSet::new();
    while let Some((kind, flags, stream, _payload)) = read_frame(&mut tcp).await {
        match kind {
            SETTINGS if flags & 1 == 0 => write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await,
            PING if flags & 1 == 0 => write_frame(&mut tcp, PING, 1, 0, &_payload).await,
            HEADERS => {
                log.lock().unwrap().heads.push((conn, stream));
                if flags & 1 != 0 {
                    complete.push(stream);
                }
            }
            DATA if flags & 1 != 0 => complete.push(stream),
            _ => {}
        }
        match act {
            None => {
                for s in complete.drain(..) {
                    respond_200(&mut tcp, s).await;
                }
            }
            Some(act) if !done && complete.len() >= after => {
                done = true;
                match act {
                    Act::GoAwayClose { last, code } => {
                        let mut p = last.to_be_bytes().to_vec();
                        p.extend_from_slice(&code.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                        let _ = tcp.flush().await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        return; // drop: close
                    }
                    Act::GoAwayKeep { last, code } => {
                        let mut p = last.to_be_bytes().to_vec();
                        p.extend_from_slice(&code.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                        for s in complete.clone() {
                            if s <= last && answered.insert(s) {
                                respond_200(&mut tcp, s).await;
                            }
                        }
                    }
                    Act::Reset { code } => {
                        for s in complete.drain(..) {
                            write_frame(&mut tcp, RST, 0, s, &code.to_be_bytes()).await;
                        }
                    }
                    Act::HeadThenReset { code } => {
                        for s in complete.clone() {
                            write_frame(&mut tcp, HEADERS, 0x4, s, &[0x88]).await;
                            write_frame(&mut tcp, DATA, 0, s, b"partial").await;
                            write_frame(&mut tcp, RST, 0, s, &code.to_be_bytes()).await;
                        }
                    }
                    Act::HeadThenStall => {
                        for s in complete.clone() {
                            write_frame(&mut tcp, HEADERS, 0x4, s, &[0x88]).await;
                        }
                    }
                    Act::AnswerThenGoAway { last } => {
                        for s in complete.drain(..) {
                            respond_200(&mut tcp, s).await;
                        }
                        let mut p = last.to_be_bytes().to_vec();
                        p.extend_from_slice(&0u32.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                    }
                    Act::Stall => {
                        // Hold the socket open, read nothing.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                }
            }
            Some(Act::Reset { .. }) if done => {
                for s in complete.drain(..) {
                    respond_200(&mut tcp, s).await;
                }
            }
            Some(Act::GoAwayKeep { last, .. }) if done => {
                for s in complete.clone() {
                    if s <= last && answered.insert(s) {
                        respond_200(&mut tcp, s).await;
                    }
                }
            }
            Some(Act::Stall) if !done && !log.lock().unwrap().heads.is_empty() => {
                // Stall as soon as a request head arrived, whatever the body.
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            _ => {}
        }
    }
}

fn client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn heads(log: &Arc<Mutex<Log>>) -> Vec<(usize, u32)> {
    log.lock().unwrap().heads.clone()
}

async fn three_posts(client: &Client) -> Vec<Result<u16, String>> {
    let a = client.post("http://svc.example/a", "a");
    let b = client.post("http://svc.example/b", "b");
    let c = client.post("http://svc.example/c", "c");
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
        .into_iter()
        .map(|r| {
            r.map(|r| r.status().as_u16())
                .map_err(|e| format!("{:?}: {}", e.kind(), e))
        })
        .collect()
}

/// GOAWAY(last=1) then close, with streams 1, 3, 5 open: 3 and 5 were not processed and may be
/// retried (even POSTs); 1 may have been processed and must not be sent again.
#[tokio::test]
async fn goaway_then_close_retries_only_streams_above_last_id() {
    let (addr, log) = server(Act::GoAwayClose { last: 1, code: 0 }, 3).await;
    let client = client(addr);
    let results = three_posts(&client).await;
    let heads = heads(&log);
    eprintln!("results {results:?}\nheads {heads:?}");
    let first: Vec<_> = heads.iter().filter(|(c, _)| *c == 0).collect();
    assert_eq!(
        first.len(),
        3,
        "three streams on the first connection: {heads:?}"
    );
    let again: Vec<_> = heads.iter().filter(|(c, _)| *c != 0).collect();
    assert_eq!(
        again.len(),
        2,
        "streams 3 and 5 sent again, stream 1 not: {heads:?}"
    );
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
}

/// GOAWAY(last=1, NO_ERROR) on a connection kept open: stream 1 is answered, 3 and 5 retried.
#[tokio::test]
async fn goaway_kept_open_answers_the_processed_and_retries_the_rest() {
    let (addr, log) = server(Act::GoAwayKeep { last: 1, code: 0 }, 3).await;
    let client = client(addr);
    let results = tokio::time::timeout(Duration::from_secs(10), three_posts(&client))
        .await
        .expect("no hang");
    let heads = heads(&log);
    eprintln!("results {results:?}\nheads {heads:?}");
    assert!(results.iter().all(|r| r == &Ok(200)), "{results:?}");
    assert_eq!(heads.len(), 5, "{heads:?}");
}

/// GOAWAY(last=1, PROTOCOL_ERROR) then close: the same for an error code.
#[tokio::test]
async fn goaway_with_an_error_code_retries_only_streams_above_last_id() {
    let (addr, log) = server(Act::GoAwayClose { last: 1, code: 1 }, 3).await;
    let client = client(addr);
    let results = three_posts(&client).await;
    let heads = heads(&log);
    eprintln!("results {results:?}\nheads {heads:?}");
    let again = heads.iter().filter(|(c, _)| *c != 0).count();
    assert_eq!(again, 2, "{heads:?}");
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
}

/// GOAWAY(last=0) then close: nothing processed, a POST is retried and served.
#[tokio::test]
async fn goaway_last_zero_retries_a_post() {
    let (addr, log) = server(Act::GoAwayClose { last: 0, code: 0 }, 1).await;
    let client = client(addr);
    let res = client.post("http://svc.example/pay", "money").await;
    eprintln!(
        "{:?} heads {:?}",
        res.as_ref().map(|r| r.status()).map_err(|e| e.to_string()),
        heads(&log)
    );
    assert_eq!(res.expect("retried").status(), 200);
}

/// RST_STREAM(REFUSED_STREAM): never processed, a POST is retried.
#[tokio::test]
async fn refused_stream_retries_a_post() {
    let (addr, log) = server(Act::Reset { code: 7 }, 1).await;
    let client = client(addr);
    let res = client.post("http://svc.example/pay", "money").await;
    let heads = heads(&log);
    eprintln!(
        "{:?} heads {heads:?}",
        res.as_ref().map(|r| r.status()).map_err(|e| e.to_string())
    );
    assert_eq!(res.expect("retried").status(), 200);
    assert_eq!(heads.len(), 2);
}

/// RST_STREAM(INTERNAL_ERROR) before any answer: a POST may have been processed: not retried.
#[tokio::test]
async fn internal_error_reset_does_not_retry_a_post_but_retries_a_get() {
    let (addr, log) = server(Act::Reset { code: 2 }, 1).await;
    let client = client(addr);
    let res = client.post("http://svc.example/pay", "money").await;
    let h = heads(&log);
    eprintln!(
        "{:?} heads {h:?}",
        res.as_ref().map(|r| r.status()).map_err(|e| e.to_string())
    );
    assert!(res.is_err());
    assert_eq!(h.len(), 1, "a POST sent once: {h:?}");

    let (addr, log) = server(Act::Reset { code: 2 }, 1).await;
    let client = client_h(addr);
    let res = client.get("http://svc.example/q").await;
    let h = heads(&log);
    eprintln!(
        "GET {:?} heads {h:?}",
        res.as_ref().map(|r| r.status()).map_err(|e| e.to_string())
    );
    // Connection 0 resets everything it completes after the first; the retry goes on the
    // same connection unless the client opens another.
    assert!(h.len() >= 2, "a GET retried: {h:?}");
}

fn client_h(addr: SocketAddr) -> Client {
    client(addr)
}

/// A reset mid-response (after the head, during the body): the body fails, typed, and the POST
/// is sent once.
#[tokio::test]
async fn a_reset_mid_body_fails_the_body_and_sends_the_post_once() {
    for code in [2u32, 7, 8] {
        let (addr, log) = server(Act::HeadThenReset { code }, 1).await;
        let client = client(addr);
        let res = client
            .post("http://svc.example/pay", "money")
            .await
            .expect("head arrives");
        assert_eq!(res.status(), 200);
        let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
            .await
            .expect("no hang");
        eprintln!(
            "code {code}: body {:?}",
            body.as_ref().map(|_| ()).map_err(|e| e.to_string())
        );
        assert!(
            body.is_err(),
            "code {code}: a reset body is no complete body"
        );
        assert_eq!(heads(&log).len(), 1);
        let stats = client.stats();
        eprintln!(
            "stats: failures {} successes {}",
            stats.failures, stats.successes
        );
    }
}

/// A server that never grants flow-control window: a 1 MiB POST must still end at the deadline.
#[tokio::test]
async fn a_server_that_stops_reading_is_cut_by_the_deadline() {
    let (addr, _log) = server(Act::Stall, usize::MAX).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        client.post("http://svc.example/upload", big),
    )
    .await
    .expect("cut by the deadline, not hung");
    eprintln!(
        "after {:?}: {:?}",
        started.elapsed(),
        res.as_ref()
            .map(|r| r.status())
            .map_err(|e| (e.kind(), e.to_string()))
    );
    assert!(res.is_err());
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// Same with a streamed body of many chunks (not replayable past the buffer).
#[tokio::test]
async fn a_streamed_upload_to_a_server_that_stops_reading_is_cut_by_the_deadline() {
    let (addr, _log) = server(Act::Stall, usize::MAX).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let chunks = (0..256).map(|_| {
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'y'; 16 * 1024])))
    });
    let body = http_body_util::StreamBody::new(futures_util_stream(chunks.collect()));
    let req = http::Request::post("http://svc.example/upload")
        .body(body)
        .unwrap();
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("cut by the deadline, not hung");
    eprintln!(
        "after {:?}: {:?}",
        started.elapsed(),
        res.as_ref()
            .map(|r| r.status())
            .map_err(|e| (e.kind(), e.to_string()))
    );
    assert!(res.is_err());
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// A response head, then a body that never comes: the deadline covers the body.
#[tokio::test]
async fn a_stalled_response_body_is_cut_by_the_deadline() {
    let (addr, _log) = server(Act::HeadThenStall, 1).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.get("http://svc.example/").await.expect("head");
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("cut, not hung");
    eprintln!(
        "after {:?}: {:?}",
        started.elapsed(),
        body.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    assert!(body.is_err());
    assert!(started.elapsed() < Duration::from_millis(1500));
}

// A minimal Stream over a Vec, to avoid a futures dependency.
struct VecStream<T>(std::collections::VecDeque<T>);
impl<T: Unpin> futures_core::Stream for VecStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}
fn futures_util_stream<T: Unpin>(v: Vec<T>) -> VecStream<T> {
    VecStream(v.into())
}

#[allow(dead_code)]
fn _unused(_: Notify) {}

/// A server answers stream 1, then GOAWAY(last=1, NO_ERROR) and keeps the connection open
/// (ignoring new streams): later requests must go on a new connection, not fail or hang.
#[tokio::test]
async fn after_a_graceful_goaway_new_requests_use_a_new_connection() {
    for last in [1u32, 0x7fff_ffff] {
        let (addr, log) = server(Act::AnswerThenGoAway { last }, 1).await;
        let client = client(addr);
        let first = client.post("http://svc.example/a", "a").await;
        assert_eq!(first.expect("first").status(), 200);
        let started = Instant::now();
        for i in 0..5 {
            let r = client.post("http://svc.example/b", "b").await;
            let h = heads(&log);
            assert!(
                r.is_ok(),
                "last={last} request {i} after {:?}: {:?} heads {h:?}",
                started.elapsed(),
                r.err().map(|e| (e.kind(), e.to_string()))
            );
        }
        let h = heads(&log);
        eprintln!("last={last}: heads {h:?} in {:?}", started.elapsed());
        // With last = 1 nothing above it on the first connection was processed.
        if last == 1 {
            assert!(h.iter().filter(|(c, _)| *c == 0).count() >= 1);
        }
    }
}
