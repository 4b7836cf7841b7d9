//! Contract tests for the retry layer, alone and stacked as
//! `DeadlineLayer` → `RetryLayer` → `AttemptTimeoutLayer` → service.
//!
//! Every test runs on tokio's paused clock: time only moves when every task waits on a timer, so
//! the virtual times asserted here are exact, and no test sleeps for real.
//!
//! The mock service follows a script (one step per attempt, the last step repeating) and logs,
//! for each attempt, its number, method, path, headers, the virtual time it arrived, the request
//! body it read (chunk by chunk, with trailers), and the virtual time its future finished or was
//! dropped.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DEADLINE_HEADER, DeadlineLayer, RequestDeadline};
use meshless::error::Kind;
use meshless::retry::{Idempotency, Idempotent, ReplayBody, RetryLayer};
use meshless::{BoxError, Error};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// The mock service.
// ---------------------------------------------------------------------------------------------

/// How much of the request body an attempt reads before answering.
#[derive(Clone, Copy, Debug)]
enum Read {
    /// Every frame, trailers included.
    All,
    /// This many data frames, then stop (the rest is never read by this attempt).
    Chunks(usize),
    /// Nothing: the request "never reached" the server.
    Nothing,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Status(u16),
    Error(io::ErrorKind),
    /// Never answers.
    Hang,
}

/// What the mock does on one attempt.
#[derive(Clone, Debug)]
struct Step {
    read: Read,
    delay: Duration,
    outcome: Outcome,
    headers: Vec<(&'static str, &'static str)>,
    trailers: Vec<(&'static str, &'static str)>,
}

/// Reads the whole body, then answers with `status`.
fn reply(status: u16) -> Step {
    Step {
        read: Read::All,
        delay: Duration::ZERO,
        outcome: Outcome::Status(status),
        headers: Vec::new(),
        trailers: Vec::new(),
    }
}

/// Fails with an I/O error without reading the body.
fn fail(kind: io::ErrorKind) -> Step {
    Step {
        read: Read::Nothing,
        outcome: Outcome::Error(kind),
        ..reply(0)
    }
}

/// Never answers.
fn hang() -> Step {
    Step {
        read: Read::Nothing,
        outcome: Outcome::Hang,
        ..reply(0)
    }
}

impl Step {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn trailer(mut self, name: &'static str, value: &'static str) -> Self {
        self.trailers.push((name, value));
        self
    }
    fn reading(mut self, read: Read) -> Self {
        self.read = read;
        self
    }
    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What the mock saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    attempt: usize,
    method: Method,
    path: String,
    headers: HeaderMap,
    /// Virtual time since the mock was built when the attempt arrived.
    at: Duration,
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    body_error: Option<String>,
    /// Virtual time when the attempt's future completed or was dropped.
    ended: Option<Duration>,
}

impl Seen {
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

#[derive(Clone)]
struct Log {
    start: Instant,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Log {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn arrivals(&self) -> Vec<Duration> {
        self.all().iter().map(|s| s.at).collect()
    }
    fn update(&self, idx: usize, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap()[idx]);
    }
}

/// Records when an attempt's future finished or was dropped (an attempt cut by a timeout is
/// dropped by the layer that timed it out).
struct EndGuard {
    log: Log,
    idx: usize,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let now = Instant::now() - self.log.start;
        self.log.update(self.idx, |s| s.ended = Some(now));
    }
}

/// A response body: one data frame, then optional trailers.
#[derive(Debug, Default)]
struct ResBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().unwrap());
    }
    map
}

