//! The client: meshless's stack over a `reqwest::Client`, and its conveniences.

use super::builder::ClientBuilder;
use super::endpoint::{Endpoint, cleartext};
use crate::balance::{Balance, EndpointStats};
use crate::breaker::BreakerHandle;
use crate::error::{BoxError, Error, Kind};
use crate::hedge::HedgeStats;
use crate::limit::LimitHandle;
use crate::retry::{CallerRetries, RetryStats};
use crate::throttle::ThrottleHandle;
use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;
use tower::util::Oneshot;

/// The body of a response from [`Client::request`]: reqwest's body, metered for the balancer,
/// counting the request's outcome at its end (see
/// [`retry::ResponseBody`](crate::retry::ResponseBody)), holding the request's concurrency
/// permit until it ends, and bounded by the request's deadline.
pub type ResponseBody = crate::deadline::DeadlineBody<
    crate::limit::ResponseBody<
        crate::retry::ResponseBody<crate::balance::ResponseBody<::reqwest::Body>>,
    >,
>;

type StackRequest = Request<UnsyncBoxBody<Bytes, BoxError>>;

/// The layers as their own types, as in [`crate::http::Client`]: no allocation for the
/// service's clone nor for its future.
pub(crate) type Stack = crate::stack::Stack<Arc<str>, Endpoint>;

/// What the client reports on, shared by its clones.
pub(crate) struct Handles {
    pub(crate) balance: Balance<Arc<str>, Endpoint>,
    pub(crate) retry: Arc<RetryStats>,
    pub(crate) breaker: BreakerHandle,
    pub(crate) limit: LimitHandle,
    pub(crate) throttle: ThrottleHandle,
    pub(crate) hedge: Arc<HedgeStats>,
    /// Some endpoint is `http`: an `https` request is refused before it could reach one.
    pub(crate) cleartext: bool,
    /// The routes each request is matched with before the stack.
    pub(crate) routing: Arc<crate::route::Routing>,
}

impl Handles {
    /// Why a request is refused before it is sent: a scheme other than `http` or `https`
    /// (in any case), or `https` when some endpoint would carry it in clear text.
    fn refusal(&self, uri: &http::Uri) -> Option<Error> {
        match crate::http::request_scheme(uri) {
            Err(error) => Some(error),
            Ok(Some(scheme)) if self.cleartext && scheme == Scheme::HTTPS => Some(cleartext()),
            Ok(_) => None,
        }
    }
}

