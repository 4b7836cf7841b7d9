//! Every retry carries the first attempt's head; idempotence decided at failure time honours every rule.

use super::*;
use http::{Response, StatusCode};
use http_body_util::Empty;
use meshless::budget::Budget;
use meshless::deadline::{DeadlineLayer, RequestDeadline};
use meshless::retry::{Idempotency, ReplayBody, RetryLayer};
use std::convert::Infallible;
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Clone, Debug, PartialEq)]
struct Marker(&'static str);

type Req = Request<ReplayBody<Empty<Bytes>>>;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: http::Method,
    uri: String,
    version: http::Version,
    headers: Vec<(String, String)>,
    marker: Option<Marker>,
    idempotent: Option<Idempotent>,
    deadline: Option<RequestDeadline>,
    extensions: usize,
}

/// Answers 503 to the first `fail` attempts, then 200; records what each attempt carried.
fn recording(
    fail: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |req: Req| {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            method: req.method().clone(),
            uri: req.uri().to_string(),
            version: req.version(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect(),
            marker: req.extensions().get::<Marker>().cloned(),
            idempotent: req.extensions().get::<Idempotent>().cloned(),
            deadline: req.extensions().get::<RequestDeadline>().cloned(),
            extensions: req.extensions().len(),
        });
        let status = if seen.len() <= fail {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        async move {
            let mut res = Response::new(Empty::new());
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    })
}

async fn send<S>(mut svc: S, req: Request<Empty<Bytes>>) -> StatusCode
where
    S: Service<
            Request<Empty<Bytes>>,
            Response = Response<
                meshless::deadline::DeadlineBody<meshless::retry::ResponseBody<Empty<Bytes>>>,
            >,
        >,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(req).await.unwrap().status()
}

/// Every attempt carries the first one's head: method, URI, version, repeated headers in
/// order, the caller's own extensions and the same `RequestDeadline`.
#[tokio::test(start_paused = true)]
async fn every_retry_carries_the_first_attempts_head() {
    for (with_marker, with_headers) in [(true, true), (false, false), (true, false), (false, true)]
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = DeadlineLayer::new(Duration::from_secs(5)).layer(
            RetryLayer::new(Budget::default())
                .max_retries(2)
                .backoff(meshless::backoff::Backoff::none())
                .layer(recording(2, seen.clone())),
        );
        let mut b = Request::put("http://svc.example/p?q=1").version(http::Version::HTTP_2);
        if with_headers {
            b = b
                .header("x-a", "1")
                .header("x-a", "2")
                .header("te", "trailers")
                .header("x-a", "3");
        }
        if with_marker {
            b = b.extension(Marker("user"));
        }
        let status = send(svc, b.body(Empty::new()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].deadline.is_some());
        let attempt = |s: &Seen| {
            let found = s.headers.iter().find(|(k, _)| k == "x-meshless-attempt");
            found.map(|(_, v)| v.clone())
        };
        assert_eq!(attempt(&seen[0]).as_deref(), Some("1"));
        for (i, s) in seen.iter().enumerate().skip(1) {
            // A retry carries one extension more: the budget's private `UnsentRetry`
            // token (issue 8), which the balancer reads to give an unsent retry back.
            assert_eq!(s.extensions, seen[0].extensions + 1, "attempt {i}");
            // And its own number (one retry layer per call chain), in the same place.
            assert_eq!(attempt(s), Some((i + 1).to_string()), "attempt {i}");
            let headers = s.headers.iter().map(|(k, v)| match k.as_str() {
                "x-meshless-attempt" => (k.clone(), "1".to_string()),
                _ => (k.clone(), v.clone()),
            });
            let s = Seen {
                extensions: seen[0].extensions,
                headers: headers.collect(),
                ..s.clone()
            };
            assert_eq!(s, seen[0], "attempt {i} ({with_marker}, {with_headers})");
        }
    }
}

/// Idempotence decided at failure time: `Idempotent(false)` beats a route rule and an
/// `Idempotency-Key`; a route rule and an `Idempotency-Key` make a POST retryable; with
/// `idempotency_key(false)` the key does not.
#[tokio::test(start_paused = true)]
async fn idempotence_at_failure_time_honours_every_rule() {
    let rules = || Idempotency::default().route(|_, uri, _| uri.path() == "/search");
    let cases: Vec<(&str, Request<Empty<Bytes>>, Idempotency, usize)> = vec![
        (
            "marked false + route",
            {
                let mut r = Request::post("http://svc/search")
                    .body(Empty::new())
                    .unwrap();
                r.extensions_mut().insert(Idempotent(false));
                r
            },
            rules(),
            1,
        ),
        (
            "marked false + key",
            {
                let mut r = Request::post("http://svc/x")
                    .header("idempotency-key", "k")
                    .body(Empty::new())
                    .unwrap();
                r.extensions_mut().insert(Idempotent(false));
                r
            },
            rules(),
            1,
        ),
        (
            "marked false GET",
            {
                let mut r = Request::get("http://svc/x").body(Empty::new()).unwrap();
                r.extensions_mut().insert(Idempotent(false));
                r
            },
            rules(),
            1,
        ),
        (
            "route",
            Request::post("http://svc/search")
                .body(Empty::new())
                .unwrap(),
            rules(),
            3,
        ),
        (
            "key",
            Request::post("http://svc/x")
                .header("idempotency-key", "k")
                .body(Empty::new())
                .unwrap(),
            rules(),
            3,
        ),
        (
            "key ignored",
            Request::post("http://svc/x")
                .header("idempotency-key", "k")
                .body(Empty::new())
                .unwrap(),
            rules().idempotency_key(false),
            1,
        ),
        (
            "plain POST",
            Request::post("http://svc/x").body(Empty::new()).unwrap(),
            rules(),
            1,
        ),
        (
            "marked true POST",
            {
                let mut r = Request::post("http://svc/x").body(Empty::new()).unwrap();
                r.extensions_mut().insert(Idempotent(true));
                r
            },
            rules(),
            3,
        ),
    ];
    for (name, req, rules, expected) in cases {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = DeadlineLayer::new(Duration::from_secs(5)).layer(
            RetryLayer::new(Budget::default())
                .max_retries(2)
                .backoff(meshless::backoff::Backoff::none())
                .idempotency(rules)
                .layer(recording(5, seen.clone())),
        );
        let status = send(svc, req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(seen.lock().unwrap().len(), expected, "{name}: attempts");
    }
}
