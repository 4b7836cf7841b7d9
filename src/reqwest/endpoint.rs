//! One endpoint: a base URL, reached through a `reqwest::Client`.

use crate::classify::AfterRedirect;
use crate::error::{BoxError, ConfigError, Error, Kind};
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// reqwest's own future for one request: unnameable except through its `Service` impl.
type Pending = <::reqwest::Client as Service<::reqwest::Request>>::Future;

/// Sends every request to one endpoint through a `reqwest::Client`: a
/// `tower::Service<http::Request<B>>` that meshless's layers
/// ([`Balance`](crate::balance::Balance), [`Retry`](crate::retry::Retry), …) stack on like any
/// other. [`Client`](super::Client) builds one per endpoint; build them yourself to compose
/// your own stack.
///
/// The endpoint decides where a request goes: its scheme and authority replace the request
/// URI's, whose path and query are kept (a path alone, `/v1/x`, is enough). An `https` request
/// is never sent to an `http` endpoint. The client keeps everything else it was built with:
/// TLS, proxies, cookies, default headers, redirects.
///
/// Errors are meshless [`Error`]s that keep reqwest's as their source, sorted so that the
/// [classifier](crate::classify::classify_error) can tell what the server may have seen:
///
/// | reqwest says | meshless error | retried |
/// |---|---|---|
/// | `is_connect()` (refused, DNS, TLS handshake, connect timeout), the client built with `redirect::Policy::none()` | [`Kind::Service`] | any request: nothing was sent |
/// | `is_connect()`, the client following redirects (reqwest's default) | [`Kind::Service`] | idempotent requests: the connect may have been to a redirect's target, after a server had the request |
/// | `is_builder()` (a URL or header reqwest refuses) | [`Kind::InvalidRequest`] | never |
/// | `is_timeout()` (the client's or the request's own `timeout`) | [`Kind::AttemptTimedOut`] | idempotent requests |
/// | anything else (reset, early close, redirect loop) | [`Kind::Service`] | idempotent requests |
///
/// ```
/// use meshless::reqwest::Endpoint;
/// use tower::ServiceExt;
///
/// # tokio_test::block_on(async {
/// // A client that follows no redirect: its connect errors say that nothing was sent.
/// let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
/// let endpoint = Endpoint::new(http, "http://127.0.0.1:1")?;
/// assert_eq!(endpoint.base(), "http://127.0.0.1:1");
/// // Nothing listens on port 1: a connect error, which nothing reached.
/// let req = http::Request::get("/health").body(http_body_util::Empty::<bytes::Bytes>::new())?;
/// let err = endpoint.oneshot(req).await.unwrap_err();
/// let class = meshless::classify::classify_error(&err);
/// assert_eq!(class.retryable(), meshless::classify::Retryable::NeverSent);
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Endpoint {
    client: ::reqwest::Client,
    scheme: Scheme,
    authority: Authority,
    base: Arc<str>,
    /// Whether the client may follow a redirect within one `send` (see `follows_redirects`).
    follows_redirects: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint at `base`, `http://host[:port]` or `https://host[:port]` (a trailing `/`
    /// is allowed; a longer path, a query, a fragment or userinfo are refused with a
    /// [`ConfigError`] naming `endpoints`).
    ///
    /// ```
    /// let client = reqwest::Client::new();
    /// assert!(meshless::reqwest::Endpoint::new(client.clone(), "https://10.0.0.1:8443").is_ok());
    /// let err = meshless::reqwest::Endpoint::new(client, "10.0.0.1:8080").unwrap_err();
    /// assert_eq!(err.setting(), "endpoints");
    /// ```
    pub fn new(client: ::reqwest::Client, base: &str) -> Result<Self, ConfigError> {
        let (scheme, authority) = parse_base(base)?;
        let base = Arc::from(format!("{scheme}://{authority}"));
        Ok(Endpoint {
            follows_redirects: follows_redirects(&client),
            client,
            scheme,
            authority,
            base,
        })
    }

    /// The endpoint's base URL, as the balancer's statistics name it.
    ///
    /// ```
    /// let e = meshless::reqwest::Endpoint::new(reqwest::Client::new(), "http://127.0.0.1:8080/")?;
    /// assert_eq!(e.base(), "http://127.0.0.1:8080");
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn key(&self) -> Arc<str> {
        self.base.clone()
    }

    /// The request as reqwest takes it, aimed at this endpoint.
    fn prepare<B>(&self, req: Request<B>) -> Result<::reqwest::Request, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        // Any spelling of `https` (`HTTPS` too) is kept from an `http` endpoint; an unknown
        // scheme is refused rather than replaced.
        let asked = crate::http::request_scheme(&parts.uri)?;
        if asked == Some(Scheme::HTTPS) && self.scheme != Scheme::HTTPS {
            return Err(cleartext());
        }
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri =
            Uri::from_parts(uri).map_err(|e| Error::with_source(Kind::InvalidRequest, e))?;
        // An empty body goes as reqwest's own empty body: no box, and reqwest sends it as it
        // would its own GET.
        let body = if http_body::Body::is_end_stream(&body) {
            ::reqwest::Body::from(Bytes::new())
        } else {
            ::reqwest::Body::wrap(body)
        };
        ::reqwest::Request::try_from(Request::from_parts(parts, body))
            .map_err(|e| Error::with_source(Kind::InvalidRequest, e))
    }
}

