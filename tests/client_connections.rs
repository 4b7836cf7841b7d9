//! Connections through `meshless::http::Client`, against raw TCP servers that read the exact
//! bytes: `Host` / `:authority` name the logical host and never carry userinfo, a POST on a
//! pooled connection the server closed is sent again only when it never left, the pool lets go
//! of idle connections, HTTP/2 pings find a black-holed connection, and `Duration::MAX` settings
//! mean "no limit".

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::http::Client;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request's head and body, as a raw server read them.
type Request = (String, Vec<u8>);

/// Reads one HTTP/1.1 request (head and `content-length` body) from `tcp`.
async fn read_request(tcp: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}

/// A raw HTTP/1.1 server answering `200 ok` and recording every request head and body. With
/// `close_after_each`, it closes each connection right after its answer, without
/// `Connection: close`, as a server whose keep-alive timer just fired would.
struct RawServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<Mutex<usize>>,
}

async fn raw_server(close_after_each: bool) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(Mutex::new(0));
    let (seen, opened) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            *opened.lock().unwrap() += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(request) = read_request(&mut tcp).await {
                    seen.lock().unwrap().push(request);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(answer).await.is_err() || close_after_each {
                        return;
                    }
                }
            });
        }
    });
    RawServer {
        addr,
        requests,
        connections,
    }
}

impl RawServer {
    fn heads(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.clone())
            .collect()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn host_of(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
}

async fn ok(client: &Client, uri: &str) {
    let res = client.get(uri).await.expect("response");
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.expect("body");
}

#[tokio::test]
async fn host_names_the_logical_host_and_never_carries_userinfo() {
    let server = raw_server(false).await;
    let client = Client::builder()
        .endpoints([server.addr.to_string()])
        .build()
        .expect("client");
    ok(&client, "http://user:pass@svc.example/").await;
    ok(&client, "http://svc.example:8080/a?b=c").await;
    ok(&client, "/relative").await;

    let named = Client::builder()
        .endpoints([server.addr.to_string()])
        .authority("svc.example")
        .build()
        .expect("client");
    ok(&named, "/relative").await;

    let discovered = Client::builder()
        .dns(format!("127.0.0.1:{}", server.addr.port()))
        .build()
        .expect("client");
    ok(&discovered, "/dns").await;

    let heads = server.heads();
    let hosts: Vec<Option<String>> = heads.iter().map(|h| host_of(h)).collect();
    let endpoint = server.addr.to_string();
    assert_eq!(
        hosts,
        [
            Some("svc.example".to_string()),
            Some("svc.example:8080".to_string()),
            Some(endpoint.clone()),
            Some("svc.example".to_string()),
            Some(endpoint),
        ]
    );
    for head in &heads {
        assert!(!head.contains("user") && !head.contains("pass"), "{head}");
    }
    assert!(
        heads[1].starts_with("GET /a?b=c HTTP/1.1\r\n"),
        "{}",
        heads[1]
    );
}

#[tokio::test]
async fn http2_authority_names_the_logical_host_without_userinfo() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                record
                    .lock()
                    .unwrap()
                    .push((req.version(), req.uri().authority().map(|a| a.to_string())));
                async { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new()))) }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .build()
        .expect("client");
    ok(&client, "http://user:pass@svc.example/x").await;
    ok(&client, "/y").await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (http::Version::HTTP_2, Some("svc.example".to_string())),
            (http::Version::HTTP_2, Some(addr.to_string())),
        ]
    );
}

#[tokio::test]
async fn posts_on_connections_the_server_closes_after_each_answer_all_arrive_once() {
    let server = raw_server(true).await;
    // No retries of ours: every POST must be sent once, on a connection that is still open.
    let client = Client::builder()
        .endpoints([server.addr.to_string()])
        .max_retries(0)
        .build()
        .expect("client");
    for i in 0..30 {
        let res = client
            .post("http://svc.example/orders", format!("order-{i}"))
            .await
            .unwrap_or_else(|e| panic!("POST {i}: {e:?}"));
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.expect("body");
    }
    let bodies: Vec<Vec<u8>> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    let expected: Vec<Vec<u8>> = (0..30).map(|i| format!("order-{i}").into_bytes()).collect();
    assert_eq!(bodies, expected, "every POST once, in order, none twice");
    assert_eq!(server.connections(), 30, "each on its own connection");
}