/// A scripted service. Attempt `n` (counted across every request sent to it) follows
/// `script[n - 1]`, or the last step once the script has run out. Its response body is
/// `"attempt n"`.
fn mock<B>(
    script: Vec<Step>,
) -> (
    impl Service<Request<ReplayBody<B>>, Response = Response<ResBody>, Error = io::Error> + Clone,
    Log,
)
where
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    assert!(!script.is_empty());
    let log = Log {
        start: Instant::now(),
        seen: Arc::default(),
    };
    let script = Arc::new(script);
    let handle = log.clone();
    let svc = tower::service_fn(move |req: Request<ReplayBody<B>>| {
        let (idx, step) = {
            let mut seen = log.seen.lock().unwrap();
            let idx = seen.len();
            seen.push(Seen {
                attempt: idx + 1,
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
                headers: req.headers().clone(),
                at: Instant::now() - log.start,
                chunks: Vec::new(),
                trailers: None,
                body_error: None,
                ended: None,
            });
            (idx, script[idx.min(script.len() - 1)].clone())
        };
        let log = log.clone();
        async move {
            let _guard = EndGuard {
                log: log.clone(),
                idx,
            };
            let mut body = req.into_body();
            let mut data_frames = 0;
            loop {
                let more = match step.read {
                    Read::All => true,
                    Read::Chunks(n) => data_frames < n,
                    Read::Nothing => false,
                };
                if !more {
                    break;
                }
                match body.frame().await {
                    None => break,
                    Some(Err(e)) => {
                        log.update(idx, |s| s.body_error = Some(e.to_string()));
                        break;
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            data_frames += 1;
                            log.update(idx, |s| s.chunks.push(data));
                        }
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                log.update(idx, |s| s.trailers = Some(trailers));
                            }
                        }
                    },
                }
            }
            drop(body);
            if !step.delay.is_zero() {
                tokio::time::sleep(step.delay).await;
            }
            match step.outcome {
                Outcome::Hang => std::future::pending().await,
                Outcome::Error(kind) => Err(io::Error::from(kind)),
                Outcome::Status(code) => {
                    let trailers = (!step.trailers.is_empty()).then(|| header_map(&step.trailers));
                    let mut res = Response::new(ResBody {
                        data: Some(Bytes::from(format!("attempt {}", idx + 1))),
                        trailers,
                    });
                    *res.status_mut() = StatusCode::from_u16(code).unwrap();
                    *res.headers_mut() = header_map(&step.headers);
                    Ok(res)
                }
            }
        }
    });
    (svc, handle)
}

// ---------------------------------------------------------------------------------------------
// Request bodies and helpers.
// ---------------------------------------------------------------------------------------------

/// A streaming request body: its chunks arrive one by one (each poll between two frames is
/// `Pending`), then optional trailers. Its size is unknown up front.
struct Chunked {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    primed: bool,
}

impl Chunked {
    fn new(chunks: &[&[u8]], trailers: Option<HeaderMap>) -> Self {
        Chunked {
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            trailers,
            primed: false,
        }
    }
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.primed {
            // Not there yet: the next frame "arrives" on the next poll.
            this.primed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.primed = false;
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

fn request<B>(method: Method, path: &str, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri(format!("http://svc{path}"))
        .body(body)
        .unwrap()
}

fn get(path: &str) -> Request<String> {
    request(Method::GET, path, String::new())
}

fn post(path: &str, body: &str) -> Request<String> {
    request(Method::POST, path, body.to_owned())
}

/// A retry layer with a generous budget and no backoff, for tests about decisions, not timing.
fn quick() -> RetryLayer {
    RetryLayer::new(Budget::default()).backoff(Backoff::none())
}

async fn send<S, B, RB>(svc: &mut S, req: Request<B>) -> Result<Response<RB>, Error>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Error>,
{
    svc.ready().await?;
    svc.call(req).await
}

async fn text(res: Response<ResBody>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The first I/O error in an error's source chain (the error itself included).
fn io_kind_in_chain(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// 1. Attempt counts.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn attempts_get_503_twice_then_200_succeeds_on_the_third_attempt() {
    let (inner, log) = mock::<String>(vec![reply(503), reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()); // default: 2 retries, default backoff
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "attempt 3");
    assert_eq!(log.count(), 3);
    assert!(log.all().iter().all(|s| s.method == Method::GET));
    assert_eq!(stats.requests(), 1);
    assert_eq!(stats.retries(), 2);
    assert_eq!(stats.retries_exhausted(), 0);
    assert_eq!(stats.budget_exhausted(), 0);
}

#[tokio::test(start_paused = true)]
async fn attempts_max_retries_1_returns_the_503_after_two_attempts() {
    let (inner, log) = mock::<String>(vec![reply(503), reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).max_retries(1);
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(text(res).await, "attempt 2", "the last attempt's response");
    assert_eq!(log.count(), 2);
    assert_eq!(stats.requests(), 1);
    assert_eq!(stats.retries(), 1);
    assert_eq!(stats.retries_exhausted(), 1);

    // max_retries(0) turns retries off altogether.
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).max_retries(0);
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!((stats.retries(), stats.retries_exhausted()), (0, 1));
}

// ---------------------------------------------------------------------------------------------
// 2. Errors.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn errors_connection_refused_post_is_retried() {
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionRefused), reply(201)]);
    let layer = quick();
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    let res = send(&mut svc, post("/orders", "order-1")).await.unwrap();
    assert_eq!(res.status(), 201);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.method == Method::POST && s.path == "/orders")
    );
    assert!(
        seen[0].chunks.is_empty(),
        "the refused attempt read nothing"
    );
    assert_eq!(seen[1].body(), b"order-1");
    assert_eq!(stats.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn errors_connection_reset_retried_for_get_but_not_for_post() {
    // GET: a reset is retried.
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let res = send(&mut quick().layer(inner), get("/items"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 2);

    // POST: the server may have acted on it, so the error comes back as it is.
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let layer = quick();
    let stats = layer.stats();
    let err = send(&mut layer.layer(inner), post("/orders", "order-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Service);
    let source = err.source().expect("the io error is the source");
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn errors_retries_exhausted_on_an_error_carries_the_io_error() {
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset)]);
    let layer = quick();
    let stats = layer.stats();
    let err = send(&mut layer.layer(inner), get("/items"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::RetriesExhausted);
    assert_eq!(err.attempts(), 3);
    assert_eq!(
        io_kind_in_chain(err.source().expect("a source")),
        Some(io::ErrorKind::ConnectionReset)
    );
    assert_eq!(log.count(), 3);
    assert_eq!(stats.retries(), 2);
    assert_eq!(stats.retries_exhausted(), 1);
}

// ---------------------------------------------------------------------------------------------
// 3. Idempotency rules.
// ---------------------------------------------------------------------------------------------

/// Sends `req` through `layer` to a service answering `first`, then 200; returns the attempts.
async fn attempts_with(layer: RetryLayer, req: Request<String>, first: u16) -> usize {
    let (inner, log) = mock::<String>(vec![reply(first), reply(200)]);
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    let expect = if log.count() == 1 { first } else { 200 };
    assert_eq!(res.status(), expect);
    log.count()
}

#[tokio::test(start_paused = true)]
async fn idempotency_post_502_is_not_retried() {
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 502).await, 1);
    // 504 and 408 follow the same rule.
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 504).await, 1);
    // The same 502 is retried for a GET.
    assert_eq!(attempts_with(quick(), get("/orders"), 502).await, 2);
}

