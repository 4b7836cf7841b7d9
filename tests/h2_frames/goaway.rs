//! `GOAWAY` through a frame-level server: streams above the last one are sent again, the ones at or
//! below it are not; a request waiting for a stream when a graceful `GOAWAY` comes is sent at most
//! once.

use super::*;
use crate::common::frames::{
    DATA, GOAWAY, HEADERS, ONE_STREAM, PING, SETTINGS, accept_preface, read_frame, write_frame,
};

// ---------------------------------------------------------------------------------------------
// A frame-level server for GOAWAY last-stream-id under tonic.

/// HPACK: `:status: 200`, `content-type: application/grpc` (literal, indexed name 31).
fn hpack_grpc_head() -> Vec<u8> {
    let mut b = vec![0x88, 0x0f, 0x10, 16];
    b.extend_from_slice(b"application/grpc");
    b
}

/// HPACK: `grpc-status: <code>` (literal, new name).
fn hpack_status(code: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, 11];
    b.extend_from_slice(b"grpc-status");
    b.push(code.len() as u8);
    b.extend_from_slice(code);
    b
}

async fn answer_grpc(tcp: &mut TcpStream, stream: u32) {
    write_frame(tcp, HEADERS, 0x4, stream, &hpack_grpc_head()).await;
    write_frame(tcp, DATA, 0, stream, &pong("ok")).await;
    write_frame(tcp, HEADERS, 0x4 | 0x1, stream, &hpack_status(b"0")).await;
}

#[derive(Default, Debug)]
struct FrameLog {
    /// (connection, stream) of each request head.
    heads: Vec<(usize, u32)>,
}

/// First connection: once `n` requests are complete, GOAWAY(last = the first stream, code);
/// then, if `answer_last`, answer the first stream; then close. Later connections answer all.
async fn goaway_server(
    n: usize,
    code: u32,
    answer_last: bool,
) -> (SocketAddr, Arc<Mutex<FrameLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(FrameLog::default()));
    let l = log.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let conn = conns;
            conns += 1;
            let log = l.clone();
            tokio::spawn(async move {
                if !accept_preface(&mut tcp, &[]).await {
                    return;
                }
                let mut complete = Vec::new();
                while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
                    match kind {
                        SETTINGS if flags & 1 == 0 => {
                            write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await
                        }
                        PING if flags & 1 == 0 => write_frame(&mut tcp, PING, 1, 0, &payload).await,
                        HEADERS => {
                            log.lock().unwrap().heads.push((conn, stream));
                            if flags & 1 != 0 {
                                complete.push(stream);
                            }
                        }
                        DATA if flags & 1 != 0 => complete.push(stream),
                        _ => {}
                    }
                    if conn > 0 {
                        for s in complete.drain(..) {
                            answer_grpc(&mut tcp, s).await;
                        }
                    } else if complete.len() >= n {
                        complete.sort();
                        let first = complete[0];
                        let mut p = first.to_be_bytes().to_vec();
                        p.extend_from_slice(&code.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                        if answer_last {
                            answer_grpc(&mut tcp, first).await;
                        }
                        let _ = tcp.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

async fn three_creates(channel: &Channel) -> Vec<Result<String, String>> {
    let calls = (0..3).map(|i| {
        let channel = channel.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(8),
                unary(channel, CREATE, tonic::Request::new(ping(&format!("{i}")))),
            )
            .await
            .expect("no hang")
            .map(|p| p.from)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        }
    });
    futures_join_all(calls).await
}

async fn futures_join_all<F: Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.map(|f| Box::pin(f)).collect();
    let mut out = Vec::new();
    // Poll all concurrently.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.unwrap());
    }
    out
}

/// Tonic channel, three non-idempotent calls on one connection; GOAWAY(last = first stream,
/// NO_ERROR), the first answered, then close: the two above were not processed and are sent
/// again; the first is not. Every call succeeds.
#[tokio::test]
async fn tonic_goaway_retries_only_streams_above_last_id() {
    let (addr, log) = goaway_server(3, 0, true).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(6))
        .build()
        .unwrap();
    // Warm the connection so the three calls share it.
    let out = three_creates(&channel).await;
    let heads = log.lock().unwrap().heads.clone();
    eprintln!("{out:?}; heads {heads:?}");
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let first_conn: Vec<_> = heads.iter().filter(|(c, _)| *c == 0).collect();
    assert_eq!(first_conn.len(), 3, "{heads:?}");
    assert_eq!(
        heads.len(),
        5,
        "the processed stream was sent again: {heads:?}"
    );
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// Tonic channel: GOAWAY(last = first stream, INTERNAL_ERROR) then close without answering:
/// the first (maybe processed, non-idempotent) fails once with a status, the two above are
/// retried and succeed.
#[tokio::test]
async fn tonic_goaway_error_then_close_fails_only_the_processed_stream() {
    let (addr, log) = goaway_server(3, 2, false).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(6))
        .build()
        .unwrap();
    let out = three_creates(&channel).await;
    let heads = log.lock().unwrap().heads.clone();
    eprintln!("{out:?}; heads {heads:?}");
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1, "{out:?}");
    assert_eq!(heads.len(), 5, "{heads:?}");
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

// ---------------------------------------------------------------------------------------------
// More edges.

/// SETTINGS_MAX_CONCURRENT_STREAMS = 1: POST A holds the only stream, POST B waits in the
/// client's queue. GOAWAY(last = A's stream, NO_ERROR), A answered, close. hyper fails B with
/// "dispatch task is gone", the error it also gives a request already written when its
/// connection's task ends (a graceful `GOAWAY` read right after, a runtime shut down): it
/// proves nothing, so B, a POST, reaches the server at most once, answered or failed.
#[tokio::test]
async fn a_post_queued_for_a_stream_when_goaway_arrives_is_sent_at_most_once() {
    queued_when_goaway_arrives(true).await;
}

