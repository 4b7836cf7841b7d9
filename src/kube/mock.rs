//! A stand-in for the Kubernetes API server's EndpointSlice list and watch, for tests and the
//! example: real HTTP on 127.0.0.1, answers scripted by the caller.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How many requests of each kind the mock has answered, to wait on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let api = meshless::kube::MockApiServer::start().await?;
/// let seen: meshless::kube::ApiRequests = api.seen();
/// assert_eq!(seen.lists, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiRequests {
    /// List requests answered with the list.
    pub lists: usize,
    /// Watch requests answered with a stream of events.
    pub watches: usize,
    /// Requests answered with a scripted failure.
    pub failures: usize,
}

/// A mock Kubernetes API server serving one namespace's EndpointSlices (feature `testing`):
/// list requests get the list set by [`set_list`](Self::set_list), watch requests stay open
/// and get every event [`send`](Self::send) writes, as a real API server streams them (one
/// JSON object per line). Anything else gets a `404` `Status`.
///
/// A real [`kube::Client`] talks to it over plain HTTP ([`client`](Self::client)), so
/// kube-runtime's watcher runs as against a cluster: list, watch, relist after a `410 Gone`,
/// back off after errors. Stops when dropped.
///
/// ```
/// use meshless::kube::MockApiServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = MockApiServer::start().await?;
/// api.set_list(r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1",
///     "metadata":{"resourceVersion":"1"},"items":[]}"#);
/// let kube = api.client()?;
/// let changes = meshless::kube::KubeService::new(kube, "shop", "web").discover()?;
/// # drop(changes);
/// # Ok(()) }
/// ```
pub struct MockApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    seen: watch::Sender<ApiRequests>,
}

#[derive(Default)]
struct State {
    list: String,
    /// Statuses for the next requests, in order, instead of their answer.
    failures: VecDeque<StatusCode>,
    watches: Vec<mpsc::UnboundedSender<Bytes>>,
    requests: Vec<String>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it left whole values behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MockApiServer {
    /// Listens on 127.0.0.1 at a port the OS picks. The list starts empty of items.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// assert!(api.url().starts_with("http://127.0.0.1:"));
    /// # Ok(()) }
    /// ```
    pub async fn start() -> io::Result<MockApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                list: empty_list(),
                ..State::default()
            }),
            seen: watch::Sender::new(ApiRequests::default()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(MockApiServer { addr, shared, task })
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// let config = kube::Config::new(api.url().parse().expect("a URL"));
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client talking to this server, with kube's default settings otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// let kube: kube::Client = api.client()?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        let url = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| kube::Error::Service(e.into()))?;
        kube::Client::try_from(kube::Config::new(url))
    }

    /// The `EndpointSliceList` (JSON, as the API server sends it) that list requests get from
    /// now on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// api.set_list(r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"7"},"items":[]}"#);
    /// # Ok(()) }
    /// ```
    pub fn set_list(&self, list: impl Into<String>) {
        self.shared.state().list = list.into();
    }

    /// Writes one watch event (`{"type":"ADDED","object":{...}}`, or `ERROR` with a `Status`)
    /// to every open watch; returns how many got it. Line breaks in `event` are written as
    /// spaces (JSON strings cannot hold raw ones), so a pretty-printed fixture stays one line.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// assert_eq!(api.send(r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","metadata":{"resourceVersion":"9"}}}"#), 0);
    /// # Ok(()) }
    /// ```
    pub fn send(&self, event: &str) -> usize {
        let mut line: String = event
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        line.push('\n');
        let bytes = Bytes::from(line);
        let mut state = self.shared.state();
        state.watches.retain(|w| w.send(bytes.clone()).is_ok());
        state.watches.len()
    }

    /// Ends every open watch, as an API server does when its watch timeout passes: the
    /// watcher watches again from where it was, without a relist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// api.close_watches();
    /// # Ok(()) }
    /// ```
    pub fn close_watches(&self) {
        self.shared.state().watches.clear();
    }

    /// Answers the next `count` requests, lists and watches alike, with `status` and a
    /// `Status` body, as a failing API server would.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// api.fail_next(http::StatusCode::SERVICE_UNAVAILABLE, 3);
    /// # Ok(()) }
    /// ```
    pub fn fail_next(&self, status: StatusCode, count: usize) {
        self.shared
            .state()
            .failures
            .extend(std::iter::repeat_n(status, count));
    }

    /// Every request received so far, as `path?query`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// assert!(api.requests().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn requests(&self) -> Vec<String> {
        self.shared.state().requests.clone()
    }

    /// How many requests of each kind were answered so far.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// assert_eq!(api.seen().watches, 0);
    /// # Ok(()) }
    /// ```
    pub fn seen(&self) -> ApiRequests {
        *self.shared.seen.borrow()
    }

    /// Waits until `until` holds of [`seen`](Self::seen), at most `timeout`; returns what
    /// was seen last, and whether `until` held.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// let api = meshless::kube::MockApiServer::start().await?;
    /// let (seen, held) = api.wait(Duration::from_millis(10), |s| s.watches >= 1).await;
    /// assert!(!held);
    /// # Ok(()) }
    /// ```
    pub async fn wait(
        &self,
        timeout: Duration,
        until: impl Fn(&ApiRequests) -> bool,
    ) -> (ApiRequests, bool) {
        let mut seen = self.shared.seen.subscribe();
        let held = tokio::time::timeout(timeout, seen.wait_for(|s| until(s)))
            .await
            .is_ok_and(|r| r.is_ok());
        (self.seen(), held)
    }
}

impl Drop for MockApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for MockApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApiServer")
            .field("addr", &self.addr)
            .field("seen", &self.seen())
            .finish_non_exhaustive()
    }
}

fn empty_list() -> String {
    r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[]}"#.to_string()
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, req)) }
            });
            // A client that goes away mid-answer is no concern of the mock's.
            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

type Answer = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn answer(shared: &Shared, req: Request<Incoming>) -> Answer {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let mut state = shared.state();
    state.requests.push(target.to_string());
    let path = uri.path();
    let is_slices = path.starts_with("/apis/discovery.k8s.io/v1/namespaces/")
        && path.ends_with("/endpointslices")
        && path.split('/').count() == 7;
    if !is_slices {
        return status(StatusCode::NOT_FOUND, "NotFound");
    }
    if let Some(code) = state.failures.pop_front() {
        shared.seen.send_modify(|s| s.failures += 1);
        return status(code, "InternalError");
    }
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    if watch {
        let (tx, rx) = mpsc::unbounded_channel();
        state.watches.push(tx);
        shared.seen.send_modify(|s| s.watches += 1);
        return json(StatusCode::OK, Lines { rx }.boxed_unsync());
    }
    let list = Full::new(Bytes::from(state.list.clone())).boxed_unsync();
    shared.seen.send_modify(|s| s.lists += 1);
    json(StatusCode::OK, list)
}

fn status(code: StatusCode, reason: &str) -> Answer {
    let body = format!(
        r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"{}","reason":"{reason}","code":{}}}"#,
        code.canonical_reason().unwrap_or("error"),
        code.as_u16()
    );
    json(code, Full::new(Bytes::from(body)).boxed_unsync())
}

fn json(code: StatusCode, body: UnsyncBoxBody<Bytes, Infallible>) -> Answer {
    let mut res = Response::new(body);
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

/// A watch's body: the event lines as they are sent, until the watch is closed.
struct Lines {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}