#[tokio::test(start_paused = true)]
async fn idempotency_post_429_is_retried_but_a_plain_503_is_not() {
    // 429 proves the server did not act (RFC 6585); a plain 503 may come from a proxy or an
    // application that acted first.
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 429).await, 2);
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 503).await, 1);
    // A 503 that says when to come back is the server declining the request.
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "0"), reply(200)]);
    let res = send(&mut quick().layer(inner), post("/orders", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 2);
    // A plain 503 is retried for a GET.
    assert_eq!(attempts_with(quick(), get("/orders"), 503).await, 2);
    // 500 is never retried, even for a GET.
    assert_eq!(attempts_with(quick(), get("/orders"), 500).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_post_marked_idempotent_is_retried_on_502() {
    let mut req = post("/charge", "charge-7");
    req.extensions_mut().insert(Idempotent(true));
    let (inner, log) = mock::<String>(vec![reply(502), reply(200)]);
    let res = send(&mut quick().layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body(), b"charge-7");
}

#[tokio::test(start_paused = true)]
async fn idempotency_all_true_retries_post_on_502() {
    let layer = quick().idempotency(Idempotency::default().all(true));
    assert_eq!(attempts_with(layer, post("/orders", "x"), 502).await, 2);
    // A per-request mark still wins over the client setting.
    let layer = quick().idempotency(Idempotency::default().all(true));
    let mut req = post("/orders", "x");
    req.extensions_mut().insert(Idempotent(false));
    assert_eq!(attempts_with(layer, req, 502).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_per_route_rule() {
    let rules = || {
        Idempotency::default()
            .route(|method, uri, _| method == Method::POST && uri.path() == "/search")
    };
    let layer = quick().idempotency(rules());
    assert_eq!(attempts_with(layer, post("/search", "q=1"), 502).await, 2);
    let layer = quick().idempotency(rules());
    assert_eq!(attempts_with(layer, post("/orders", "x"), 502).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_header_makes_post_retryable() {
    let keyed = || {
        let mut req = post("/orders", "x");
        req.headers_mut()
            .insert("idempotency-key", "8e03978e-40d5".parse().unwrap());
        req
    };
    let (inner, log) = mock::<String>(vec![reply(502), reply(200)]);
    let res = send(&mut quick().layer(inner), keyed()).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["idempotency-key"], "8e03978e-40d5");

    // Not when the client disabled the header rule.
    let layer = quick().idempotency(Idempotency::default().idempotency_key(false));
    assert_eq!(attempts_with(layer, keyed(), 502).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_get_marked_not_idempotent_is_not_retried() {
    let marked = || {
        let mut req = get("/items");
        req.extensions_mut().insert(Idempotent(false));
        req
    };
    assert_eq!(attempts_with(quick(), marked(), 502).await, 1);

    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let err = send(&mut quick().layer(inner), marked()).await.unwrap_err();
    assert_eq!(err.kind(), Kind::Service);
    assert_eq!(log.count(), 1);

    // `Idempotent(false)` trusts no answer from the server: not even 429.
    assert_eq!(attempts_with(quick(), marked(), 503).await, 1);
    assert_eq!(attempts_with(quick(), marked(), 429).await, 1);
    // Only an attempt that never left is repeated.
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionRefused), reply(200)]);
    let res = send(&mut quick().layer(inner), marked()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. Backoff bounds.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn backoff_full_jitter_waits_stay_under_the_exponential_ceiling() {
    const RETRIES: usize = 6;
    const REQUESTS: usize = 30;
    let ceilings = [25, 50, 100, 200, 250, 250];
    let budget = Budget::builder().min_per_second(100.0).build().unwrap();
    let layer = RetryLayer::new(budget)
        .max_retries(RETRIES as u32)
        .backoff(Backoff::full_jitter(ms(25), ms(250)).unwrap());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![reply(503)]);
    let mut svc = layer.layer(inner);

    let mut waits: Vec<Vec<Duration>> = Vec::new();
    for _ in 0..REQUESTS {
        let before = log.count();
        let started = Instant::now();
        let res = send(&mut svc, get("/items")).await.unwrap();
        assert_eq!(res.status(), 503);
        let arrivals = log.arrivals()[before..].to_vec();
        assert_eq!(arrivals.len(), RETRIES + 1);
        assert_eq!(
            arrivals[0],
            started - log.start,
            "the first attempt is not delayed"
        );
        let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
        for (n, (gap, ceiling)) in gaps.iter().zip(ceilings).enumerate() {
            assert!(
                *gap <= ms(ceiling),
                "wait before retry {} was {gap:?}, over min(250, 25·2^{n}) = {ceiling} ms",
                n + 1
            );
        }
        waits.push(gaps);
    }
    assert_eq!(stats.retries(), (REQUESTS * RETRIES) as u64);
    // The waits are jittered, not fixed at zero or at the ceiling: over 90 samples whose
    // ceiling is 200-250 ms, some fall in each half (failure odds ~2^-90 each way).
    let late: Vec<Duration> = waits.iter().flat_map(|g| g[3..].to_vec()).collect();
    assert!(late.iter().any(|w| *w < ms(100)), "{late:?}");
    assert!(late.iter().any(|w| *w > ms(125)), "{late:?}");
    let total: Duration = waits.iter().flatten().sum();
    assert!(total > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn backoff_none_retries_at_the_same_instant() {
    let (inner, log) = mock::<String>(vec![reply(503), fail(io::ErrorKind::ConnectionReset)]);
    let start = Instant::now();
    let layer = RetryLayer::new(Budget::default())
        .max_retries(4)
        .backoff(Backoff::none());
    let err = send(&mut layer.layer(inner), get("/items"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::RetriesExhausted);
    assert_eq!(log.arrivals(), vec![Duration::ZERO; 5]);
    assert_eq!(Instant::now() - start, Duration::ZERO);
}

// ---------------------------------------------------------------------------------------------
// 5. Pushback.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn pushback_retry_after_delays_the_retry() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let layer = RetryLayer::new(Budget::default()); // jittered backoff of at most 25 ms
    let start = Instant::now();
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    // Never earlier than the server asked; the backoff (≤ 25 ms) is not added on top.
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(2_000)]);
    assert_eq!(Instant::now() - start, ms(2_000));

    // 429 carries Retry-After too.
    let (inner, log) = mock::<String>(vec![reply(429).header("retry-after", "1"), reply(200)]);
    let res = send(&mut quick().layer(inner), post("/orders", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(1_000)]);
}

/// Behind a balancer, the endpoint that pushed back is kept away by the balancer; the retry
/// goes out after the ordinary backoff, and a pushback that forbids retries still forbids them.
#[tokio::test(start_paused = true)]
async fn pushback_per_endpoint_does_not_delay_the_retry() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "30"), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).pushback_per_endpoint(true);
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    let arrivals = log.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] <= ms(25), "only the backoff: {arrivals:?}");

    let (inner, log) = mock::<String>(vec![grpc("14").header("grpc-retry-pushback-ms", "-1")]);
    let layer = RetryLayer::new(Budget::default()).pushback_per_endpoint(true);
    let stats = layer.stats();
    send(&mut layer.layer(inner), idempotent_grpc_post())
        .await
        .unwrap();
    assert_eq!(log.count(), 1);
    assert_eq!(stats.pushback_refused(), 1);
}