/// Whether `client` may follow redirects. reqwest has no getter for its redirect policy; its
/// `Debug` shows a policy other than the default, and `redirect::Policy::none()` as
/// `Policy(None)`. Anything else (the default of ten, a custom policy, a `Debug` this does not
/// recognise) is taken to follow them: the safe side, where a connect error only lets
/// idempotent requests be retried. A test pins this against the reqwest in use.
fn follows_redirects(client: &::reqwest::Client) -> bool {
    !format!("{client:?}").contains("Policy(None)")
}

/// The error of an `https` request sent to an `http` endpoint: never in clear text.
pub(crate) fn cleartext() -> Error {
    Error::with_source(
        Kind::InvalidRequest,
        "an https request is never sent to an http endpoint (it would travel in clear text)",
    )
}

fn parse_base(text: &str) -> Result<(Scheme, Authority), ConfigError> {
    let bad = |why: &str| ConfigError::new("endpoints", format!("{text:?} {why}"));
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|_| bad("is not a URL like http://host:port"))?;
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
        _ => return Err(bad("needs a scheme, http:// or https://")),
    };
    let authority = match uri.authority() {
        Some(a) if a.as_str().contains('@') => {
            return Err(bad("must not carry userinfo: it would leak into Host"));
        }
        Some(a) if !a.host().is_empty() => a.clone(),
        _ => return Err(bad("needs a host")),
    };
    // `Authority::port` is `None` for a port that is no `u16`: read the text itself.
    let port = match authority.as_str().rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => Some(port),
        _ => None,
    };
    if port.is_some_and(|port| !port.parse::<u16>().is_ok_and(|p| p > 0)) {
        return Err(bad("needs a port from 1 to 65535"));
    }
    // `Uri` drops a fragment without a word.
    if text.contains('#') {
        return Err(bad("must not carry a fragment"));
    }
    match uri.path_and_query().map(PathAndQuery::as_str) {
        None | Some("") | Some("/") => Ok((scheme, authority)),
        Some(_) => Err(bad("must be scheme://host[:port] without a path or query")),
    }
}

/// Sorts reqwest's error for the classifier: see [`Endpoint`]'s table.
fn map_error(e: ::reqwest::Error, follows_redirects: bool) -> Error {
    if e.is_connect() {
        // reqwest keeps hyper-util's connect error in the chain, which the classifier reads as
        // "never sent": true only if no redirect can have come first. After one (a `303` to a
        // host that is down) the first server had the request, and a POST sent again would be
        // acted on twice; reqwest's error names the first URL either way.
        if follows_redirects {
            Error::from_service(crate::classify::PossiblySent(e.into()))
        } else {
            Error::from_service(e)
        }
    } else if e.is_builder() {
        Error::with_source(Kind::InvalidRequest, e)
    } else if e.is_timeout() {
        // reqwest's `timeout` covers one `send`: here, one attempt.
        Error::with_source(Kind::AttemptTimedOut, e)
    } else {
        Error::from_service(e)
    }
}