/// Your `reqwest::Client`, with meshless's retries under a budget, deadlines, balancing over
/// several endpoints, outlier ejection, circuit breaker and hedging.
///
/// Cheap to clone; clones share connections, budget and measurements. Send a
/// `reqwest::Request` with [`execute`](Self::execute) or a `reqwest::RequestBuilder` with
/// [`send`](Self::send) and get a `reqwest::Response` back; or send an `http::Request` with
/// [`request`](Self::request) (or as a `tower::Service`) and get an `http::Response`. The
/// endpoint chosen for each attempt gives the URL its scheme and authority; the path and query
/// are the request's.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let http = reqwest::Client::builder()
///     .retry(reqwest::retry::never())
///     .build()?;
/// let client = meshless::reqwest::Client::builder(http.clone())
///     .endpoints(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])
///     .build()?;
/// let res = client.send(http.get("http://quotes/v1/quote?ccy=EUR")).await?;
/// println!("{}", res.text().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) stack: Stack,
    pub(crate) handles: Arc<Handles>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.handles.balance.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a configuration around `client`, whose TLS, proxy, pool and cookie settings
    /// every request keeps.
    ///
    /// ```
    /// let builder = meshless::reqwest::Client::builder(reqwest::Client::new());
    /// ```
    pub fn builder(client: ::reqwest::Client) -> ClientBuilder {
        ClientBuilder::new(client)
    }

    /// Sends a `reqwest::Request` through the layers. The response's `url()` is the request's.
    ///
    /// ```no_run
    /// # async fn run(client: meshless::reqwest::Client, http: reqwest::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let req = http.get("http://svc/health").build()?;
    /// let res = client.execute(req).await?;
    /// # Ok(()) }
    /// ```
    pub fn execute(&self, req: ::reqwest::Request) -> ExecuteFuture {
        let url = req.url().clone();
        let inner = match Request::<::reqwest::Body>::try_from(req) {
            Ok(req) => self.request(req),
            Err(e) => ResponseFuture::failed(Error::with_source(Kind::InvalidRequest, e)),
        };
        ExecuteFuture {
            inner,
            url: Some(url),
        }
    }

    /// Builds and sends a `reqwest::RequestBuilder` (made by any `reqwest::Client`: this
    /// client's endpoints decide where it goes).
    ///
    /// ```no_run
    /// # async fn run(client: meshless::reqwest::Client, http: reqwest::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let res = client.send(http.post("http://svc/v1/orders").body("{}")).await?;
    /// # Ok(()) }
    /// ```
    pub fn send(&self, req: ::reqwest::RequestBuilder) -> ExecuteFuture {
        match req.build() {
            Ok(req) => self.execute(req),
            Err(e) => ExecuteFuture {
                inner: ResponseFuture::failed(Error::with_source(Kind::InvalidRequest, e)),
                url: None,
            },
        }
    }

    /// Sends an `http::Request` with any body of [`Bytes`]; `uri` may be a path alone.
    ///
    /// ```no_run
    /// # async fn run(client: meshless::reqwest::Client) -> Result<(), meshless::Error> {
    /// let req = http::Request::get("/health").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    /// let res = client.request(req).await?;
    /// # Ok(()) }
    /// ```
    pub fn request<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(error) = self.handles.refusal(req.uri()) {
            return ResponseFuture::failed(error);
        }
        let mut req = req;
        // As the http client: the caller's scope says whether it retries, carried into a task.
        if CallerRetries::current() && req.extensions().get::<CallerRetries>().is_none() {
            req.extensions_mut().insert(CallerRetries(true));
        }
        self.handles.routing.apply(&mut req);
        ResponseFuture {
            state: State::Waiting {
                call: Oneshot::new(self.stack.clone(), boxed(req)),
            },
        }
    }

    /// Replaces the client's routes (see [`crate::route`]) for the requests sent from now
    /// on, keeping its other settings. Checked first: a bad route changes nothing and comes
    /// back as a [`ConfigError`](crate::ConfigError) naming it. Requests in flight finish
    /// with the policies they started with; endpoints and their state are untouched.
    ///
    /// ```
    /// use meshless::route::Route;
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// client.reload_routes([Route::path_prefix("/v1/reports").max_retries(0)])?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn reload_routes(
        &self,
        routes: impl IntoIterator<Item = crate::route::Route>,
    ) -> Result<(), crate::ConfigError> {
        let routes: Vec<_> = routes.into_iter().collect();
        self.handles.routing.reload_routes(&routes)
    }

    /// Each endpoint's requests, failures, ejections, in-flight count, RTT and status, named by
    /// its base URL.
    ///
    /// ```
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(&*client.endpoints()[0].key, "http://127.0.0.1:1");
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStats<Arc<str>>> {
        self.handles.balance.endpoints()
    }

    /// The retry layer's counters: requests, retries, and why retries were refused.
    ///
    /// ```
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(client.retry_stats().retries(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn retry_stats(&self) -> Arc<RetryStats> {
        self.handles.retry.clone()
    }

    /// The circuit breaker: its state, its counts, and its switches.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(client.breaker().state().as_str(), "closed");
    /// # Ok::<(), meshless::ConfigError>(()) }).unwrap();
    /// ```
    pub fn breaker(&self) -> BreakerHandle {
        self.handles.breaker.clone()
    }

    /// The concurrency limit: the limit in force, requests in flight, refusals.
    ///
    /// ```
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(client.limit().rejected(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn limit(&self) -> LimitHandle {
        self.handles.limit.clone()
    }

    /// Client-side throttling: the refusal probability now, its counts, refusals.
    ///
    /// ```
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(client.throttle().rejected(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn throttle(&self) -> ThrottleHandle {
        self.handles.throttle.clone()
    }

    /// Hedging's counters.
    ///
    /// ```
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(client.hedge_stats().hedges(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn hedge_stats(&self) -> Arc<HedgeStats> {
        self.handles.hedge.clone()
    }

    /// Requests that failed fast because no endpoint was ready.
    ///
    /// ```
    /// let client = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://127.0.0.1:1"])
    ///     .build()?;
    /// assert_eq!(client.fail_fast_events(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn fail_fast_events(&self) -> u64 {
        self.handles.balance.fail_fast_events()
    }
}

fn boxed<B>(req: Request<B>) -> StackRequest
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    req.map(|b| b.map_err(Into::into).boxed_unsync())
}

impl<B> Service<Request<B>> for Client
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<StackRequest>::poll_ready(&mut self.stack, cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(error) = self.handles.refusal(req.uri()) {
            return ResponseFuture::failed(error);
        }
        self.handles.routing.apply(&mut req);
        ResponseFuture {
            state: State::Called {
                future: self.stack.call(boxed(req)),
            },
        }
    }
}

pin_project! {
    /// The future of [`Client::request`], and of the client as a `tower::Service`.
    ///
    /// ```no_run
    /// # async fn run(client: meshless::reqwest::Client) {
    /// let req = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    /// let call: meshless::reqwest::ResponseFuture = client.request(req);
    /// let res = tokio::spawn(call).await.unwrap();
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

/// The response future's state, shared with the other clients.
type State = crate::stack::Call<Stack, StackRequest>;

impl ResponseFuture {
    fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().state.poll(cx)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of [`Client::execute`] and [`Client::send`]: a `reqwest::Response`, whose
    /// body stays under the request's deadline (an expired deadline surfaces from `bytes()`,
    /// `text()` or `chunk()` as a reqwest error whose source is the meshless [`Error`]).
    ///
    /// ```no_run
    /// # async fn run(client: meshless::reqwest::Client, http: reqwest::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let call: meshless::reqwest::ExecuteFuture = client.send(http.get("http://svc/"));
    /// let res: reqwest::Response = call.await?;
    /// # Ok(()) }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ExecuteFuture {
        #[pin]
        inner: ResponseFuture,
        url: Option<::reqwest::Url>,
    }
}

impl Future for ExecuteFuture {
    type Output = Result<::reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx))?;
        let mut res = res.map(::reqwest::Body::wrap);
        if let Some(url) = this.url.take() {
            // reqwest reads the response's URL from an extension only its builder can write.
            use ::reqwest::ResponseBuilderExt;
            if let Ok(marker) = Response::builder().url(url).body(()) {
                res.extensions_mut()
                    .extend(marker.into_parts().0.extensions);
            }
        }
        Poll::Ready(Ok(::reqwest::Response::from(res)))
    }
}

impl std::fmt::Debug for ExecuteFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecuteFuture").finish_non_exhaustive()
    }
}
