//! HTTP/2 over TLS (ALPN h2) with the `h2` crate as a server that misbehaves mid-body.

use crate::support::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `content-length: 100`, 40 bytes, END_STREAM.
    ShortLength,
    /// 40 bytes, then RST_STREAM(NO_ERROR).
    ResetNoError,
    /// 40 bytes, then GOAWAY(NO_ERROR) naming the stream as processed, and the connection ends.
    GoawayMidBody,
    /// 40 bytes, then TCP ends without close_notify (the h2 connection is dropped).
    DropConnection,
}

async fn h2_fault(fault: Fault) -> (String, u64) {
    let pki = pki(&["svc.example"]);
    let (addr, _seen) = serve_tls(
        server_config(&pki, &[b"h2"]),
        move |tls, seen, _| async move {
            let Ok(mut conn) = h2::server::handshake(tls).await else {
                return;
            };
            let Some(Ok((_req, mut respond))) = conn.accept().await else {
                return;
            };
            seen.requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (sent_tx, sent_rx) = oneshot::channel::<()>();
            tokio::spawn(async move {
                let head = http::Response::builder()
                    .status(200)
                    .header("content-length", "100")
                    .body(())
                    .unwrap();
                let Ok(mut send) = respond.send_response(head, false) else {
                    return;
                };
                let end = matches!(fault, Fault::ShortLength);
                let _ = send.send_data(Bytes::from_static(&[b'x'; 40]), end);
                if let Fault::ResetNoError = fault {
                    send.send_reset(h2::Reason::NO_ERROR);
                }
                let _ = sent_tx.send(());
                // Keep the stream alive for the driver.
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                drop(send);
            });
            // Drive the connection until the data is out.
            tokio::select! {
                _ = async { while let Some(Ok(_)) = conn.accept().await {} } => return,
                _ = sent_rx => {}
            }
            match fault {
                Fault::GoawayMidBody => {
                    conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                    let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
                }
                Fault::DropConnection => {
                    // Flush what is queued, briefly, then drop: FIN without close_notify.
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(100), async {
                        while let Some(Ok(_)) = conn.accept().await {}
                    })
                    .await;
                    drop(conn);
                }
                _ => {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                        while let Some(Ok(_)) = conn.accept().await {}
                    })
                    .await;
                }
            }
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(0).build().unwrap();
    // The fault may reach the client before or after it read the head: either way an error.
    let text = match client.get("https://svc.example/x").await {
        Err(e) => format!("ERR (head) kind={:?} {}", e.kind(), chain(&e)),
        Ok(res) => {
            assert_eq!(res.version(), http::Version::HTTP_2);
            match res.into_body().collect().await {
                Ok(c) => format!("COMPLETE {} bytes", c.to_bytes().len()),
                Err(e) => format!("ERR kind={:?} {}", kind_in(&*e), chain(&*e)),
            }
        }
    };
    eprintln!("{fault:?}: {text}");
    eventually(|| endpoint_requests(&client) >= 1).await;
    (text, endpoint_failures(&client))
}

#[tokio::test]
async fn h2_tls_body_shorter_than_content_length_is_an_error() {
    let (text, failures) = h2_fault(Fault::ShortLength).await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(failures, 1, "{text}");
}

#[tokio::test]
async fn h2_tls_reset_no_error_mid_body_is_an_error() {
    let (text, failures) = h2_fault(Fault::ResetNoError).await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(failures, 1, "{text}");
}

#[tokio::test]
async fn h2_tls_goaway_mid_body_is_an_error() {
    let (text, failures) = h2_fault(Fault::GoawayMidBody).await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(failures, 1, "{text}");
}

#[tokio::test]
async fn h2_tls_connection_cut_without_close_notify_mid_body_is_an_error() {
    let (text, failures) = h2_fault(Fault::DropConnection).await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(failures, 1, "{text}");
}

/// tonic over TLS: a gRPC answer whose body is cut (TCP FIN, no close_notify) mid-message must
/// end in an error, charged to the endpoint.
#[tokio::test]
async fn tonic_tls_body_cut_mid_message_is_an_error() {
    let pki = pki(&["svc.example"]);
    let (addr, _seen) = serve_tls(server_config(&pki, &[b"h2"]), |tls, _seen, _| async move {
        let Ok(mut conn) = h2::server::handshake(tls).await else {
            return;
        };
        let Some(Ok((_req, mut respond))) = conn.accept().await else {
            return;
        };
        let (sent_tx, sent_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let head = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(head, false) else {
                return;
            };
            // A gRPC message announcing 100 bytes, 10 of them sent.
            let mut frame = vec![0u8, 0, 0, 0, 100];
            frame.extend_from_slice(&[7u8; 10]);
            let _ = send.send_data(Bytes::from(frame), false);
            let _ = sent_tx.send(());
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            drop(send);
        });
        tokio::select! {
            _ = async { while let Some(Ok(_)) = conn.accept().await {} } => return,
            _ = sent_rx => {}
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), async {
            while let Some(Ok(_)) = conn.accept().await {}
        })
        .await;
        drop(conn);
    })
    .await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca_pem))
        .domain_name("svc.example");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let channel = meshless::tonic::Channel::builder()
        .endpoint(endpoint)
        .max_retries(0)
        .deadline(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let req = http::Request::post("/pkg.S/M")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    use tower::ServiceExt;
    let text = match channel.clone().oneshot(req).await {
        Err(e) => format!("ERR (head) {e:?}"),
        Ok(res) => match res.into_body().collect().await {
            Ok(c) => format!(
                "COMPLETE {} bytes, trailers {:?}",
                c.to_bytes().len(),
                None::<()>
            ),
            Err(e) => format!("ERR {e:?}"),
        },
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let failures: u64 = channel.endpoints().iter().map(|e| e.failures).sum();
    eprintln!("tonic cut: {text}; failures {failures}");
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(failures, 1, "{text}");
}
