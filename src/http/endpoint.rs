//! One endpoint's connection: the shared hyper-util client, aimed at one address.

use crate::error::BoxError;
use crate::retry::ReplayBody;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::Service;

/// The request body as it travels through the stack: any body, boxed, replayable.
pub(crate) type RequestBody = ReplayBody<UnsyncBoxBody<Bytes, BoxError>>;

pub(crate) type Hyper = HyperClient<HttpConnector, RequestBody>;

/// Sends requests to one endpoint through the shared hyper-util client, whose pool keeps the
/// connections of each endpoint apart (it is keyed by authority).
#[derive(Clone)]
pub(crate) struct EndpointService {
    client: Hyper,
    authority: Authority,
}

impl EndpointService {
    pub(crate) fn new(client: Hyper, authority: Authority) -> Self {
        EndpointService { client, authority }
    }
}

impl Service<Request<RequestBody>> for EndpointService {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.client.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> Self::Future {
        // Keep the logical name the caller addressed as Host; the connection goes to the
        // endpoint.
        if let Some(logical) = req.uri().authority() {
            if !req.headers().contains_key(http::header::HOST) {
                if let Ok(host) = HeaderValue::from_str(logical.as_str()) {
                    req.headers_mut().insert(http::header::HOST, host);
                }
            }
        }
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        Box::pin(self.client.call(req))
    }
}
