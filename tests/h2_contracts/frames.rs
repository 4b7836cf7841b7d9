//! Bad or unusual frames: 1xx informational heads, malformed pseudo-headers, a CONTINUATION
//! flood, a PING flood, frames on stream 0.

use super::*;
use http_body_util::BodyExt;
use std::time::Instant;

/// A connection answering each complete request with the frames `answer` makes for its stream.
fn answering(answer: fn(u32) -> Vec<Vec<u8>>) -> RawHandler {
    raw(move |conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        while let Some((s, _)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await {
            let mut out = Vec::new();
            for f in answer(s) {
                out.extend_from_slice(&f);
            }
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, &out).await;
        }
    })
}

use common::frames::frame;

/// HPACK literal without indexing, new name.
fn lit(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, name.len() as u8];
    v.extend_from_slice(name);
    v.push(value.len() as u8);
    v.extend_from_slice(value);
    v
}

/// `:status: <code>` as a literal with the indexed name `:status` (8).
fn status(code: &[u8; 3]) -> Vec<u8> {
    let mut v = vec![0x08, 3];
    v.extend_from_slice(code);
    v
}

/// A POST answered by `handler`: it fails with a typed error, reaches the server once, and the
/// books balance. How long it took.
async fn a_post_fails_once(handler: RawHandler) -> Duration {
    let (addr, log) = serve_raw(handler).await;
    let client = client(addr, Duration::from_secs(2));
    let (r, took) = get_all(&client, "POST").await;
    let heads = log.lock().unwrap().heads();
    assert!(r.is_err(), "{r:?} after {took:?}, heads {heads:?}");
    assert_eq!(heads.len(), 1, "{heads:?}");
    books(&client);
    took
}