#[tokio::test(start_paused = true)]
async fn pushback_longer_than_max_pushback_returns_the_response() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let layer = quick().max_pushback(ms(1_000));
    let stats = layer.stats();
    let start = Instant::now();
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "2");
    assert_eq!(log.count(), 1);
    assert_eq!(stats.pushback_refused(), 1);
    assert_eq!(stats.retries(), 0);
    assert_eq!(Instant::now() - start, Duration::ZERO, "no waiting either");
}

fn grpc(status: &'static str) -> Step {
    reply(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", status)
}

fn grpc_post() -> Request<String> {
    let mut req = post("/pkg.Svc/Method", "\0\0\0\0\0");
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    req
}

/// A call to a method declared idempotent: UNAVAILABLE without pushback may be retried.
fn idempotent_grpc_post() -> Request<String> {
    let mut req = grpc_post();
    req.extensions_mut().insert(Idempotent(true));
    req
}

#[tokio::test(start_paused = true)]
async fn pushback_grpc_trailers_only_unavailable_retried_after_pushback() {
    let (inner, log) = mock::<String>(vec![
        grpc("14").header("grpc-retry-pushback-ms", "300"),
        grpc("0"),
    ]);
    let layer = RetryLayer::new(Budget::default());
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), grpc_post()).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    // UNAVAILABLE with pushback is retried even though every gRPC call is a POST: the server
    // said it did not act.
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(300)]);
    assert_eq!(stats.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn pushback_grpc_negative_means_do_not_retry() {
    let (inner, log) = mock::<String>(vec![
        grpc("14").header("grpc-retry-pushback-ms", "-1"),
        grpc("0"),
    ]);
    let layer = quick();
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), idempotent_grpc_post())
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(log.count(), 1);
    assert_eq!(stats.pushback_refused(), 1);
    assert_eq!(stats.retries(), 0);
}

