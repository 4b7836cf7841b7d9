//! One endpoint: its own hyper-util client and pool, whose connector always dials its address.

use super::connect::{ConnectSettings, Connector};
use crate::error::BoxError;
use crate::retry::ReplayBody;
use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Builder as HyperBuilder;
use hyper_util::client::legacy::Client as HyperClient;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// The request body as it travels through the stack: any body, boxed, replayable.
pub(crate) type RequestBody = ReplayBody<UnsyncBoxBody<Bytes, BoxError>>;

type Hyper = HyperClient<Connector, RequestBody>;

/// Everything needed to open an endpoint, shared by static endpoints and DNS discovery.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub(crate) hyper: HyperBuilder,
    pub(crate) connect: Arc<ConnectSettings>,
    /// The scheme of relative URIs (`/path`).
    pub(crate) scheme: Scheme,
    /// The authority of relative URIs: configured, or the DNS name; `None` names the endpoint's
    /// own address, the only name there is.
    pub(crate) authority: Option<Authority>,
    /// HTTP/2 with prior knowledge: no `Host` header, `:authority` instead.
    pub(crate) http2_only: bool,
}

impl Endpoints {
    pub(crate) fn endpoint(&self, addr: SocketAddr) -> Option<EndpointService> {
        let authority = match &self.authority {
            Some(authority) => authority.clone(),
            None => addr.to_string().parse().ok()?,
        };
        // Plain `http` without prior knowledge is always HTTP/1.1, the only case where
        // hyper-util writes `Host`; over TLS, ALPN decides later.
        let host = match self.scheme == Scheme::HTTP && !self.http2_only {
            true => http1_host(&authority),
            false => None,
        };
        Some(EndpointService {
            inner: Arc::new(Inner {
                client: self.hyper.build(Connector::new(addr, self.connect.clone())),
                scheme: self.scheme.clone(),
                authority,
                host,
            }),
        })
    }
}

/// Sends requests to one endpoint. Absolute URIs go out as the caller wrote them (the connector
/// decides where the bytes go), so `Host` and `:authority` name what the caller named.
///
/// The balancer clones the chosen endpoint's service for every request: one shared handle
/// makes that clone a single reference count, where hyper-util's client alone holds several.
#[derive(Clone)]
pub(crate) struct EndpointService {
    inner: Arc<Inner>,
}

struct Inner {
    client: Hyper,
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header of `http://{authority}`, written once: hyper-util would format it
    /// for every request (a `format!`, a port parse and two allocations).
    host: Option<HeaderValue>,
}

impl Service<Request<RequestBody>> for EndpointService {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    // hyper-util's future is already boxed inside: boxing it again would cost an allocation.
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // As hyper-util's client: always ready, its future waits for a pooled connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> Self::Future {
        if let Some(uri) = self.target(req.uri()) {
            *req.uri_mut() = uri;
        }
        if let Some(host) = &self.inner.host {
            // Only where hyper-util sends origin-form (a CONNECT's request-target is the URI's
            // authority itself), and only for this endpoint's authority, which `Authority`
            // compares ignoring case as hyper-util's pool does.
            let uri = req.uri();
            if uri.scheme() == Some(&Scheme::HTTP)
                && req.method() != Method::CONNECT
                && uri.authority() == Some(&self.inner.authority)
            {
                // The value hyper-util would write, and like it never over one the caller set:
                // the one written once when the bytes match, else made from the request's own.
                let value = match uri.authority().map(Authority::as_str) {
                    Some(text) if text == self.inner.authority.as_str() => Some(host.clone()),
                    _ => uri.authority().and_then(http1_host),
                };
                if let Some(value) = value {
                    req.headers_mut().entry(HOST).or_insert(value);
                    pool_key_authority(req.uri_mut());
                }
            }
        }
        self.inner.client.request(req)
    }
}

