//! The acceptance, on real sockets: a backend of the embedded fleet answers 503 to
//! everything for a while, then heals. The breaker (default settings, but no jitter so that
//! its breaks — 1 s, then 2 s — fall at known times) stands over a hyper-util client; the
//! test offers 200 requests a second and logs each one.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshless::testing::{Backend, Behavior, Fleet, Phase};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refused,
    Status(u16),
    Failed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_gets_probes_only_and_traffic_is_back_within_two_seconds() {
    // Healthy for 0.5 s, every request 503 for 2 s, then healthy: the breaker trips at about
    // 0.6 s, probes at 1.6 s (still failing) and at 3.6 s (healed).
    let fleet = Fleet::builder()
        .backend(Backend::phases([
            Phase::new(500 * MS, Behavior::healthy()),
            Phase::new(
                2 * S,
                Behavior::healthy().errors(1.0, http::StatusCode::SERVICE_UNAVAILABLE),
            ),
            Phase::open_ended(Behavior::healthy()),
        ]))
        .start()
        .await
        .unwrap();
    let uri: http::Uri = format!("http://{}/", fleet.addrs()[0]).parse().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let layer = BreakerLayer::from_config(&config()).unwrap().metrics(false);
    let svc = layer.layer(tower::service_fn(move |req| client.request(req)));

    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    // When the first refusal and the first success after it were sent: the offer goes on
    // until 2.5 s after the latter (however late a slow machine makes it), 15 s at most.
    let marks: Arc<Mutex<(Option<Duration>, Option<Duration>)>> = Arc::default();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(5 * MS);
    loop {
        let now = start.elapsed();
        let healed = marks.lock().unwrap().1;
        if now > 15 * S || healed.is_some_and(|h| now > h + 2500 * MS) {
            break;
        }
        tick.tick().await;
        let (svc, log, marks, uri) = (svc.clone(), log.clone(), marks.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let sent = start.elapsed();
            let req = Request::get(uri).body(Empty::new()).unwrap();
            let outcome = match svc.oneshot(req).await {
                Ok(res) => Outcome::Status(res.status().as_u16()),
                Err(err) if err.kind() == Kind::CircuitOpen => Outcome::Refused,
                Err(_) => Outcome::Failed,
            };
            let mut marks = marks.lock().unwrap();
            match (outcome, *marks) {
                (Outcome::Refused, (None, _)) => marks.0 = Some(sent),
                (Outcome::Status(200), (Some(opened), None)) if sent > opened => {
                    marks.1 = Some(sent)
                }
                _ => {}
            }
            log.lock().unwrap().push((sent, outcome));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut log = std::mem::take(&mut *log.lock().unwrap());
    log.sort_by_key(|(sent, _)| *sent);

    let opened = log
        .iter()
        .find(|(_, o)| *o == Outcome::Refused)
        .expect("the breaker opened")
        .0;
    let healed = log
        .iter()
        .find(|(sent, o)| *sent > opened && *o == Outcome::Status(200))
        .expect("a probe succeeded")
        .0;
    let during: Vec<_> = log
        .iter()
        .filter(|(sent, _)| (opened..healed).contains(sent))
        .collect();
    let sent_while_open = during
        .iter()
        .filter(|(_, o)| *o != Outcome::Refused)
        .count();
    assert!(during.len() > 200, "offered while open: {}", during.len());
    assert!(
        sent_while_open * 20 <= during.len(),
        "{sent_while_open} of {} requests reached the upstream while open",
        during.len()
    );
    let after: Vec<_> = log
        .iter()
        .filter(|(sent, _)| *sent >= healed + 2 * S)
        .collect();
    assert!(
        after.len() > 50,
        "opened at {opened:?}, first good probe at {healed:?}: {} offered after",
        after.len()
    );
    assert!(
        after.iter().all(|(_, o)| *o == Outcome::Status(200)),
        "full traffic within 2 s of the first good probe"
    );
    let full = log
        .iter()
        .rev()
        .find(|(_, o)| *o != Outcome::Status(200))
        .map_or(healed, |(sent, _)| *sent);
    eprintln!(
        "opened at {opened:?}; {sent_while_open} of {} requests sent while open; first good \
         probe at {healed:?}; full traffic from {full:?}",
        during.len()
    );
    // What the backend saw matches: every request the breaker let through, and no other.
    let let_through = log.iter().filter(|(_, o)| *o != Outcome::Refused).count() as u64;
    assert_eq!(fleet.backend(0).counters().requests(), let_through);
    fleet.shutdown().await;
}