// ---------------------------------------------------------------------------------------------
// 6. Deadlines.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn deadline_bounds_a_hanging_service_and_cuts_each_attempt() {
    let (inner, log) = mock::<String>(vec![hang()]);
    let retry = quick().max_retries(10);
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .layer(AttemptTimeoutLayer::new(ms(300)).deadline_header(true))
        .service(inner);
    let start = Instant::now();
    let err = send(&mut svc, get("/slow")).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(Instant::now() - start, ms(1_000));

    let seen = log.all();
    assert_eq!(seen.len(), 4, "attempts at 0, 300, 600 and 900 ms");
    let starts: Vec<_> = seen.iter().map(|s| s.at).collect();
    let ends: Vec<_> = seen.iter().map(|s| s.ended).collect();
    assert_eq!(starts, vec![ms(0), ms(300), ms(600), ms(900)]);
    // Each attempt is cut at 300 ms, the last one by the deadline.
    assert_eq!(
        ends,
        vec![Some(ms(300)), Some(ms(600)), Some(ms(900)), Some(ms(1_000))]
    );
    // Each retry tells the server its own limit: the per-attempt timeout, then what is left.
    let limits: Vec<_> = seen
        .iter()
        .map(|s| s.headers[DEADLINE_HEADER].clone())
        .collect();
    assert_eq!(limits, ["300", "300", "300", "100"]);
    assert_eq!(stats.retries(), 3);
    assert_eq!(stats.retries_exhausted(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_a_hanging_service_with_jittered_backoff() {
    for _ in 0..20 {
        let (inner, log) = mock::<String>(vec![hang()]);
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(ms(1_000)))
            .layer(RetryLayer::new(Budget::default()).max_retries(10))
            .layer(AttemptTimeoutLayer::new(ms(300)))
            .service(inner);
        let start = Instant::now();
        let err = send(&mut svc, get("/slow")).await.unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
        let elapsed = Instant::now() - start;
        assert!(elapsed <= ms(1_000), "{elapsed:?}");
        // Backoffs of at most 25 + 50 + 100 ms leave room for 3 or 4 attempts.
        let seen = log.all();
        assert!((3..=4).contains(&seen.len()), "{} attempts", seen.len());
        for (i, s) in seen.iter().enumerate() {
            let lived = s.ended.expect("every attempt ended") - s.at;
            if i + 1 < seen.len() {
                assert_eq!(lived, ms(300), "attempt {} cut by its timeout", s.attempt);
            } else {
                assert!(lived <= ms(300));
                assert!(s.ended.unwrap() <= ms(1_000));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_pushback_longer_than_the_time_left_is_not_waited_for() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    let start = Instant::now();
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503, "the response is returned, not a timeout");
    assert_eq!(Instant::now() - start, Duration::ZERO);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.deadline_refused(), 1);
    assert_eq!(stats.pushback_refused(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_no_time_left_means_no_attempt() {
    // The request arrives with its deadline already reached: nothing is sent.
    let (inner, log) = mock::<String>(vec![reply(200)]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .layer(AttemptTimeoutLayer::new(ms(300)))
        .service(inner);
    let mut req = get("/items");
    req.extensions_mut().insert(RequestDeadline(Instant::now()));
    let err = send(&mut svc, req).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(log.count(), 0);
    assert_eq!(stats.retries(), 0);

    // An attempt that fails exactly at the deadline is not followed by another, even with no
    // backoff at all.
    let (inner, log) = mock::<String>(vec![reply(503).after(ms(1_000)), reply(200)]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    let start = Instant::now();
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(Instant::now() - start, ms(1_000));
    assert_eq!(log.count(), 1);
    assert_eq!(stats.deadline_refused(), 1);

    // With 1 ms left, a retry is still made (the control for the case above).
    let (inner, log) = mock::<String>(vec![reply(503).after(ms(999)), reply(200)]);
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(quick())
        .service(inner);
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![ms(0), ms(999)]);
}

#[tokio::test(start_paused = true)]
async fn deadline_retry_that_cannot_finish_in_time_is_not_started() {
    // A first request succeeds in 200 ms: the layer learns that attempts take about 200 ms.
    let (inner, log) = mock::<String>(vec![
        reply(200).after(ms(200)),
        reply(503).after(ms(850)),
        reply(503).after(ms(700)),
        reply(200),
    ]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    assert_eq!(send(&mut svc, get("/a")).await.unwrap().status(), 200);

    // Failing at 850 ms, a 200 ms attempt would end past the deadline: no retry.
    let res = send(&mut svc, get("/b")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 2);
    assert_eq!(stats.deadline_refused(), 1);

    // Failing at 700 ms, it would end at 900 ms: retried.
    let res = send(&mut svc, get("/c")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 4);
    assert_eq!(stats.deadline_refused(), 1);
    assert_eq!(stats.retries(), 1);
}

// ---------------------------------------------------------------------------------------------
// 7. Budget.
// ---------------------------------------------------------------------------------------------

/// A retry paid for but never sent (the caller gave up during the backoff) gives its token
/// back: cancellation costs the budget nothing.
#[tokio::test(start_paused = true)]
async fn budget_token_of_a_retry_cancelled_during_backoff_is_refunded() {
    // Exactly one retry in reserve, and requests earn none.
    let budget = Budget::builder()
        .min_per_second(0.1)
        .ratio(0.0)
        .build()
        .unwrap();
    assert_eq!(budget.balance(), 1.0);
    let (inner, log) = mock::<String>(vec![
        reply(503).header("retry-after", "5"),
        reply(503),
        reply(200),
    ]);
    let layer = RetryLayer::new(budget.clone());
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    // The 503 asks for 5 s; the caller gives up after 1 s, during the wait.
    let gave_up = tokio::time::timeout(ms(1_000), send(&mut svc, get("/items"))).await;
    assert!(gave_up.is_err());
    assert_eq!(log.count(), 1, "the retry was never sent");
    assert_eq!(stats.retries(), 0);
    assert_eq!(stats.cancelled(), 1);
    assert_eq!(budget.balance(), 1.0, "the token went back");

    // And the next request can still use it: its 503 is retried.
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 3);
    assert_eq!(
        budget.balance(),
        0.0,
        "a retry that was sent keeps its token"
    );
}

#[tokio::test(start_paused = true)]
async fn budget_empty_refuses_every_retry() {
    let empty = || {
        Budget::builder()
            .min_per_second(0.0)
            .ratio(0.0)
            .build()
            .unwrap()
    };
    let layer = RetryLayer::new(empty()).backoff(Backoff::none());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let err = send(&mut layer.layer(inner), get("/items"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BudgetExhausted);
    assert_eq!(err.attempts(), 1);
    let source = err.source().expect("the last failure is the source");
    assert_eq!(
        source.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionReset)
    );
    assert_eq!(log.count(), 1);
    assert_eq!(stats.budget_exhausted(), 1);
    assert_eq!(stats.retries(), 0);

    // A failed response is returned as it is.
    let layer = RetryLayer::new(empty()).backoff(Backoff::none());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.budget_exhausted(), 1);
}

#[tokio::test(start_paused = true)]
async fn budget_ratio_bounds_the_attempts_of_a_failing_service() {
    // Reserve 1/s × 10 s = 10 retries, plus 0.5 per request.
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_second(1.0)
        .ratio(0.5)
        .build()
        .unwrap();
    let layer = RetryLayer::new(budget).backoff(Backoff::none());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![reply(503)]);
    let mut svc = layer.layer(inner);
    for _ in 0..100 {
        let res = send(&mut svc, get("/items")).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let attempts = log.count();
    assert!(attempts <= 100 + 50 + 10, "{attempts} attempts");
    // ...and the budget grants all of it: floor(10 + 0.5 × 100) = 60 retries.
    assert_eq!(attempts, 160);
    assert_eq!(stats.requests(), 100);
    assert_eq!(stats.retries(), 60);
    // The first six requests used both their retries; every other one ran out of budget.
    assert_eq!(stats.retries_exhausted(), 6);
    assert_eq!(stats.budget_exhausted(), 94);

    // Once the window has moved past those withdrawals, the reserve is back.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 163);
    assert_eq!(stats.retries(), 62);
}

// ---------------------------------------------------------------------------------------------
// 8. Body replay.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn replay_streaming_body_is_resent_byte_for_byte() {
    let chunks: [&[u8]; 4] = [b"hello ", b"streaming ", b"", b"world\0\xff"];
    let trailers = header_map(&[("x-checksum", "abc123")]);
    let (inner, log) = mock::<Chunked>(vec![reply(429), reply(200)]);
    let layer = quick();
    let stats = layer.stats();
    let req = request(
        Method::POST,
        "/upload",
        Chunked::new(&chunks, Some(trailers.clone())),
    );
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);

    let seen = log.all();
    assert_eq!(seen.len(), 2);
    let expected: Vec<Bytes> = chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect();
    for s in &seen {
        assert_eq!(s.body_error, None, "attempt {}", s.attempt);
        assert_eq!(s.chunks, expected, "attempt {}: same frames", s.attempt);
        assert_eq!(
            s.trailers.as_ref(),
            Some(&trailers),
            "attempt {}",
            s.attempt
        );
    }
    assert_eq!(seen[1].body(), b"hello streaming world\0\xff");
    assert_eq!(stats.body_too_large(), 0);
}

#[tokio::test(start_paused = true)]
async fn replay_body_over_the_cap_is_sent_once_and_not_retried() {
    let chunks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 1024]).collect();
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let whole = chunks.concat();

    // A streamed body: found to be too large while the first attempt reads it.
    let (inner, log) = mock::<Chunked>(vec![reply(503), reply(200)]);
    let layer = quick().replay_cap(1024);
    let stats = layer.stats();
    let req = request(Method::PUT, "/blob", Chunked::new(&slices, None));
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 503);
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body(), whole, "the one attempt got the whole body");
    assert_eq!(seen[0].body_error, None);
    assert_eq!(stats.body_too_large(), 1);
    assert_eq!(stats.retries(), 0);

    // A body whose size is known up front: the same.
    let (inner, log) = mock::<http_body_util::Full<Bytes>>(vec![reply(503), reply(200)]);
    let layer = quick().replay_cap(1024);
    let stats = layer.stats();
    let body = http_body_util::Full::new(Bytes::from(whole.clone()));
    let res = send(&mut layer.layer(inner), request(Method::PUT, "/blob", body))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body(), whole);
    assert_eq!(stats.body_too_large(), 1);

    // Nothing is read ahead: an attempt that never read the body leaves it replayable, and the
    // next attempt still gets all of it (and is the one that finds it too large).
    let (inner, log) = mock::<Chunked>(vec![
        reply(503).reading(Read::Nothing),
        reply(503),
        reply(200),
    ]);
    let layer = quick().replay_cap(1024);
    let stats = layer.stats();
    let req = request(Method::PUT, "/blob", Chunked::new(&slices, None));
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(text(res).await, "attempt 2");
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].chunks.is_empty());
    assert_eq!(seen[1].body(), whole);
    assert_eq!((stats.retries(), stats.body_too_large()), (1, 1));

    // Exactly the cap is still replayed (the control).
    let (inner, log) = mock::<Chunked>(vec![reply(503), reply(200)]);
    let layer = quick().replay_cap(4096);
    let req = request(Method::PUT, "/blob", Chunked::new(&slices, None));
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body(), whole);
}

