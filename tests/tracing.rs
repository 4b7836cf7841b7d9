//! Tracing contracts: a span per logical request with a child span per attempt, and events on
//! ejection, probation, return and budget exhaustion.
//!
//! A small subscriber written here records every span (name, fields, parent) and event; each
//! test installs it for its own thread and runs a current-thread runtime on paused time.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use meshless::backoff::Backoff;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::observe::{ATTEMPT_SPAN, REQUEST_SPAN};
use meshless::outlier::OutlierConfig;
use meshless::retry::RetryLayer;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

// ---------------------------------------------------------------------------------------------
// A recording subscriber.
// ---------------------------------------------------------------------------------------------

type Fields = BTreeMap<String, String>;

#[derive(Debug, Clone)]
struct SpanRecord {
    id: u64,
    metadata: &'static Metadata<'static>,
    parent: Option<u64>,
    fields: Fields,
}

#[derive(Debug, Clone)]
struct EventRecord {
    message: String,
    /// The span the event happened in.
    span: Option<u64>,
    fields: Fields,
}

#[derive(Default)]
struct Log {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
    /// The spans entered, innermost last (the tests run on one thread).
    entered: Vec<u64>,
}

/// Records every span and event; every callsite is enabled.
#[derive(Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Log>>,
    next_id: Arc<AtomicU64>,
}

/// Writes every field value as text: strings without quotes, the rest as `Debug` does.
struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    fn spans(&self, name: &str) -> Vec<SpanRecord> {
        let log = self.log();
        log.spans
            .iter()
            .filter(|s| s.metadata.name() == name)
            .cloned()
            .collect()
    }

    fn events(&self, message: &str) -> Vec<EventRecord> {
        let log = self.log();
        log.events
            .iter()
            .filter(|e| e.message.starts_with(message))
            .cloned()
            .collect()
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut log = self.log();
        let parent = if attrs.is_contextual() {
            log.entered.last().copied()
        } else {
            attrs.parent().map(Id::into_u64)
        };
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        log.spans.push(SpanRecord {
            id,
            metadata: attrs.metadata(),
            parent,
            fields,
        });
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut log = self.log();
        if let Some(s) = log.spans.iter_mut().find(|s| s.id == span.into_u64()) {
            values.record(&mut Visitor(&mut s.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let mut log = self.log();
        let span = if event.is_contextual() {
            log.entered.last().copied()
        } else {
            event.parent().map(Id::into_u64)
        };
        log.events.push(EventRecord {
            message,
            span,
            fields,
        });
    }

    fn enter(&self, span: &Id) {
        self.log().entered.push(span.into_u64());
    }

    fn exit(&self, span: &Id) {
        let mut log = self.log();
        if let Some(i) = log.entered.iter().rposition(|id| *id == span.into_u64()) {
            log.entered.remove(i);
        }
    }

    /// What `Span::current()` asks: the balancer records its pick through it.
    fn current_span(&self) -> Current {
        let log = self.log();
        let current = log
            .entered
            .last()
            .and_then(|id| log.spans.iter().find(|s| s.id == *id));
        match current {
            Some(span) => Current::new(Id::from_u64(span.id), span.metadata),
            None => Current::none(),
        }
    }
}

/// Runs `test` on a paused current-thread runtime with a recording subscriber for this thread.
fn traced<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Recorder {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(test())
    });
    recorder
}

// ---------------------------------------------------------------------------------------------
// Endpoints.
// ---------------------------------------------------------------------------------------------

/// What the endpoints receive, behind a retry layer, and answer.
type Req = Request<meshless::retry::ReplayBody<Empty<Bytes>>>;
type Res = Response<Empty<Bytes>>;

/// An endpoint answering the statuses of `script` in turn (the last one repeats).
fn scripted(
    script: impl IntoIterator<Item = u16>,
) -> impl tower::Service<
    Req,
    Response = Res,
    Error = Infallible,
    Future = impl Future<Output = Result<Res, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let steps = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<u16>>()));
    tower::service_fn(move |_req: Req| {
        let status = {
            let mut steps = steps.lock().unwrap();
            if steps.len() > 1 {
                steps.pop_front().unwrap()
            } else {
                steps[0]
            }
        };
        async move { Ok::<_, Infallible>(status_response(status)) }
    })
}

