//! Choosing an endpoint and calling it, waiting at most the fail-fast timeout for one.

use super::avoid::AvoidEndpoints;
use super::body::ResponseBody;
use super::endpoint::{Endpoint, InFlight};
use super::p2c;
use super::{Shared, Snapshot};
use crate::budget::UnsentRetry;
use crate::classify::grpc_web::TrailerScanner;
use crate::classify::{AfterRedirect, Class, Classified};
use crate::deadline::{RequestDeadline, StreamingRule};
use crate::error::{BoxError, Error, Kind, QuietUntil};
use crate::primitives::step::Step;
use http::Request;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::Service;

/// How often a request waiting for an endpoint looks again: ejections end and discovery
/// changes arrive without notice, and a short poll is cheaper than a notification per change.
const RECHECK: Duration = Duration::from_millis(20);

/// Stands in for a fail-fast timeout too long for an `Instant`: waiting "forever".
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pin_project! {
    /// The response future of [`Balance`](super::Balance).
    pub struct ResponseFuture<K, S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, B, K, S>,
        shared: Arc<Shared<K, S>>,
        give_up_at: Option<Instant>,
        recheck: Option<Pin<Box<Sleep>>>,
        called_at: Option<Instant>,
        // The last endpoint service that failed to become ready: the source of a fail-fast.
        not_ready: Option<Error>,
        streaming: StreamingRule,
    }

    impl<K, S, B> PinnedDrop for ResponseFuture<K, S, B>
    where
        S: Service<Request<B>>,
    {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before an endpoint was called: a retry paid for with a token was never
            // sent, so the token goes back to the budget.
            if let StateProj::Pick { request: Some(request), .. } = this.project().state.project() {
                if let Some(token) = request.extensions().get::<UnsentRetry>() {
                    token.refund();
                }
            }
        }
    }
}