impl<B> Service<Request<B>> for Endpoint
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<::reqwest::Body>;
    type Error = Error;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // As reqwest's client: always ready, its future waits for a connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = match self.prepare(req) {
            Ok(req) => State::Sending {
                follows_redirects: self.follows_redirects,
                // What was asked, to tell an answer from a redirect's target: only a client
                // that follows redirects needs it.
                asked: self.follows_redirects.then(|| req.url().clone()),
                // reqwest turns a POST answered 301, 302 or 303 into a GET, perhaps of the same
                // URL (Post/Redirect/Get to itself), which the answer does not tell: any answer
                // to an unsafe method may then be a redirect's.
                unsafe_method: self.follows_redirects && !req.method().is_safe(),
                pending: self.client.call(req),
            },
            Err(error) => State::Failed { error: Some(error) },
        };
        EndpointFuture { state }
    }
}

pin_project! {
    /// The response future of an [`Endpoint`].
    ///
    /// ```no_run
    /// # async fn run(mut e: meshless::reqwest::Endpoint) {
    /// use tower::Service;
    /// let req = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    /// let call: meshless::reqwest::EndpointFuture = e.call(req);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct EndpointFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed { error: Option<Error> },
        Sending {
            follows_redirects: bool,
            asked: Option<::reqwest::Url>,
            unsafe_method: bool,
            #[pin] pending: Pending,
        },
    }
}

impl Future for EndpointFuture {
    type Output = Result<Response<::reqwest::Body>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Error::new(Kind::InvalidRequest)))),
            StateProj::Sending {
                follows_redirects,
                asked,
                unsafe_method,
                pending,
            } => match std::task::ready!(pending.poll(cx)) {
                Ok(res) => {
                    let elsewhere = asked.as_ref().is_some_and(|url| url != res.url());
                    let mut res = Response::from(res);
                    if elsewhere || *unsafe_method {
                        res.extensions_mut().insert(AfterRedirect { elsewhere });
                    }
                    Poll::Ready(Ok(res))
                }
                Err(e) => Poll::Ready(Err(map_error(e, *follows_redirects))),
            },
        }
    }
}

impl std::fmt::Debug for EndpointFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_and_its_futures_can_be_shared_and_spawned() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::super::Client>();
        send_sync::<Endpoint>();
        send::<super::super::ResponseFuture>();
        send::<super::super::ExecuteFuture>();
        send::<EndpointFuture>();
    }

    #[test]
    fn the_redirect_policy_is_read_from_the_client() {
        let built = |policy| {
            ::reqwest::Client::builder()
                .redirect(policy)
                .build()
                .expect("a client")
        };
        assert!(follows_redirects(&::reqwest::Client::new()));
        assert!(follows_redirects(&built(
            ::reqwest::redirect::Policy::limited(3)
        )));
        assert!(follows_redirects(&built(
            ::reqwest::redirect::Policy::custom(|attempt| attempt.stop())
        )));
        assert!(!follows_redirects(&built(
            ::reqwest::redirect::Policy::none()
        )));
    }

    #[test]
    fn bases_are_scheme_and_authority_only() {
        let client = ::reqwest::Client::new();
        for good in [
            "http://127.0.0.1:8080",
            "https://svc.example/",
            " http://a:1 ",
        ] {
            assert!(Endpoint::new(client.clone(), good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:8080",
            "ftp://a:1",
            "http://user:pw@a:1",
            "http://a:1/prefix",
            "http://a:1/?q=1",
            "not a url",
        ] {
            let err = Endpoint::new(client.clone(), bad).unwrap_err();
            assert_eq!(err.setting(), "endpoints", "{bad}");
        }
    }

    #[test]
    fn the_endpoint_replaces_scheme_and_authority_and_keeps_path_and_query() {
        let e = Endpoint::new(::reqwest::Client::new(), "http://10.0.0.7:8080").unwrap();
        let empty = || http_body_util::Empty::<Bytes>::new();
        let req = Request::get("/a/b?c=d").body(empty()).unwrap();
        assert_eq!(
            e.prepare(req).unwrap().url().as_str(),
            "http://10.0.0.7:8080/a/b?c=d"
        );
        let req = Request::get("http://user:pw@svc.example/x")
            .body(empty())
            .unwrap();
        assert_eq!(
            e.prepare(req).unwrap().url().as_str(),
            "http://10.0.0.7:8080/x"
        );
        let req = Request::get("https://svc.example/x").body(empty()).unwrap();
        let err = e.prepare(req).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidRequest);
    }
}
