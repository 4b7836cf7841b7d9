//! One endpoint: its own hyper-util client and pool, whose connector always dials its address.

use super::connect::{ConnectSettings, Connector};
use crate::error::BoxError;
use crate::retry::ReplayBody;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
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
}

impl Endpoints {
    pub(crate) fn endpoint(&self, addr: SocketAddr) -> Option<EndpointService> {
        let authority = match &self.authority {
            Some(authority) => authority.clone(),
            None => addr.to_string().parse().ok()?,
        };
        Some(EndpointService {
            inner: Arc::new(Inner {
                client: self.hyper.build(Connector::new(addr, self.connect.clone())),
                scheme: self.scheme.clone(),
                authority,
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
                #[cfg(feature = "tls")]
                tls: super::super::tls::TlsSettings::default()
                    .build(false)
                    .expect("default TLS settings"),
            }),
            scheme: Scheme::HTTP,
            authority: Some(authority.parse().expect("authority")),
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