pin_project! {
    // The request waits in `Pick`, so that it shares its bytes with the endpoint's future: the
    // whole future is moved several times on its way up the stack.
    #[project = StateProj]
    enum State<F, B, K, S> {
        // `first`: the endpoint set the balancer handle had when it was called, for the first
        // pick; later picks (after a wait) read the shared set again. Kept here rather than
        // beside the state, where it would grow the future that the whole stack moves.
        Pick { request: Option<Request<B>>, first: Option<Snapshot<K, S>> },
        // `bodiless`: a `HEAD`, whose answer has no body whatever its `content-length` says.
        Call { #[pin] future: F, in_flight: Option<InFlight>, bodiless: bool },
    }
}

impl<K, S, B> ResponseFuture<K, S, B>
where
    S: Service<Request<B>>,
{
    // Inlined into `call`, so that the future is built where it is returned (callgrind: out
    // of line, one more copy of it).
    #[inline]
    pub(super) fn new(
        shared: Arc<Shared<K, S>>,
        first: Snapshot<K, S>,
        request: Request<B>,
        now: Instant,
    ) -> Self {
        ResponseFuture {
            streaming: StreamingRule::of(&request),
            state: State::Pick {
                request: Some(request),
                first: Some(first),
            },
            shared,
            give_up_at: None,
            recheck: None,
            called_at: Some(now),
            not_ready: None,
        }
    }
}

impl<K, S, B, RB> Future for ResponseFuture<K, S, B>
where
    S: Service<Request<B>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Output = Result<http::Response<ResponseBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _step = Step::enter();
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Pick { request, first } => {
                    // The first pick reuses the instant `call` read; a clock read costs as
                    // much as the pick itself on some machines. A pick again, after a wait in
                    // this same poll (a recheck timer already due), reads the clock afresh:
                    // with the step's reading the endpoints it waited for would stay quiet,
                    // and the loop would spin.
                    let now = this.called_at.take().unwrap_or_else(Instant::now);
                    let shared = &**this.shared;
                    let (endpoints, held) = match first.take() {
                        Some(endpoints) => (endpoints, false),
                        None => (shared.snapshot(), true),
                    };
                    let fail_open = shared.detector.panicking();
                    let not_ready = &mut *this.not_ready;
                    let ready = |endpoint: &Endpoint<K, S>| {
                        let mut service = endpoint.service.clone();
                        match service.poll_ready(cx) {
                            Poll::Ready(Ok(())) => Some(service),
                            // Not ready now: the pick goes on among the others, and this
                            // request is woken when the service is ready, or looks again.
                            Poll::Pending => None,
                            Poll::Ready(Err(e)) => {
                                let err = Error::from_service(e);
                                let class = shared.classifier.classify_error(&err);
                                let at = endpoint.meter.since_origin(now);
                                InFlight::start(endpoint.meter.clone(), false, at).finish(&class);
                                *not_ready = Some(err);
                                None
                            }
                        }
                    };
                    // A hedge steers away from the endpoints its siblings went to, when
                    // another one can take it; requests without the list pay one lookup.
                    let avoid = request
                        .as_ref()
                        .and_then(|r| r.extensions().get::<AvoidEndpoints>());
                    let choice = match avoid {
                        None => p2c::pick(&endpoints, now, fail_open, ready),
                        Some(avoid) => {
                            let mut ready = ready;
                            let elsewhere = p2c::pick(&endpoints, now, fail_open, |e| {
                                if avoid.contains(endpoint_id(e)) {
                                    None
                                } else {
                                    ready(e)
                                }
                            });
                            let choice = match elsewhere {
                                Some(choice) => Some(choice),
                                None => p2c::pick(&endpoints, now, fail_open, ready),
                            };
                            if let Some(choice) = &choice {
                                avoid.add(endpoint_id(choice.endpoint));
                            }
                            choice
                        }
                    };
                    if let Some(choice) = choice {
                        super::telemetry::record_endpoint(&choice.endpoint.label);
                        let Some(mut request) = request.take() else {
                            return Poll::Ready(Err(Error::new(Kind::NoReadyEndpoint)));
                        };
                        if held {
                            // Its limits were written when it was called: what is left now.
                            crate::deadline::lower_limits(&mut request, now);
                        }
                        // The meter as the pick found it: the endpoint itself is not read again.
                        let in_flight =
                            InFlight::start(choice.meter.clone(), choice.probe, choice.at);
                        let mut service = choice.service;
                        let bodiless = request.method() == http::Method::HEAD;
                        let future = service.call(request);
                        this.state.set(State::Call {
                            future,
                            in_flight: Some(in_flight),
                            bodiless,
                        });
                        continue;
                    }
                    // Every endpoint that could take the request is pushing back: wait for
                    // the first to be free, if that is before the request's deadline.
                    let wake = if let Some((free_at, answers_in)) =
                        p2c::quiet_end(&endpoints, now, fail_open)
                    {
                        let deadline = request
                            .as_ref()
                            .and_then(|r| r.extensions().get::<RequestDeadline>());
                        // Sent when it is free with less time left than the endpoint takes
                        // to answer, the attempt would be cut as it leaves, and charged to
                        // the endpoint as a timeout (a probe at the first second of a quiet,
                        // under an attempt timeout of a second, was cut each time).
                        if deadline.is_some_and(|d| {
                            free_at
                                .checked_add(answers_in)
                                .is_none_or(|ready| ready > d.0)
                        }) {
                            ready!(crate::primitives::refusing::poll_budget(cx));
                            tracing::debug!(
                                endpoints = endpoints.len(),
                                "every endpoint is pushing back past the deadline"
                            );
                            // Refused unsent: its retry token goes back now, before the retry
                            // layer decides (it may pay again to send it later).
                            refund_unsent(request.as_ref());
                            return Poll::Ready(Err(Error::with_source(
                                Kind::EndpointsPushingBack,
                                QuietUntil(free_at),
                            )));
                        }
                        // A pushback ends on time: the fail-fast clock starts after it.
                        *this.give_up_at = None;
                        free_at.min(now + RECHECK)
                    } else {
                        // Nothing available: wait, but never longer than the fail-fast timeout.
                        let give_up_at = *this.give_up_at.get_or_insert_with(|| {
                            now.checked_add(shared.config.fail_fast)
                                .unwrap_or(now + FAR)
                        });
                        if now >= give_up_at {
                            // At once when the fail-fast timeout is zero: a refusal too.
                            ready!(crate::primitives::refusing::poll_budget(cx));
                            shared
                                .fail_fast_events
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if let Some(metrics) = &shared.metrics {
                                metrics.failed_fast();
                            }
                            tracing::debug!(
                                endpoints = endpoints.len(),
                                "no ready endpoint: failing fast"
                            );
                            refund_unsent(request.as_ref());
                            return Poll::Ready(Err(match this.not_ready.take() {
                                Some(cause) => Error::with_source(Kind::NoReadyEndpoint, cause),
                                None => Error::new(Kind::NoReadyEndpoint),
                            }));
                        }
                        (now + RECHECK).min(give_up_at)
                    };
                    let sleep = this
                        .recheck
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake)));
                    sleep.as_mut().reset(wake);
                    ready!(sleep.as_mut().poll(cx));
                }
                StateProj::Call {
                    future,
                    in_flight,
                    bodiless,
                } => {
                    let result = ready!(future.poll(cx));
                    let in_flight = in_flight.take();
                    let classifier = &this.shared.classifier;
                    return Poll::Ready(match result {
                        Ok(res) => {
                            let mut head =
                                classifier.classify_response(res.status(), res.headers());
                            let (mut parts, body) = res.into_parts();
                            if !parts.extensions.is_empty() {
                                if let Some(redirect) = parts.extensions.remove::<AfterRedirect>() {
                                    head = head.map(|class| class.after_redirect(redirect));
                                }
                            }
                            // The verdict travels with a failed response, so that the layers
                            // above read it instead of classifying again; a success carries
                            // nothing and costs nothing.
                            // Whatever verdict the response brought from below is replaced:
                            // the retry layer trusts `Classified`, so a stale one (an inner
                            // meshless stack's, the endpoint's) must never survive a success.
                            match head.filter(Class::is_failure) {
                                Some(class) => {
                                    parts.extensions.insert(Classified(class));
                                }
                                None if !parts.extensions.is_empty() => {
                                    parts.extensions.remove::<Classified>();
                                }
                                None => {}
                            }
                            let config = &this.shared.config;
                            let mut web = None;
                            let meter = match in_flight {
                                None => None,
                                Some(f) if body.is_end_stream() => {
                                    f.finish(
                                        &head.unwrap_or_else(|| classifier.classify_eos(None)),
                                    );
                                    None
                                }
                                Some(f) if config.rtt_at_headers && head.is_some() => {
                                    f.finish(&head.unwrap_or(Class::success()));
                                    None
                                }
                                Some(mut f) => {
                                    // A stream's length is not the endpoint's speed: its RTT is
                                    // taken at the head, its class still at the end (trailers).
                                    if config.rtt_at_headers
                                        || this.streaming.applies(&parts.headers)
                                    {
                                        f.latency_at_head();
                                    }
                                    // gRPC-web carries its status in the body: scan for it.
                                    if head.is_none() {
                                        web = TrailerScanner::for_response(&parts.headers)
                                            .map(Box::new);
                                    }
                                    Some((f, head))
                                }
                            };
                            // hyper ends an HTTP/2 body cleanly when its stream is reset
                            // with `NO_ERROR`, which a server may send only after a complete
                            // answer: a body its length says is short must not pass for whole.
                            let length = if parts.version == http::Version::HTTP_2
                                && !*bodiless
                                && !body.is_end_stream()
                            {
                                content_length(&parts)
                            } else {
                                None
                            };
                            let body = ResponseBody::new(body, meter, web, classifier, length);
                            Ok(http::Response::from_parts(parts, body))
                        }
                        Err(e) => {
                            let err = Error::from_service(e);
                            if let Some(f) = in_flight {
                                f.fail(&err, &**classifier);
                            }
                            Err(err)
                        }
                    });
                }
            }
        }
    }
}

/// Gives back the retry token a request refused unsent carries, at the refusal: waiting for
/// this future's drop would leave it out while the retry layer withdraws another.
fn refund_unsent<B>(request: Option<&Request<B>>) {
    if let Some(token) = request.and_then(|r| r.extensions().get::<UnsentRetry>()) {
        token.refund();
    }
}

/// The length an answer's head promises for its body, if it has one: none for the statuses
/// that carry no body (their `content-length` is the one a `GET` would have had).
fn content_length(parts: &http::response::Parts) -> Option<u64> {
    if parts.status.is_informational()
        || parts.status == http::StatusCode::NO_CONTENT
        || parts.status == http::StatusCode::NOT_MODIFIED
    {
        return None;
    }
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An endpoint's identity for [`AvoidEndpoints`]: where its meter lives, which stays put (and
/// is never 0) while anything refers to the endpoint.
fn endpoint_id<K, S>(endpoint: &Endpoint<K, S>) -> usize {
    Arc::as_ptr(&endpoint.meter) as usize
}

impl<K, S, B> std::fmt::Debug for ResponseFuture<K, S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