fn status_response(status: u16) -> Response<Empty<Bytes>> {
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://payments/charge?id=7")
        .body(Empty::new())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_request_span_holds_one_child_span_per_attempt() {
    let recorder = traced(|| async {
        let balance = Balance::builder().build();
        balance.insert("solo", scripted([503, 200]));
        let svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(2)))
            .layer(
                RetryLayer::new(Budget::default())
                    .service_name("payments")
                    .backoff(
                        Backoff::full_jitter(Duration::from_millis(20), Duration::from_millis(20))
                            .unwrap(),
                    ),
            )
            .layer(AttemptTimeoutLayer::new(Duration::from_millis(100)))
            .service(balance);
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
    });

    let requests = recorder.spans(REQUEST_SPAN);
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    let field = |s: &SpanRecord, name: &str| s.fields.get(name).cloned().unwrap_or_default();
    assert_eq!(field(request, "service"), "payments");
    assert_eq!(field(request, "method"), "GET");
    assert_eq!(field(request, "path"), "/charge", "no query string");
    assert_eq!(field(request, "attempts"), "2");
    assert_eq!(field(request, "class"), "success");
    assert_eq!(field(request, "reason"), "success");

    let attempts = recorder.spans(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.parent, Some(request.id), "a child of the request");
        assert_eq!(field(attempt, "attempt"), (i + 1).to_string());
        assert_eq!(
            field(attempt, "endpoint"),
            "solo",
            "recorded by the balancer"
        );
    }
    assert_eq!(field(&attempts[0], "outcome"), "http_5xx");
    assert_eq!(field(&attempts[0], "backoff_ms"), "0");
    assert_eq!(field(&attempts[1], "outcome"), "success");
    // Full jitter over [0, 20 ms].
    let backoff: u64 = field(&attempts[1], "backoff_ms").parse().unwrap();
    assert!(backoff <= 20, "{backoff}");
}

#[test]
fn budget_exhaustion_is_an_event_in_the_request_span() {
    let recorder = traced(|| async {
        let empty = Budget::builder()
            .min_per_second(0.0)
            .ratio(0.0)
            .build()
            .unwrap();
        let balance = Balance::builder().build();
        balance.insert("solo", scripted([503]));
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(empty))
            .service(balance);
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 503);
    });
    let request = &recorder.spans(REQUEST_SPAN)[0];
    assert_eq!(request.fields["class"], "failure");
    assert_eq!(request.fields["reason"], "http_5xx");
    assert_eq!(request.fields["attempts"], "1");
    let events = recorder.events("retry budget exhausted");
    assert_eq!(events.len(), 1, "{:?}", recorder.log().events);
    assert_eq!(events[0].span, Some(request.id));
    assert_eq!(events[0].fields["reason"], "http_5xx");
    assert_eq!(events[0].fields["attempts"], "1");
}

#[test]
fn ejection_probation_and_return_are_events() {
    let recorder = traced(|| async {
        let failing = Arc::new(AtomicBool::new(true));
        let flag = failing.clone();
        let bad = tower::service_fn(move |_req: Request<Empty<Bytes>>| {
            let status = if flag.load(Ordering::SeqCst) {
                503
            } else {
                200
            };
            async move { Ok::<_, Infallible>(status_response(status)) }
        });
        let good = tower::service_fn(|_req: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(status_response(200))
        });
        let config = OutlierConfig::builder()
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .ejection_jitter(0.0)
            .build()
            .unwrap();
        let balance = Balance::builder()
            .service_name("payments")
            .outlier(config)
            .build();
        // Weighted so that "bad" stays the cheaper pick through its failures.
        balance.insert_weighted("bad", tower::util::BoxCloneSyncService::new(bad), 1000.0);
        balance.insert("good", tower::util::BoxCloneSyncService::new(good));
        for _ in 0..5 {
            let _ = balance.clone().oneshot(get()).await.unwrap();
        }
        failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(1)).await;
        let res = balance.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
    });
    let ejected = recorder.events("endpoint ejected");
    assert_eq!(ejected.len(), 1, "{:?}", recorder.log().events);
    let fields = &ejected[0].fields;
    assert_eq!(fields["service"], "payments");
    assert_eq!(fields["endpoint"], "bad");
    assert_eq!(fields["reason"], "consecutive_failures");
    assert_eq!(fields["ejected_for_ms"], "1000", "1 s, no jitter");
    assert_eq!(fields["probe_failed"], "false");
    for message in ["endpoint on probation", "endpoint returned"] {
        let events = recorder.events(message);
        assert_eq!(events.len(), 1, "{message}");
        assert_eq!(events[0].fields["endpoint"], "bad");
        assert_eq!(events[0].fields["service"], "payments");
    }
}

#[test]
fn a_failed_probe_is_an_ejection_event_too() {
    let recorder = traced(|| async {
        let config = OutlierConfig::builder()
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .ejection_jitter(0.0)
            .build()
            .unwrap();
        let balance = Balance::builder().outlier(config).build();
        balance.insert_weighted("bad", scripted([503]), 1000.0);
        balance.insert("good", scripted([200]));
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(Budget::default()).max_retries(0))
            .service(balance);
        for _ in 0..5 {
            let _ = svc.clone().oneshot(get()).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = svc.clone().oneshot(get()).await.unwrap();
    });
    let ejected = recorder.events("endpoint ejected");
    assert_eq!(ejected.len(), 2, "{:?}", recorder.log().events);
    assert_eq!(ejected[1].fields["probe_failed"], "true");
    assert_eq!(
        ejected[1].fields["ejected_for_ms"], "2000",
        "the next step of the ladder"
    );
    assert_eq!(ejected[1].fields["endpoint"], "bad");
    assert_eq!(ejected[1].fields["service"], "default");
    // The probe was sent inside a request: the event belongs to its attempt's span.
    let attempt = recorder.spans(ATTEMPT_SPAN).last().cloned().unwrap();
    assert_eq!(ejected[1].span, Some(attempt.id));
    assert_eq!(recorder.events("endpoint on probation").len(), 1);
    assert!(recorder.events("endpoint returned").is_empty());
}
