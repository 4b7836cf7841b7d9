//! Kubernetes discovery: a `410 Gone` at watch start relists (src/kube/discover.rs).

use bytes::Bytes;
use futures_core::Stream;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshless::kube::KubeService;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

const LIST: &str = r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"5"},"items":[{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-a","namespace":"shop","resourceVersion":"4","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true,"serving":true,"terminating":false}}],"ports":[{"name":"http","protocol":"TCP","port":80}]}]}"#;
const GONE: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (6)","reason":"Expired","code":410}"#;

/// An API server (a misbehaving proxy in front of one, an aggregated API) that lists fine but
/// answers every watch `410 Gone`, even from the version it just listed.
async fn always_gone() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lists = Arc::new(AtomicUsize::new(0));
    let watches = Arc::new(AtomicUsize::new(0));
    let (l, w) = (lists.clone(), watches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (l, w) = (l.clone(), w.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let watch = req
                        .uri()
                        .query()
                        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true"));
                    let (status, body) = if watch {
                        w.fetch_add(1, Ordering::SeqCst);
                        (StatusCode::GONE, GONE)
                    } else {
                        l.fetch_add(1, Ordering::SeqCst);
                        (StatusCode::OK, LIST)
                    };
                    async move {
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *response.status_mut() = status;
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, lists, watches)
}

/// Every other watch failure is retried behind kube-runtime's backoff (0.8 s doubling to
/// 30 s). A `410 Gone` at watch start now builds a new watcher at once, with a backoff of its
/// own starting afresh: against a server that answers every watch 410 the discovery lists and
/// watches again as fast as the round trips allow, a hot loop of LISTs against the API server
/// (each a full read of the Service's slices) from every client of every pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_answers_every_watch_410_is_not_relisted_in_a_hot_loop() {
    let (url, lists, watches) = always_gone().await;
    let kube = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let mut stream = KubeService::new(kube, "shop", "web")
        .port("http")
        .discover()
        .expect("valid names");
    let poller = tokio::spawn(async move {
        while let Some(_change) =
            std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await
        {}
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    poller.abort();
    let (lists, watches) = (lists.load(Ordering::SeqCst), watches.load(Ordering::SeqCst));
    assert!(
        lists <= 10,
        "in 3 s against an API server that answers every watch 410 Gone, the discovery sent \
         {lists} LISTs and {watches} watches: the 410 path restarts the watcher with no backoff \
         (kube-runtime's would allow about 3 in 3 s)"
    );
}
