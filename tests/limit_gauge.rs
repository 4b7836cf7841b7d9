//! A contract found by review: `meshless_concurrency_in_flight` is set to a value computed
//! before the store (`grab` sets `current + 1`, `put_back` sets `before - 1`), so racing
//! threads can publish their values out of order and leave the gauge non-zero while nothing
//! is in flight. Two threads take and give back a permit at the same time, many rounds; after
//! each round nothing is in flight and the gauge must read 0.

use http::{Request, Response};
use meshless::limit::LimitLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::convert::Infallible;
use std::sync::{Arc, Barrier};
use tower::{Layer, Service, service_fn};

#[test]
fn in_flight_gauge_returns_to_zero_under_racing_threads() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let layer = LimitLayer::fixed(1000).service_name("gauge-race");
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    }));
    let gauge = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| {
                (key.key().name() == meshless::observe::CONCURRENCY_IN_FLIGHT).then(
                    || match value {
                        DebugValue::Gauge(g) => g.into_inner(),
                        _ => f64::NAN,
                    },
                )
            })
    };
    const THREADS: usize = 2;
    const ROUNDS: usize = 20_000;
    let start = Arc::new(Barrier::new(THREADS + 1));
    let end = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (mut svc, start, end) = (svc.clone(), start.clone(), end.clone());
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    start.wait();
                    for _ in 0..3 {
                        let future = svc.call(Request::new(()));
                        drop(future); // cancelled before its first poll: the permit goes back
                    }
                    end.wait();
                }
            })
        })
        .collect();
    let mut drifted = 0;
    let mut example = None;
    for _ in 0..ROUNDS {
        start.wait();
        end.wait();
        assert_eq!(handle.in_flight(), 0);
        let g = gauge();
        if g != Some(0.0) {
            drifted += 1;
            example.get_or_insert(g);
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        drifted, 0,
        "{drifted} of {ROUNDS} rounds ended with in_flight 0 but the gauge at {example:?}"
    );
}