/// Reads one HTTP/1.1 request from a blocking socket; its body, or `None` at end of stream.
fn read_blocking(tcp: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= at + 4 + length {
                return Some(buf[at + 4..at + 4 + length].to_vec());
            }
        }
        let n = tcp.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_request_written_to_a_connection_the_server_had_closed_is_never_sent_twice() {
    use std::io::Write;
    use std::sync::mpsc;
    // A blocking server on its own thread, stepped by the test: it answers one request per
    // connection, then closes that connection (no `Connection: close`) when told to, and
    // reports when it has. The test holds its runtime's only thread while the close lands, so
    // the client's pool still holds the connection as open: the next POST is handed to a
    // connection whose peer is gone, the case a keep-alive timer firing produces. hyper writes
    // it before it reads the close, so it cannot prove that the request never left: a GET is
    // retried by the retry layer, a POST fails, and neither reaches the server twice.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (closed_tx, closed_rx) = mpsc::channel::<()>();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let record = bodies.clone();
    let connections = Arc::new(Mutex::new(0usize));
    let opened = connections.clone();
    std::thread::spawn(move || {
        while let Ok((mut tcp, _)) = listener.accept() {
            *opened.lock().unwrap() += 1;
            let Some(body) = read_blocking(&mut tcp) else {
                continue;
            };
            record.lock().unwrap().push(body);
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            if go_rx.recv().is_err() {
                return;
            }
            drop(tcp);
            if closed_tx.send(()).is_err() {
                return;
            }
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .backoff(meshless::backoff::Backoff::none())
        .build()
        .expect("client");
    let mut posts_failed = 0;
    for i in 0..6 {
        let uri = format!("http://svc.example/orders/{i}");
        let res = if i % 2 == 0 {
            client.get(&uri).await.map(Some).expect("GETs are retried")
        } else {
            match client.post(&uri, format!("order-{i}")).await {
                Ok(res) => Some(res),
                Err(_) => {
                    posts_failed += 1;
                    None
                }
            }
        };
        if let Some(res) = res {
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.expect("body");
            go_tx.send(()).expect("server");
            // Blocking on purpose: the runtime must not see the close before the next request.
            closed_rx.recv().expect("server");
        }
    }
    let bodies = bodies.lock().unwrap().clone();
    for i in (1..6).step_by(2) {
        let body = format!("order-{i}").into_bytes();
        let copies = bodies.iter().filter(|b| **b == body).count();
        assert!(copies <= 1, "POST {i} reached the server {copies} times");
    }
    // Each GET after the first met a closed connection and was answered on a fresh one.
    let gets = bodies.iter().filter(|b| b.is_empty()).count();
    assert_eq!(gets, 3, "{bodies:?}");
    assert!(posts_failed <= 3);
}

#[tokio::test]
async fn idle_connections_leave_the_pool_after_the_idle_timeout() {
    let server = raw_server(false).await;
    let short = Client::builder()
        .endpoints([server.addr.to_string()])
        .pool_idle_timeout(Some(Duration::from_millis(100)))
        .build()
        .expect("client");
    ok(&short, "/one").await;
    ok(&short, "/two").await;
    assert_eq!(server.connections(), 1, "reused while fresh");
    // Elapsed time decides expiry at checkout: twice the timeout is expired for certain.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(&short, "/three").await;
    assert_eq!(server.connections(), 2, "the idle connection was let go");

    let kept = Client::builder()
        .endpoints([server.addr.to_string()])
        .pool_idle_timeout(None)
        .build()
        .expect("client");
    ok(&kept, "/one").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(&kept, "/two").await;
    assert_eq!(
        server.connections(),
        3,
        "no idle timeout: the connection is reused"
    );
}

#[tokio::test]
async fn duration_max_settings_mean_no_limit_and_never_panic() {
    let server = raw_server(false).await;
    let max = Duration::MAX;
    let client = Client::builder()
        .endpoints([server.addr.to_string()])
        .deadline(max)
        .attempt_timeout(max)
        .connect_timeout(max)
        .pool_idle_timeout(Some(max))
        .tcp_keepalive(Some(max))
        .http2_keepalive(Some(max))
        .http2_keepalive_timeout(max)
        .build()
        .expect("client");
    ok(&client, "/max").await;
    // The default attempt timeout is derived from the deadline.
    let derived = Client::builder()
        .endpoints([server.addr.to_string()])
        .deadline(max)
        .build()
        .expect("client");
    ok(&derived, "/derived").await;
    let discovered = Client::builder()
        .dns(format!("127.0.0.1:{}", server.addr.port()))
        .dns_refresh(max)
        .deadline(max)
        .build()
        .expect("client");
    ok(&discovered, "/dns").await;
    assert_eq!(server.heads().len(), 3);
}

#[tokio::test]
async fn http2_pings_find_a_black_holed_connection() {
    // An HTTP/2 backend behind a proxy that can swallow its first connection: once frozen, the
    // proxy keeps both sockets open and forwards nothing, as a dead network path would.
    let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_addr = backend.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = backend.accept().await {
            let service = service_fn(|_req: hyper::Request<Incoming>| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_addr = proxy.local_addr().expect("addr");
    let freeze = Arc::new(tokio::sync::Notify::new());
    let frozen = freeze.clone();
    tokio::spawn(async move {
        let mut first = true;
        let mut swallowed = Vec::new();
        while let Ok((mut client_side, _)) = proxy.accept().await {
            let mut server_side = TcpStream::connect(backend_addr).await.expect("backend");
            if !std::mem::take(&mut first) {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client_side, &mut server_side).await;
                });
                continue;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client_side, &mut server_side) => {}
                _ = frozen.notified() => {}
            }
            swallowed.push((client_side, server_side));
        }
    });

    let attempt_timeout = Duration::from_secs(3);
    let client = Client::builder()
        .endpoints([proxy_addr.to_string()])
        .http2_prior_knowledge(true)
        .http2_keepalive(Some(Duration::from_millis(100)))
        .http2_keepalive_timeout(Duration::from_millis(100))
        .attempt_timeout(attempt_timeout)
        .deadline(Duration::from_secs(10))
        .build()
        .expect("client");
    ok(&client, "/warm").await;
    freeze.notify_one();

    // Without pings the GET would wait on the swallowed connection until its attempt timed
    // out, and its retry would find the same connection in the pool.
    let started = std::time::Instant::now();
    ok(&client, "/after-freeze").await;
    assert!(
        started.elapsed() < attempt_timeout,
        "took {:?}",
        started.elapsed()
    );
}
