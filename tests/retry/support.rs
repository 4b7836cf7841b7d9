//! The scripted mock service and the helpers every retry test uses.

pub(crate) use bytes::Bytes;
pub(crate) use http::{HeaderMap, Method, Request, Response, StatusCode};
pub(crate) use http_body::{Body, Frame, SizeHint};
pub(crate) use http_body_util::BodyExt;
pub(crate) use meshless::backoff::Backoff;
pub(crate) use meshless::budget::Budget;
pub(crate) use meshless::deadline::{
    AttemptTimeoutLayer, DEADLINE_HEADER, DeadlineLayer, RequestDeadline,
};
pub(crate) use meshless::error::Kind;
pub(crate) use meshless::retry::{Idempotency, Idempotent, ReplayBody, RetryLayer};
pub(crate) use meshless::{BoxError, Error};
pub(crate) use std::collections::VecDeque;
pub(crate) use std::convert::Infallible;
pub(crate) use std::error::Error as StdError;
pub(crate) use std::io;
pub(crate) use std::pin::Pin;
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::task::{Context, Poll};
pub(crate) use std::time::Duration;
pub(crate) use tokio::time::Instant;
pub(crate) use tower::{Layer, Service, ServiceBuilder, ServiceExt};

pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// The mock service.
// ---------------------------------------------------------------------------------------------

/// How much of the request body an attempt reads before answering.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Read {
    /// Every frame, trailers included.
    All,
    /// This many data frames, then stop (the rest is never read by this attempt).
    Chunks(usize),
    /// Nothing: the request "never reached" the server.
    Nothing,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Status(u16),
    Error(io::ErrorKind),
    /// Never answers.
    Hang,
}

/// What the mock does on one attempt.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) read: Read,
    pub(crate) delay: Duration,
    pub(crate) outcome: Outcome,
    pub(crate) headers: Vec<(&'static str, &'static str)>,
    pub(crate) trailers: Vec<(&'static str, &'static str)>,
}

/// Reads the whole body, then answers with `status`.
pub(crate) fn reply(status: u16) -> Step {
    Step {
        read: Read::All,
        delay: Duration::ZERO,
        outcome: Outcome::Status(status),
        headers: Vec::new(),
        trailers: Vec::new(),
    }
}

/// Fails with an I/O error without reading the body.
pub(crate) fn fail(kind: io::ErrorKind) -> Step {
    Step {
        read: Read::Nothing,
        outcome: Outcome::Error(kind),
        ..reply(0)
    }
}

/// Never answers.
pub(crate) fn hang() -> Step {
    Step {
        read: Read::Nothing,
        outcome: Outcome::Hang,
        ..reply(0)
    }
}

impl Step {
    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    pub(crate) fn trailer(mut self, name: &'static str, value: &'static str) -> Self {
        self.trailers.push((name, value));
        self
    }
    pub(crate) fn reading(mut self, read: Read) -> Self {
        self.read = read;
        self
    }
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What the mock saw of one attempt.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) attempt: usize,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    /// Virtual time since the mock was built when the attempt arrived.
    pub(crate) at: Duration,
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) body_error: Option<String>,
    /// Virtual time when the attempt's future completed or was dropped.
    pub(crate) ended: Option<Duration>,
}

impl Seen {
    pub(crate) fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

#[derive(Clone)]
pub(crate) struct Log {
    pub(crate) start: Instant,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
}

impl Log {
    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub(crate) fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub(crate) fn arrivals(&self) -> Vec<Duration> {
        self.all().iter().map(|s| s.at).collect()
    }
    pub(crate) fn update(&self, idx: usize, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap()[idx]);
    }
}

/// Records when an attempt's future finished or was dropped (an attempt cut by a timeout is
/// dropped by the layer that timed it out).
pub(crate) struct EndGuard {
    pub(crate) log: Log,
    pub(crate) idx: usize,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let now = Instant::now() - self.log.start;
        self.log.update(self.idx, |s| s.ended = Some(now));
    }
}

/// A response body: one data frame, then optional trailers.
#[derive(Debug, Default)]
pub(crate) struct ResBody {
    pub(crate) data: Option<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
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

pub(crate) fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().unwrap());
    }
    map
}

/// A scripted service. Attempt `n` (counted across every request sent to it) follows
/// `script[n - 1]`, or the last step once the script has run out. Its response body is
/// `"attempt n"`.
pub(crate) fn mock<B>(
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
pub(crate) struct Chunked {
    pub(crate) chunks: VecDeque<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) primed: bool,
}

impl Chunked {
    pub(crate) fn new(chunks: &[&[u8]], trailers: Option<HeaderMap>) -> Self {
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

pub(crate) fn request<B>(method: Method, path: &str, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri(format!("http://svc{path}"))
        .body(body)
        .unwrap()
}

pub(crate) fn get(path: &str) -> Request<String> {
    request(Method::GET, path, String::new())
}

pub(crate) fn post(path: &str, body: &str) -> Request<String> {
    request(Method::POST, path, body.to_owned())
}

/// A retry layer with a generous budget and no backoff, for tests about decisions, not timing.
pub(crate) fn quick() -> RetryLayer {
    RetryLayer::new(Budget::default()).backoff(Backoff::none())
}

pub(crate) async fn send<S, B, RB>(svc: &mut S, req: Request<B>) -> Result<Response<RB>, Error>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Error>,
{
    svc.ready().await?;
    svc.call(req).await
}

pub(crate) async fn text(res: Response<meshless::retry::ResponseBody<ResBody>>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The first I/O error in an error's source chain (the error itself included).
pub(crate) fn io_kind_in_chain(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

pub(crate) fn grpc(status: &'static str) -> Step {
    reply(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", status)
}

pub(crate) fn grpc_post() -> Request<String> {
    let mut req = post("/pkg.Svc/Method", "\0\0\0\0\0");
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    req
}

/// A call to a method declared idempotent: UNAVAILABLE without pushback may be retried.
pub(crate) fn idempotent_grpc_post() -> Request<String> {
    let mut req = grpc_post();
    req.extensions_mut().insert(Idempotent(true));
    req
}