impl EndpointService {
    /// The URI to send instead of the caller's, if it must change: a relative URI gets this
    /// client's scheme and authority, and userinfo is removed so it never reaches `Host` or
    /// `:authority`. The common case, an absolute URI without userinfo, allocates nothing.
    fn target(&self, uri: &Uri) -> Option<Uri> {
        let userinfo = uri.authority().is_some_and(|a| a.as_str().contains('@'));
        if uri.scheme().is_some() && uri.authority().is_some() && !userinfo {
            return None;
        }
        let mut parts = uri.clone().into_parts();
        parts.authority = match parts.authority.take() {
            Some(authority) if userinfo => without_userinfo(&authority),
            Some(authority) => Some(authority),
            None => Some(self.inner.authority.clone()),
        };
        if parts.scheme.is_none() {
            parts.scheme = Some(self.inner.scheme.clone());
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        Uri::from_parts(parts).ok()
    }
}

/// The authority hyper-util keys this endpoint's pool with, for requests whose `Host` is
/// already written. Over plain HTTP/1.1 hyper-util reads the URI's authority only for that key
/// (it sends the path alone, and the connector dials the endpoint's address whatever the URI
/// says), and hashes and compares it byte by byte, case-folded, several times per request: one
/// byte instead of the logical name makes that nearly free. These requests all had the same
/// authority, so they share one key as before.
const POOL_KEY: &str = "_";

fn pool_key_authority(uri: &mut Uri) {
    let mut parts = std::mem::take(uri).into_parts();
    parts.authority = Some(Authority::from_static(POOL_KEY));
    // hyper-util sends `/` for an absolute URI without a path too.
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    // Cannot fail: the scheme, the authority and the path are all there and valid.
    if let Ok(keyed) = Uri::from_parts(parts) {
        *uri = keyed;
    }
}

/// The `Host` header hyper-util writes on HTTP/1.1 for `http://{authority}`: the host, and the
/// port unless it is 80.
fn http1_host(authority: &Authority) -> Option<HeaderValue> {
    // `Port` displays its number (`08080` as `8080`), as in hyper-util's header.
    let text = match authority.port() {
        Some(port) if port.as_u16() != 80 => format!("{}:{port}", authority.host()),
        _ => authority.host().to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

fn without_userinfo(authority: &Authority) -> Option<Authority> {
    let text = authority.as_str();
    let host = text.rsplit_once('@').map_or(text, |(_, host)| host);
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(authority: &str) -> EndpointService {
        let endpoints = Endpoints {
            hyper: HyperClient::builder(hyper_util::rt::TokioExecutor::new()),
            connect: Arc::new(ConnectSettings {
                connect_timeout: None,
                tcp_keepalive: None,
                http2_only: false,
                #[cfg(feature = "tls")]
                tls: super::super::tls::TlsSettings::default()
                    .build(false)
                    .expect("default TLS settings"),
            }),
            scheme: Scheme::HTTP,
            authority: Some(authority.parse().expect("authority")),
            http2_only: false,
        };
        endpoints
            .endpoint(SocketAddr::from(([127, 0, 0, 1], 1)))
            .expect("endpoint")
    }

    fn target(service: &EndpointService, uri: &str) -> String {
        let uri: Uri = uri.parse().expect("uri");
        service
            .target(&uri)
            .map_or(uri.to_string(), |u| u.to_string())
    }

    #[test]
    fn relative_uris_get_the_logical_authority_and_userinfo_is_dropped() {
        let s = service("svc.example:8080");
        assert_eq!(target(&s, "/a?b=c"), "http://svc.example:8080/a?b=c");
        assert_eq!(
            target(&s, "https://other.example/x"),
            "https://other.example/x"
        );
        assert_eq!(
            target(&s, "http://user:pass@svc.example/"),
            "http://svc.example/"
        );
        assert_eq!(
            target(&s, "http://a@b:c@svc.example:81/p"),
            "http://svc.example:81/p"
        );
    }
}
