//! An HTTP/2 answer's `content-length` against its DATA: complete bodies (304, trailers, a
//! HEAD, leading zeros, an encoding) are no error when the stream is then reset with
//! `NO_ERROR`; a short one is, however the caller reads it, and a caller that drops it is
//! charged nothing.

use super::*;
use http_body_util::Empty;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// 55ce1db: h2 servers

type Script = Arc<
    dyn Fn(
            http::Request<h2::RecvStream>,
            h2::server::SendResponse<Bytes>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

async fn serve_h2(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(script(req, respond));
                }
            });
        }
    });
    addr
}

fn h2_client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(ms(3000))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap()
}

/// Serves `status` with `headers`, `data` without END_STREAM, optional trailers, then RST(NO_ERROR)
/// when no trailers.
fn answer(
    status: u16,
    headers: Vec<(&'static str, String)>,
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
) -> Script {
    Arc::new(move |_req, mut respond| {
        let headers = headers.clone();
        let data = data.clone();
        let trailers = trailers.clone();
        Box::pin(async move {
            let mut b = Response::builder().status(status);
            for (k, v) in &headers {
                b = b.header(*k, v.as_str());
            }
            let mut s = respond.send_response(b.body(()).unwrap(), false).unwrap();
            if !data.is_empty() {
                let _ = s.send_data(Bytes::from(data), false);
            }
            match trailers {
                Some(t) => {
                    let _ = s.send_trailers(t);
                }
                None => {
                    tokio::time::sleep(ms(30)).await;
                    s.send_reset(h2::Reason::NO_ERROR);
                }
            }
            std::future::pending::<()>().await;
        })
    })
}

async fn get_all(client: &Client, method: http::Method) -> Result<Bytes, String> {
    let req = http::Request::builder()
        .method(method)
        .uri("http://svc/x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = client.request(req).await.map_err(|e| chain(&e))?;
    tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .map_err(|_| "timeout".to_string())?
        .map(|c| c.to_bytes())
        .map_err(|e| format!("{e}"))
}

#[tokio::test]
async fn h2_304_with_content_length_reset_no_error_is_complete() {
    let addr = serve_h2(answer(
        304,
        vec![("content-length", "100".into())],
        vec![],
        None,
    ))
    .await;
    let client = h2_client(addr);
    let body = get_all(&client, http::Method::GET).await;
    settle().await;
    eprintln!("{body:?} {:?}", client.endpoints());
    assert!(body.is_ok(), "{body:?}");
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

#[tokio::test]
async fn h2_complete_body_with_leading_zero_length_and_gzip_then_reset() {
    let addr = serve_h2(answer(
        200,
        vec![
            ("content-length", "0010".into()),
            ("content-encoding", "gzip".into()),
        ],
        b"0123456789".to_vec(),
        None,
    ))
    .await;
    let client = h2_client(addr);
    let body = get_all(&client, http::Method::GET).await;
    settle().await;
    eprintln!("{body:?} {:?}", client.endpoints());
    assert_eq!(body.as_deref().ok(), Some(&b"0123456789"[..]), "{body:?}");
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

#[tokio::test]
async fn h2_complete_body_with_trailers() {
    let mut t = HeaderMap::new();
    t.insert("x-sum", HeaderValue::from_static("1"));
    let addr = serve_h2(answer(
        200,
        vec![("content-length", "10".into())],
        b"0123456789".to_vec(),
        Some(t),
    ))
    .await;
    let client = h2_client(addr);
    let body = get_all(&client, http::Method::GET).await;
    settle().await;
    assert!(body.is_ok(), "{body:?}");
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

#[tokio::test]
async fn h2_head_via_request_with_length_and_reset() {
    let addr = serve_h2(answer(
        200,
        vec![("content-length", "100".into())],
        vec![],
        None,
    ))
    .await;
    let client = h2_client(addr);
    let body = get_all(&client, http::Method::HEAD).await;
    settle().await;
    assert!(body.is_ok(), "{body:?}");
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

/// Short, read frame by frame, stopping at is_end_stream (never polling the final None).
#[tokio::test]
async fn h2_short_body_read_to_is_end_stream() {
    let addr = serve_h2(answer(
        200,
        vec![("content-length", "100".into())],
        b"0123456789".to_vec(),
        None,
    ))
    .await;
    let client = h2_client(addr);
    let res = client.get("http://svc/x").await.unwrap();
    let mut body = res.into_body();
    let mut frames = Vec::new();
    loop {
        use http_body::Body;
        let f = tokio::time::timeout(ms(3000), body.frame())
            .await
            .expect("frame");
        frames.push(format!(
            "{:?}",
            f.as_ref()
                .map(|r| r.as_ref().map(|f| f.is_data()).map_err(|e| e.to_string()))
        ));
        if f.is_none() || matches!(f, Some(Err(_))) || body.is_end_stream() {
            break;
        }
    }
    drop(body);
    settle().await;
    eprintln!(
        "{frames:?} {:?} {:?}",
        client.endpoints(),
        client.retry_stats()
    );
    assert!(frames.iter().any(|f| f.contains("Err")), "{frames:?}");
    assert_eq!(client.endpoints()[0].failures, 1);
    books(&client);
}

/// Short body, the caller reads one frame and drops it: nothing charged.
#[tokio::test]
async fn h2_short_body_dropped_early_is_not_charged() {
    let addr = serve_h2(answer(
        200,
        vec![("content-length", "100".into())],
        b"0123456789".to_vec(),
        None,
    ))
    .await;
    let client = h2_client(addr);
    let res = client.get("http://svc/x").await.unwrap();
    let mut body = res.into_body();
    let _ = body.frame().await;
    drop(body);
    settle().await;
    tokio::time::sleep(ms(100)).await;
    eprintln!("{:?} {:?}", client.endpoints(), client.retry_stats());
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

/// gRPC over HTTP/2 with a content-length that covers the one message exactly, then
/// trailers grpc-status 0: complete, a success, nothing charged.
#[tokio::test]
async fn h2_grpc_with_content_length_and_trailers_is_a_success() {
    let msg = {
        let mut m = vec![0u8, 0, 0, 0, 3];
        m.extend_from_slice(b"abc");
        m
    };
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    let addr = serve_h2(answer(
        200,
        vec![
            ("content-type", "application/grpc".into()),
            ("content-length", msg.len().to_string()),
        ],
        msg.clone(),
        Some(t),
    ))
    .await;
    let client = h2_client(addr);
    let req = http::Request::post("http://svc/s.S/M")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let res = client.request(req).await.map_err(|e| chain(&e)).unwrap();
    let body = res
        .into_body()
        .collect()
        .await
        .map(|c| (c.trailers().cloned(), c.to_bytes()));
    settle().await;
    eprintln!(
        "{body:?} {:?} {:?}",
        client.endpoints(),
        client.retry_stats()
    );
    assert!(body.is_ok(), "{body:?}");
    assert_eq!(client.endpoints()[0].failures, 0);
    assert_eq!(client.retry_stats().successes(), 1);
    books(&client);
}
