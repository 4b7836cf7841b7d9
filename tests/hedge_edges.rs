//! Hedging contracts through `http::Client` over real sockets.

mod common;
mod edges_support;

use edges_support::*;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use std::sync::Mutex;
use tokio::sync::mpsc;

fn hedge_fixed(delay: Duration) -> HedgeConfig {
    let mut h = HedgeConfig::default();
    h.enabled = true;
    h.delay = HedgeDelay::Fixed(delay);
    h.max_extra_load = 1.0;
    h.min_per_second = 1000.0;
    h
}

/// A server that never answers; tells `tx` of each head; records how long each connection
/// lived after its head, in `lives`.
async fn hanging_timed(
    tx: mpsc::UnboundedSender<String>,
    lives: Arc<Mutex<Vec<Duration>>>,
) -> SocketAddr {
    common::serve_sockets(move |socket, head| {
        let _ = tx.send(head);
        let lives = lives.clone();
        async move {
            let t = std::time::Instant::now();
            hold(socket).await;
            lives.lock().unwrap().push(t.elapsed());
        }
    })
    .await
}

/// With two hanging endpoints, a 3 s deadline and 2 retries, the derived attempt timeout is
/// 1 s: without hedging the first attempt is cut at 1 s and retried. With hedging, the
/// hedge (sent at 30 ms) should be an attempt of the same generation, bounded the same way.
#[test]
fn a_hedge_is_bounded_by_the_derived_attempt_timeout_like_its_first_attempt() {
    run(|snap| async move {
        let (tx, _rx) = mpsc::unbounded_channel();
        let lives = Arc::new(Mutex::new(Vec::new()));
        let a = hanging_timed(tx.clone(), lives.clone()).await;
        let b = hanging_timed(tx, lives.clone()).await;
        let client = client_for(&[a, b], "hedge_cut")
            .deadline(Duration::from_secs(3))
            .hedge(hedge_fixed(ms(30)))
            .build()
            .unwrap();
        let t = std::time::Instant::now();
        let err = client.get("/").await.unwrap_err();
        let took = t.elapsed();
        let c = client.clone();
        wait_until(Duration::from_secs(2), || lives.lock().unwrap().len() >= 2).await;
        let _ = c;
        let lives = lives.lock().unwrap().clone();
        let s = client.stats();
        let h = client.hedge_stats();
        let v = settle_and_check(&client, &snap, "hedge_cut").await;
        eprintln!(
            "error {err:?} after {took:?}; connection lives {lives:?}; hedges {}; retries {}; attempt_timeouts {}",
            h.hedges(),
            s.retries,
            s.attempt_timeouts
        );
        let mut v = v;
        let long = lives.iter().filter(|l| **l > ms(2000)).count();
        if long > 0 && s.retries == 0 {
            v.push(format!(
                "an attempt ran to the deadline ({lives:?}) and no retry was made (attempt_timeouts {})",
                s.attempt_timeouts
            ));
        }
        report(&v, &client, &snap);
    });
}

/// The same race: the first attempt is cut by the attempt timeout at 1 s (its connection
/// closes then, its endpoint is charged a timeout), so `attempt_timeouts` (README: "attempts
/// cut by the per-attempt timeout") counts it.
#[test]
fn an_attempt_cut_inside_a_hedge_race_is_counted_as_an_attempt_timeout() {
    run(|snap| async move {
        let (tx, _rx) = mpsc::unbounded_channel();
        let lives = Arc::new(Mutex::new(Vec::new()));
        let a = hanging_timed(tx.clone(), lives.clone()).await;
        let b = hanging_timed(tx, lives.clone()).await;
        let client = client_for(&[a, b], "hedge_cut2")
            .deadline(Duration::from_secs(3))
            .hedge(hedge_fixed(ms(30)))
            .build()
            .unwrap();
        let _ = client.get("/").await.unwrap_err();
        wait_until(Duration::from_secs(2), || lives.lock().unwrap().len() >= 2).await;
        let lives = lives.lock().unwrap().clone();
        let (mut v, rec) = settle(&client, &snap, "hedge_cut2").await;
        let cut = lives.iter().filter(|l| **l < ms(2000)).count() as u64;
        let s = client.stats();
        let m = rec.count(
            "meshless_attempt_timeouts_total",
            &[("service", "hedge_cut2")],
        );
        if cut == 0 || s.attempt_timeouts != cut || m != cut {
            v.push(format!(
                "{cut} attempt(s) cut at the attempt timeout ({lives:?}); stats.attempt_timeouts {}, metric {m}",
                s.attempt_timeouts
            ));
        }
        report(&v, &client, &snap);
    });
}
