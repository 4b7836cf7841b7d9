//! A request held back after its attempt's limit was written into its headers (the balancer
//! waiting out every endpoint's pushback, or for one to be ready) tells its server only what is
//! left when it is finally sent.

use super::{CallerDeadline, RequestDeadline, grpc_timeout};
use http::{HeaderName, Request};
use tokio::time::Instant;

/// The limit header an [`AttemptTimeout`](super::AttemptTimeout) was configured with, when it
/// is not [`DEADLINE_HEADER`](super::DEADLINE_HEADER): a layer below that holds the request back must find it to lower
/// it. Inserted only by clients configured so.
#[derive(Debug, Clone)]
pub(crate) struct LimitHeader(pub(crate) HeaderName);

/// Lowers every limit the request carries (`grpc-timeout`, [`DEADLINE_HEADER`](super::DEADLINE_HEADER) and a
/// configured [`LimitHeader`]) to what is left at `now` of its attempt and of its caller's
/// limit. A limit is never raised; a request without a [`RequestDeadline`] is left as it is.
pub(crate) fn lower_limits<B>(req: &mut Request<B>, now: Instant) {
    let Some(RequestDeadline(end)) = req.extensions().get::<RequestDeadline>().copied() else {
        return;
    };
    let mut left = end.saturating_duration_since(now);
    if let Some(CallerDeadline(at)) = req.extensions().get::<CallerDeadline>() {
        left = left.min(at.saturating_duration_since(now));
    }
    let custom = req.extensions().get::<LimitHeader>().map(|h| h.0.clone());
    let headers = req.headers_mut();
    if let Some(sent) = headers
        .get(&grpc_timeout::HEADER)
        .and_then(grpc_timeout::parse)
    {
        if left < sent {
            headers.insert(grpc_timeout::HEADER, grpc_timeout::encode(left));
        }
    }
    for name in std::iter::once(super::attempt::OURS).chain(custom) {
        if headers.contains_key(&name) {
            super::attempt::lower_millis(headers, name, left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::DEADLINE_HEADER;
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn limits_are_lowered_to_what_is_left_and_never_raised() {
        let start = Instant::now();
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestDeadline(start + Duration::from_millis(900)));
        req.extensions_mut()
            .insert(LimitHeader(HeaderName::from_static("x-expected-ms")));
        let headers = req.headers_mut();
        headers.insert(
            grpc_timeout::HEADER,
            grpc_timeout::encode(Duration::from_millis(900)),
        );
        headers.insert(DEADLINE_HEADER, http::HeaderValue::from_static("900"));
        headers.insert("x-expected-ms", http::HeaderValue::from_static("100"));
        lower_limits(&mut req, start + Duration::from_millis(300));
        let headers = req.headers();
        assert_eq!(
            grpc_timeout::parse(&headers[grpc_timeout::HEADER]),
            Some(Duration::from_millis(600))
        );
        assert_eq!(headers[DEADLINE_HEADER], "600");
        assert_eq!(headers["x-expected-ms"], "100", "never raised");

        // The caller's own limit, if nearer, wins.
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestDeadline(start + Duration::from_millis(900)));
        req.extensions_mut()
            .insert(CallerDeadline(start + Duration::from_millis(400)));
        req.headers_mut().insert(
            grpc_timeout::HEADER,
            grpc_timeout::encode(Duration::from_millis(400)),
        );
        lower_limits(&mut req, start + Duration::from_millis(300));
        assert_eq!(
            grpc_timeout::parse(&req.headers()[grpc_timeout::HEADER]),
            Some(Duration::from_millis(100))
        );

        // No deadline: nothing to go by.
        let mut req = Request::new(());
        req.headers_mut()
            .insert(grpc_timeout::HEADER, http::HeaderValue::from_static("5S"));
        lower_limits(&mut req, start + Duration::from_secs(1));
        assert_eq!(req.headers()[grpc_timeout::HEADER], "5S");
    }
}
