//! The copy of a request's head that retries are sent with.

use crate::classify::Idempotence;
use crate::deadline::RequestDeadline;
use crate::primitives::route_policy::RouteExt;
use crate::retry::{Idempotency, Idempotent};
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use tokio::time::Instant;

/// What a retry needs of the request's head: method, URI, version, headers and extensions, as
/// the first attempt had them.
///
/// Taken on every request that may be retried, and used on almost none, so the copy keeps to
/// what it must: an empty header map is left out (cloning and dropping even an empty
/// `HeaderMap` costs about a hundred instructions), and so is an extension map that holds only
/// the deadline (the retry state keeps the deadline anyway and puts it back).
pub(super) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Option<HeaderMap>,
    extensions: Extensions,
    /// The request's route, when its extensions were left out for holding only it and the
    /// deadline: put back on each retry without copying the map.
    route: Option<RouteExt>,
}

/// The extensions of a request holding the deadline and one more: a route is kept apart
/// (a reference count) rather than copied with its map (three allocations). Out of line, so
/// that the copy of an unrouted request stays small enough to inline its own lookups.
#[inline(never)]
fn route_apart(all: &Extensions) -> (Extensions, Option<RouteExt>) {
    match all.get::<RouteExt>() {
        Some(route) => (Extensions::new(), Some(route.clone())),
        None => (all.clone(), None),
    }
}

impl Head {
    /// Copies the head of a request; `has_deadline` says its extensions hold a
    /// [`RequestDeadline`].
    // Inlined, so that the copy is written where the future keeps it rather than returned
    // and copied again (callgrind: a 224-byte `memcpy` per request).
    #[inline(always)]
    pub(super) fn copy<B>(req: &Request<B>, has_deadline: bool) -> Self {
        let all = req.extensions();
        let (extensions, route) = match all.len() {
            1 if has_deadline => (Extensions::new(), None),
            2 if has_deadline => route_apart(all),
            _ => (all.clone(), None),
        };
        Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: (!req.headers().is_empty()).then(|| req.headers().clone()),
            extensions,
            route,
        }
    }

    /// The retries the request's route allows, if routing is on and it has a route.
    pub(super) fn route_retries(
        &self,
        routes: &crate::primitives::route_policy::Switch,
    ) -> Option<u32> {
        if !routes.on() {
            return None;
        }
        let route = match &self.route {
            Some(route) => route,
            None => self.extensions.get::<RouteExt>()?,
        };
        Some(route.0.max_retries)
    }

    /// Whether the request is idempotent by `rules`, as [`Idempotency::idempotence`] would
    /// have said of the request itself: a marker is never among the extensions left out.
    pub(super) fn idempotence(&self, rules: &Idempotency) -> Idempotence {
        match self.extensions.get::<Idempotent>() {
            Some(Idempotent(true)) => Idempotence::Idempotent,
            Some(Idempotent(false)) => Idempotence::Forbidden,
            None => {
                let empty;
                let headers = match &self.headers {
                    Some(headers) => headers,
                    None => {
                        empty = HeaderMap::new();
                        &empty
                    }
                };
                Idempotence::from(rules.by_parts(&self.method, &self.uri, headers))
            }
        }
    }

    /// A request with this head and `body`, the deadline put back when the copy left it out.
    pub(super) fn request<B>(&self, body: B, deadline: Option<Instant>) -> Request<B> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        if let Some(headers) = &self.headers {
            *req.headers_mut() = headers.clone();
        }
        let extensions = req.extensions_mut();
        *extensions = self.extensions.clone();
        if let Some(deadline) = deadline {
            if extensions.get::<RequestDeadline>().is_none() {
                extensions.insert(RequestDeadline(deadline));
            }
        }
        if let Some(route) = &self.route {
            extensions.insert(route.clone());
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_retry_gets_the_same_head() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let req = Request::post("http://svc/x?q=1")
            .version(Version::HTTP_2)
            .header("x-a", "1")
            .header("x-a", "2")
            .extension(RequestDeadline(deadline))
            .extension(Idempotent(true))
            .body(())
            .unwrap();
        let req = Head::copy(&req, true).request("b", Some(deadline));
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "http://svc/x?q=1");
        assert_eq!(req.version(), Version::HTTP_2);
        let values: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(
            req.extensions().get::<Idempotent>(),
            Some(&Idempotent(true))
        );
        assert_eq!(
            req.extensions().get::<RequestDeadline>().map(|d| d.0),
            Some(deadline)
        );
        assert_eq!(*req.body(), "b");
    }

    #[test]
    fn a_deadline_left_out_of_the_copy_is_put_back() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let original = Request::get("http://svc/")
            .extension(RequestDeadline(deadline))
            .body(())
            .unwrap();
        let head = Head::copy(&original, true);
        assert!(head.extensions.is_empty() && head.headers.is_none());
        let req = head.request((), Some(deadline));
        assert_eq!(req.extensions().len(), 1);
        assert_eq!(
            req.extensions().get::<RequestDeadline>().map(|d| d.0),
            Some(deadline)
        );
        assert!(req.headers().is_empty());
        assert_eq!(
            Head::copy(&original, true)
                .request((), None)
                .extensions()
                .len(),
            0
        );
    }
}