async fn get_all(client: &Client, method: &str) -> (Result<(u16, Bytes), String>, Duration) {
    let started = Instant::now();
    let fut = async {
        let res = if method == "POST" {
            client.post("http://svc/x", "body").await
        } else {
            client.get("http://svc/x").await
        }
        .map_err(|e| err(&e))?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    let r = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("not hung");
    (r, started.elapsed())
}

/// 103 Early Hints, then 200 with a body: the caller gets the 200 and its body.
#[tokio::test]
async fn an_informational_head_before_the_answer_is_skipped() {
    let (addr, _log) = serve_raw(answering(|s| {
        let mut early = status(b"103");
        early.extend(lit(b"link", b"</a.css>; rel=preload"));
        vec![
            frame(HEADERS, 0x4, s, &early),
            frame(HEADERS, 0x4, s, &[0x88]),
            frame(DATA, 0x1, s, b"final"),
        ]
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let (r, took) = get_all(&client, "GET").await;
    eprintln!("{r:?} after {took:?}");
    assert_eq!(r, Ok((200, Bytes::from_static(b"final"))));
    let stats = client.stats();
    assert_eq!((stats.successes, stats.failures), (1, 0));
}

/// A response header with an uppercase name: malformed. Typed error, POST sent once.
#[tokio::test]
async fn a_response_with_an_uppercase_header_name_is_a_typed_error() {
    a_post_fails_once(answering(|s| {
        let mut h = vec![0x88];
        h.extend(lit(b"X-Bad", b"1"));
        vec![frame(HEADERS, 0x5, s, &h)]
    }))
    .await;
}

/// A response with no `:status` at all: malformed; a typed error.
#[tokio::test]
async fn a_response_without_status_is_a_typed_error() {
    a_post_fails_once(answering(|s| {
        vec![frame(HEADERS, 0x5, s, &lit(b"x", b"y"))]
    }))
    .await;
}

/// HEADERS without END_HEADERS, then a flood of CONTINUATION frames each adding a header,
/// never ending: a typed error well before the deadline, or at it; never a hang.
#[tokio::test]
async fn a_continuation_flood_is_a_typed_error() {
    let took = a_post_fails_once(raw(|conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        let Some((s, _)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await else {
            return;
        };
        write_frame(&mut tcp, HEADERS, 0, s, &[0x88]).await;
        let f = frame(
            CONTINUATION,
            0,
            s,
            &lit(b"x-flood", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        );
        let mut batch = Vec::new();
        for _ in 0..1000 {
            batch.extend_from_slice(&f);
        }
        for _ in 0..200 {
            if tokio::io::AsyncWriteExt::write_all(&mut tcp, &batch)
                .await
                .is_err()
            {
                return;
            }
        }
    }))
    .await;
    assert!(took < Duration::from_millis(3000));
}

/// 20,000 PINGs before the answer: the client keeps up and the request is answered.
#[tokio::test]
async fn a_ping_flood_before_the_answer_is_survived() {
    let (addr, _log) = serve_raw(raw(|conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        let Some((s, _)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await else {
            return;
        };
        let (mut rd, mut wr) = tcp.into_split();
        // Drain whatever the client sends (PING ACKs) so it never blocks on writes.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let mut batch = Vec::new();
        for i in 0..20_000u64 {
            batch.extend_from_slice(&frame(PING, 0, 0, &i.to_be_bytes()));
        }
        let _ = tokio::io::AsyncWriteExt::write_all(&mut wr, &batch).await;
        let mut out = frame(HEADERS, 0x4, s, &[0x88]);
        out.extend(frame(DATA, 0x1, s, b"pong"));
        let _ = tokio::io::AsyncWriteExt::write_all(&mut wr, &out).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }))
    .await;
    let client = client(addr, Duration::from_secs(3));
    let (r, took) = get_all(&client, "GET").await;
    eprintln!("{r:?} after {took:?}");
    assert_eq!(r, Ok((200, Bytes::from_static(b"pong"))));
}

/// A DATA frame on stream 0 (connection error PROTOCOL_ERROR): the request in flight ends
/// typed, the POST is not sent again.
#[tokio::test]
async fn data_on_stream_zero_is_a_typed_error_and_the_post_is_not_resent() {
    a_post_fails_once(answering(|_s| vec![frame(DATA, 0, 0, b"junk")])).await;
}

/// A response on a stream the client never opened (an even, server-initiated id without
/// PUSH_PROMISE): a connection error; the POST in flight ends typed and is not resent.
#[tokio::test]
async fn headers_on_an_unopened_stream_end_the_request_typed() {
    a_post_fails_once(answering(|_s| vec![frame(HEADERS, 0x5, 2, &[0x88])])).await;
}

/// A content-length of 10 with a 4-byte body ending the stream: a typed error, not a short
/// success; a POST sent once.
#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_an_error() {
    let (addr, log) = serve_raw(answering(|s| {
        let mut h = vec![0x88];
        // content-length: static index 28, literal without indexing: 0x0f 0x0d.
        h.extend([0x0f, 0x0d, 2, b'1', b'0']);
        vec![frame(HEADERS, 0x4, s, &h), frame(DATA, 0x1, s, b"four")]
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let (r, took) = get_all(&client, "POST").await;
    eprintln!("{r:?} after {took:?}");
    assert!(r.is_err(), "{r:?}");
    assert_eq!(log.lock().unwrap().heads().len(), 1);
    settle(&client).await;
    let stats = client.stats();
    assert_eq!(stats.failures, 1, "{stats:?}");
    books(&client);
}

async fn settle(client: &Client) {
    let c = client.clone();
    eventually(move || c.endpoints().iter().all(|e| e.in_flight == 0)).await;
}

/// A WINDOW_UPDATE of 0 on the connection (PROTOCOL_ERROR): typed error, POST sent once.
#[tokio::test]
async fn a_zero_window_update_is_a_typed_error() {
    a_post_fails_once(answering(|_s| {
        vec![frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0])]
    }))
    .await;
}

/// content-length 10, four bytes of DATA, then trailers ending the stream: short; an error.
#[tokio::test]
async fn a_body_short_of_its_length_ended_by_trailers_is_an_error() {
    let (addr, _log) = serve_raw(answering(|s| {
        let mut h = vec![0x88];
        h.extend([0x0f, 0x0d, 2, b'1', b'0']);
        vec![
            frame(HEADERS, 0x4, s, &h),
            frame(DATA, 0, s, b"four"),
            frame(HEADERS, 0x5, s, &lit(b"x-trailer", b"1")),
        ]
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let (r, took) = get_all(&client, "GET").await;
    eprintln!("{r:?} after {took:?}");
    assert!(r.is_err(), "{r:?}");
}

/// Two content-length values that disagree (5 and 6), five bytes of DATA: a malformed answer
/// (RFC 9110 §8.6), an error, not a success.
#[tokio::test]
async fn conflicting_content_lengths_are_an_error() {
    let (addr, _log) = serve_raw(answering(|s| {
        let mut h = vec![0x88];
        h.extend([0x0f, 0x0d, 1, b'5']);
        h.extend([0x0f, 0x0d, 1, b'6']);
        vec![frame(HEADERS, 0x4, s, &h), frame(DATA, 0x1, s, b"12345")]
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let (r, took) = get_all(&client, "GET").await;
    eprintln!("{r:?} after {took:?}");
    assert!(r.is_err(), "{r:?}");
}

/// An informational head (103) carrying END_STREAM: malformed (RFC 9113 §8.1); a typed error,
/// never a 103 handed to the caller as the final answer, nor a hang.
#[tokio::test]
async fn an_informational_head_ending_the_stream_is_a_typed_error() {
    let (addr, _log) =
        serve_raw(answering(|s| vec![frame(HEADERS, 0x5, s, &status(b"103"))])).await;
    let client = client(addr, Duration::from_secs(1));
    let (r, took) = get_all(&client, "GET").await;
    eprintln!("{r:?} after {took:?}");
    assert!(r.is_err(), "{r:?}");
    assert!(
        took < Duration::from_millis(900),
        "typed at once, not the deadline: {took:?}"
    );
}

/// A PUSH_PROMISE although the client disabled push: a connection error; the POST in flight
/// ends typed and is not resent.
#[tokio::test]
async fn a_push_promise_is_a_typed_error() {
    let took = a_post_fails_once(answering(|s| {
        let mut p = 2u32.to_be_bytes().to_vec();
        p.extend([0x82, 0x84, 0x86]); // :method GET, :path /, :scheme http
        p.extend(lit(b":authority", b"svc"));
        vec![frame(5, 0x4, s, &p)]
    }))
    .await;
    assert!(took < Duration::from_millis(1500));
}

/// DATA far beyond the client's flow-control windows (6 MiB sent at once, none read by the
/// caller yet): a flow-control error, typed, the POST sent once.
#[tokio::test]
async fn data_past_the_window_is_a_typed_error() {
    let (addr, log) = serve_raw(answering(|s| {
        let mut out = vec![frame(HEADERS, 0x4, s, &[0x88])];
        for _ in 0..(6 * 1024 * 1024 / 16384) {
            out.push(frame(DATA, 0, s, &[b'z'; 16384]));
        }
        out
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let (r, took) = get_all(&client, "POST").await;
    eprintln!("{:?} after {took:?}", r.as_ref().map(|b| b.1.len()));
    assert!(r.is_err());
    assert_eq!(log.lock().unwrap().heads().len(), 1);
    assert!(took < Duration::from_millis(1500));
}