#[tokio::test(start_paused = true)]
async fn replay_partially_read_body_is_replayed_intact() {
    let chunks: [&[u8]; 3] = [b"one-", b"two-", b"three"];
    let (inner, log) = mock::<Chunked>(vec![
        reply(429).reading(Read::Chunks(1)),
        reply(429).reading(Read::Chunks(2)),
        reply(200),
    ]);
    let req = request(Method::POST, "/upload", Chunked::new(&chunks, None));
    let res = send(&mut quick().layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body(), b"one-");
    assert_eq!(seen[1].body(), b"one-two-");
    assert_eq!(seen[2].body(), b"one-two-three");
    assert_eq!(seen[2].chunks.len(), 3, "same chunk boundaries");
    assert!(seen.iter().all(|s| s.body_error.is_none()));
}

// ---------------------------------------------------------------------------------------------
// 9. Cancellation.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cancel_dropping_the_future_during_backoff_stops_retries() {
    // Decorrelated jitter with base = cap waits exactly 5 s.
    let backoff = || Backoff::decorrelated_jitter(ms(5_000), ms(5_000)).unwrap();

    // Control: left alone, the retry happens 5 s later.
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let mut svc = RetryLayer::new(Budget::default())
        .backoff(backoff())
        .layer(inner);
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![ms(0), ms(5_000)]);

    // Dropped 2 s into the backoff: no further attempt, however long we wait.
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).backoff(backoff());
    let stats = layer.stats();
    let mut svc = layer.layer(inner);
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(get("/items")));
    tokio::select! {
        _ = &mut fut => panic!("the request finished during its backoff"),
        _ = tokio::time::sleep(ms(2_000)) => {}
    }
    assert_eq!(log.count(), 1);
    drop(fut);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(log.count(), 1);
    assert_eq!(stats.retries(), 0);
}