/// The same with B a GET: retried as idempotent, and answered.
#[tokio::test]
async fn a_get_queued_for_a_stream_when_goaway_arrives_is_sent_elsewhere() {
    queued_when_goaway_arrives(false).await;
}

/// Frame-level server with SETTINGS_MAX_CONCURRENT_STREAMS = 1. First connection: on the
/// first complete request, wait for `b_started`, then GOAWAY(last = that stream, NO_ERROR),
/// answer it, close. Later connections answer everything.
async fn queued_goaway_server(grpc: bool) -> (SocketAddr, Arc<Mutex<FrameLog>>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(FrameLog::default()));
    let l = log.clone();
    let b_started = Arc::new(Notify::new());
    let bs = b_started.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let conn = conns;
            conns += 1;
            let log = l.clone();
            let bs = bs.clone();
            tokio::spawn(async move {
                if !accept_preface(&mut tcp, ONE_STREAM).await {
                    return;
                }
                while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
                    let mut complete = None;
                    match kind {
                        SETTINGS if flags & 1 == 0 => {
                            write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await
                        }
                        PING if flags & 1 == 0 => write_frame(&mut tcp, PING, 1, 0, &payload).await,
                        HEADERS => {
                            log.lock().unwrap().heads.push((conn, stream));
                            if flags & 1 != 0 {
                                complete = Some(stream);
                            }
                        }
                        DATA if flags & 1 != 0 => complete = Some(stream),
                        _ => {}
                    }
                    let Some(s) = complete else { continue };
                    if conn == 0 {
                        // B is queued in the client once the caller started it.
                        bs.notified().await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let mut p = s.to_be_bytes().to_vec();
                        p.extend_from_slice(&0u32.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                        if grpc {
                            answer_grpc(&mut tcp, s).await;
                        } else {
                            write_frame(&mut tcp, HEADERS, 0x4 | 0x1, s, &[0x88]).await;
                        }
                        let _ = tcp.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    if grpc {
                        answer_grpc(&mut tcp, s).await;
                    } else {
                        write_frame(&mut tcp, HEADERS, 0x4 | 0x1, s, &[0x88]).await;
                    }
                }
            });
        }
    });
    (addr, log, b_started)
}

async fn queued_when_goaway_arrives(b_is_post: bool) {
    let (addr, log, b_started) = queued_goaway_server(false).await;
    let client = client(addr, Duration::from_secs(5));
    let a = client.post("http://svc/a", "a");
    let b = async {
        while log.lock().unwrap().heads.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let f = if b_is_post {
            client.post("http://svc/b", "b")
        } else {
            client.get("http://svc/b")
        };
        tokio::pin!(f);
        // Poll B once so it reaches the connection's queue, then tell the server.
        let first = futures_poll_once(f.as_mut()).await;
        b_started.notify_one();
        match first {
            Some(r) => r,
            None => f.await,
        }
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(8), async { tokio::join!(a, b) })
        .await
        .expect("no hang");
    let heads = log.lock().unwrap().heads.clone();
    let a = a
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{:?}: {e}", e.kind()));
    let b = b.map(|r| r.status().as_u16()).map_err(|e| chain(&e));
    eprintln!(
        "A {a:?} B {b:?}; heads {heads:?}; endpoint {:?}",
        client.endpoints()[0]
    );
    assert_eq!(a, Ok(200));
    if b_is_post {
        // A once, B at most once.
        assert!(heads.len() <= 2, "{heads:?}");
    } else {
        assert_eq!(b, Ok(200));
    }
    assert_eq!(
        heads.iter().filter(|(c, _)| *c == 0).count(),
        1,
        "{heads:?}"
    );
    books(&client);
}

async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
    let mut polled = false;
    std::future::poll_fn(|cx| {
        if polled {
            return std::task::Poll::Ready(None);
        }
        polled = true;
        match Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    })
    .await
}

/// Tonic channel, the same: CREATE A holds the only stream, CREATE B waits in the client;
/// GOAWAY(last = A, NO_ERROR), A answered, close. B, not idempotent, reaches the server at
/// most once (see `a_post_queued_for_a_stream_when_goaway_arrives_is_sent_at_most_once`).
#[tokio::test]
async fn tonic_a_call_queued_for_a_stream_when_goaway_arrives_is_sent_at_most_once() {
    let (addr, log, b_started) = queued_goaway_server(true).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let a = unary(channel.clone(), CREATE, tonic::Request::new(ping("a")));
    let b = async {
        while log.lock().unwrap().heads.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let f = unary(channel.clone(), CREATE, tonic::Request::new(ping("b")));
        tokio::pin!(f);
        let first = futures_poll_once(f.as_mut()).await;
        // Let the call reach the connection before the server acts.
        b_started.notify_one();
        match first {
            Some(r) => r,
            None => f.await,
        }
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(8), async { tokio::join!(a, b) })
        .await
        .expect("no hang");
    settle().await;
    let heads = log.lock().unwrap().heads.clone();
    eprintln!(
        "A {:?} B {:?}; heads {heads:?}; endpoint {:?}",
        a.as_ref().map(|p| &p.from),
        b.as_ref().map(|p| &p.from),
        channel.endpoints()[0]
    );
    assert!(a.is_ok());
    assert!(heads.len() <= 2, "B sent twice: {heads:?}, {b:?}");
    assert_eq!(
        heads.iter().filter(|(c, _)| *c == 0).count(),
        1,
        "{heads:?}"
    );
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}
