//! A tracing event on every transition: a warning when the circuit opens, information when it
//! probes and closes.

use crate::support::*;
use std::collections::BTreeMap;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event: its level, message and other fields.
type Recorded = (Level, String, BTreeMap<String, String>);

/// Records every event.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Recorded>>>);

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl Subscriber for Events {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Visitor(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let level = *event.metadata().level();
        self.0.lock().unwrap().push((level, message, fields));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn every_transition_is_traced() {
    let events = Events::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(events.clone(), || {
        runtime.block_on(async {
            let upstream = Upstream::new();
            let layer = BreakerLayer::from_config(&config())
                .unwrap()
                .metrics(false)
                .service_name("traced");
            let handle = layer.handle();
            let svc = layer.layer(upstream.service());
            trip(&svc, &upstream, &handle).await;
            upstream.status(200);
            tokio::time::advance(S).await;
            calls(&svc, 3).await;
            tokio::time::advance(S).await;
            calls(&svc, 1).await;
            assert_eq!(handle.state(), BreakerState::Closed);
            handle.isolate();
        })
    });
    let log = events.0.lock().unwrap();
    let seen: Vec<_> = log
        .iter()
        .filter(|(_, message, _)| message.starts_with("circuit breaker"))
        .map(|(level, message, fields)| {
            assert_eq!(fields["service"], "traced", "{message}");
            (*level, message.as_str(), fields.get("reason").cloned())
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                Level::WARN,
                "circuit breaker opened",
                Some("failure_rate".to_string())
            ),
            (Level::INFO, "circuit breaker half-open", None),
            (Level::INFO, "circuit breaker closed", None),
            (Level::WARN, "circuit breaker isolated", None),
        ]
    );
}