// ---------------------------------------------------------------------------------------------
// 10. gRPC status in trailers.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_is_committed_and_not_retried() {
    let streamed = || {
        reply(200)
            .header("content-type", "application/grpc")
            .trailer("grpc-status", "14")
    };
    let (inner, log) = mock::<String>(vec![streamed(), grpc("0")]);
    let layer = quick();
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), grpc_post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("grpc-status").is_none());
    // The caller gets the whole stream, failure status included.
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
    assert_eq!(collected.to_bytes(), "attempt 1");
    assert_eq!(log.count(), 1);
    assert_eq!(stats.retries(), 0);

    // The same status in a trailers-only response (in the head) is retried, for a method
    // declared idempotent.
    let (inner, log) = mock::<String>(vec![grpc("14"), grpc("0")]);
    let res = send(&mut quick().layer(inner), idempotent_grpc_post())
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(log.count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Bugs found.
// ---------------------------------------------------------------------------------------------

/// A request body that yields one chunk, then fails (the client's own upload broke).
struct FailingBody {
    sent: bool,
}

impl Body for FailingBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if !this.sent {
            this.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))));
        }
        Poll::Ready(Some(Err(io::Error::other("client body broke"))))
    }
}

#[tokio::test(start_paused = true)]
async fn replay_failed_request_body_is_not_reported_as_too_large() {
    let (inner, log) = mock::<FailingBody>(vec![
        fail(io::ErrorKind::ConnectionReset).reading(Read::All),
        reply(200),
    ]);
    let layer = quick();
    let stats = layer.stats();
    let req = request(Method::PUT, "/blob", FailingBody { sent: false });
    let err = send(&mut layer.layer(inner), req).await.unwrap_err();
    // Not retried, rightly: a body that failed cannot be replayed.
    assert_eq!(log.count(), 1);
    assert_eq!(
        log.all()[0].body_error.as_deref(),
        Some("client body broke")
    );
    assert_eq!(io_kind_in_chain(&err), Some(io::ErrorKind::ConnectionReset));
    // But 4 bytes did not outgrow a 64 KiB replay buffer.
    assert_ne!(err.kind(), Kind::BodyTooLarge, "{err}");
    assert_eq!(stats.body_too_large(), 0);
}

// ---------------------------------------------------------------------------------------------
// Duration::MAX settings.
// ---------------------------------------------------------------------------------------------

/// `Duration::MAX` means "no limit" where a limit is optional, counts as the largest supported
/// value where the setting must stay finite, and never panics.
#[tokio::test(start_paused = true)]
async fn duration_max_settings_never_panic() {
    // No limit on the pushback honoured: the server's 2 s are waited out.
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let layer = quick().max_pushback(Duration::MAX);
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(2_000)]);

    // An uncapped backoff under a deadline: the retry would end past it, so it is not started.
    let backoff = Backoff::decorrelated_jitter(Duration::from_secs(3_600), Duration::MAX).unwrap();
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let retry = RetryLayer::new(Budget::default()).backoff(backoff);
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.deadline_refused(), 1);

    // Settings that must stay finite count as their largest value (see tests/duration_limits.rs).
    let backoff = Backoff::full_jitter(Duration::MAX, Duration::MAX).unwrap();
    assert!(backoff.start().next_delay() <= Duration::from_secs(3_600));
    let budget = Budget::builder().ttl(Duration::MAX).build().unwrap();
    assert_eq!(budget.ttl(), Duration::from_secs(3_600));
}
