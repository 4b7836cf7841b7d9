//! HTTP/1.1 over TLS: bodies cut short, with and without close_notify.

use crate::support::*;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Copy, Debug)]
enum End {
    Notify,
    NoNotify,
}

async fn truncated(head: &'static [u8], body: &'static [u8], end: End) -> (String, u64, u64) {
    let pki = pki(&["svc.example"]);
    let (addr, seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        move |mut tls, seen, _| async move {
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            let _ = tls.write_all(head).await;
            let _ = tls.write_all(body).await;
            match end {
                End::Notify => close_with_notify(tls).await,
                End::NoNotify => close_without_notify(tls).await,
            }
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(0).build().unwrap();
    let res = client
        .get("https://svc.example/x")
        .await
        .expect("the head is whole: a response");
    let outcome = res.into_body().collect().await;
    let text = match outcome {
        Ok(c) => format!("COMPLETE {} bytes", c.to_bytes().len()),
        Err(e) => format!("ERR kind={:?} {}", kind_in(&*e), chain(&*e)),
    };
    eventually(|| endpoint_requests(&client) >= 1).await;
    let failures = endpoint_failures(&client);
    let requests = endpoint_requests(&client);
    assert_eq!(seen.requests(), 1);
    (text, failures, requests)
}

const BODY40: &[u8] = b"0123456789012345678901234567890123456789";

#[tokio::test]
async fn content_length_body_cut_without_close_notify_is_an_error_charged_to_the_endpoint() {
    let (text, failures, requests) = truncated(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
        BODY40,
        End::NoNotify,
    )
    .await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!((requests, failures), (1, 1), "charged: {text}");
}

#[tokio::test]
async fn content_length_body_cut_with_close_notify_is_an_error_charged_to_the_endpoint() {
    let (text, failures, requests) = truncated(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
        BODY40,
        End::Notify,
    )
    .await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!((requests, failures), (1, 1), "charged: {text}");
}

/// A close-delimited body ended by a FIN with no close_notify: a truncation attack. It must
/// not be taken for the whole body.
#[tokio::test]
async fn close_delimited_body_ended_without_close_notify_is_not_complete() {
    let (text, failures, _) = truncated(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
        BODY40,
        End::NoNotify,
    )
    .await;
    assert!(
        text.starts_with("ERR"),
        "truncation taken as complete: {text}"
    );
    assert_eq!(failures, 1, "charged: {text}");
}

/// Control: with close_notify the same close-delimited body is complete.
#[tokio::test]
async fn close_delimited_body_ended_with_close_notify_is_complete() {
    let (text, failures, _) = truncated(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
        BODY40,
        End::Notify,
    )
    .await;
    assert_eq!(text, "COMPLETE 40 bytes");
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn chunked_body_cut_mid_chunk_is_an_error_with_or_without_close_notify() {
    for end in [End::Notify, End::NoNotify] {
        let (text, failures, _) = truncated(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"28\r\n01234567890123456789",
            end,
        )
        .await;
        assert!(text.starts_with("ERR"), "{end:?}: {text}");
        assert_eq!(failures, 1, "{end:?}: {text}");
    }
}

/// Chunked body whose last chunk (`0\r\n\r\n`) never comes, ended by close_notify at a chunk
/// boundary: still a truncation.
#[tokio::test]
async fn chunked_body_without_its_last_chunk_is_an_error() {
    let (text, failures, _) = truncated(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        End::Notify,
    )
    .await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(failures, 1, "{text}");
}

/// The deadline covers the body over TLS too: a body that stalls after 10 bytes ends at the
/// deadline with `DeadlineExceeded`.
#[tokio::test]
async fn a_stalled_tls_body_ends_at_the_deadline() {
    let pki = pki(&["svc.example"]);
    let (addr, _seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        |mut tls, seen, _| async move {
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                .await;
            let _ = tls.flush().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tls);
        },
    )
    .await;
    let client = client(addr, &pki)
        .max_retries(0)
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.get("https://svc.example/").await.expect("head");
    let err = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the deadline must cut the body")
        .expect_err("stalled body");
    assert_eq!(
        kind_in(&*err),
        Some(meshless::error::Kind::DeadlineExceeded),
        "{}",
        chain(&*err)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
