//! Hedged requests: one request counted once, however many attempts raced.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use meshless::backoff::Backoff;
use meshless::hedge::{HedgeConfig, HedgeDelay};

fn hedge_fixed(delay: Duration) -> HedgeConfig {
    let mut h = HedgeConfig::default();
    h.enabled = true;
    h.delay = HedgeDelay::Fixed(delay);
    h.max_extra_load = 1.0;
    h.min_per_second = 1000.0;
    h
}

/// Every attempt, hedges included, is charged to exactly one endpoint (finished or cancelled):
/// the endpoints' `requests + cancelled` = `requests + retries + stale_resends + hedges`; the
/// metric families agree with the stats; one duration sample per request.
#[test]
fn hedged_attempts_are_each_charged_to_one_endpoint() {
    run(|snap| async move {
        let hang = common::serve_sockets(|socket, _| hold(socket)).await;
        let fast = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let client = client_for(&[hang, fast], "hedge_att")
            .deadline(Duration::from_secs(3))
            .hedge(hedge_fixed(ms(30)))
            .build()
            .unwrap();
        for _ in 0..20 {
            let res = client.get("/").await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "hedge_att");
        let mut v = crate::edges_support::violations(&client, &rec, "hedge_att");
        let s = client.stats();
        let h = client.hedge_stats();
        let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
        let sent = s.requests + s.retries + s.stale_resends + h.hedges();
        if at_endpoints != sent {
            v.push(format!(
                "endpoints finished+cancelled {at_endpoints} != requests+retries+stale+hedges {sent}"
            ));
        }
        let mh = rec.count("meshless_hedges_total", &[sv]);
        if mh != h.hedges() {
            v.push(format!("hedges_total {mh} != hedge_stats {}", h.hedges()));
        }
        let d = samples(&rec, "meshless_request_duration_seconds", &[sv]).len();
        if d != 20 || outcomes(&client) != (20, 20, 0, 0) {
            v.push(format!(
                "duration samples {d}, outcomes {:?}; want 20, (20,20,0,0)",
                outcomes(&client)
            ));
        }
        check(&v, &client, &rec);
    });
}

/// README: "`meshless_attempt_timeouts_total` … attempts cut by the per-attempt timeout, hedges
/// and the first attempts they raced included"; `ClientStats::attempt_timeouts` likewise. Both
/// endpoints hang: the first attempt and its hedge are both cut; stats and metric agree (2 per
/// request), the request fails once.
#[test]
fn a_race_cut_by_attempt_timeouts_counts_both_attempts_once() {
    run(|snap| async move {
        let a = common::serve_sockets(|socket, _| hold(socket)).await;
        let b = common::serve_sockets(|socket, _| hold(socket)).await;
        let client = client_for(&[a, b], "hedge_to")
            .deadline(Duration::from_secs(3))
            .attempt_timeout(ms(200))
            .max_retries(0)
            .backoff(Backoff::none())
            .hedge(hedge_fixed(ms(30)))
            .build()
            .unwrap();
        let _ = client.get("/").await.unwrap_err();
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "hedge_to");
        let mut v = crate::edges_support::violations(&client, &rec, "hedge_to");
        let s = client.stats();
        let h = client.hedge_stats();
        let m = rec.count("meshless_attempt_timeouts_total", &[sv]);
        let attempts = 1 + h.hedges();
        if m != s.attempt_timeouts || s.attempt_timeouts != attempts {
            v.push(format!(
                "attempt_timeouts_total {m}, stats {}, attempts sent {attempts}",
                s.attempt_timeouts
            ));
        }
        want_outcomes(&client, (1, 0, 1, 0), &mut v);
        let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
        if at_endpoints != attempts {
            v.push(format!(
                "endpoints finished+cancelled {at_endpoints} != attempts {attempts}"
            ));
        }
        check(&v, &client, &rec);
    });
}

/// A caller that drops a hedged request while its first attempt and its hedge are both at
/// their endpoints: one cancelled request, both attempts cancelled at their endpoints (no
/// failure), metrics = stats.
#[test]
fn a_hedged_request_dropped_by_its_caller_is_one_cancellation() {
    use tokio::sync::mpsc;
    run(|snap| async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let tx2 = tx.clone();
        let a = common::serve_sockets(move |socket, _| {
            let _ = tx.send(());
            hold(socket)
        })
        .await;
        let b = common::serve_sockets(move |socket, _| {
            let _ = tx2.send(());
            hold(socket)
        })
        .await;
        let client = client_for(&[a, b], "hedge_drop")
            .deadline(Duration::from_secs(5))
            .attempt_timeout(Duration::from_secs(5))
            .hedge(hedge_fixed(ms(30)))
            .build()
            .unwrap();
        let c = client.clone();
        let task = tokio::spawn(async move { c.get("/").await.map(drop) });
        rx.recv().await.unwrap();
        rx.recv().await.unwrap();
        task.abort();
        let _ = task.await;
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "hedge_drop");
        let s = client.stats();
        want_outcomes(&client, (1, 0, 0, 1), &mut v);
        let cancelled: u64 = s.endpoints.iter().map(|e| e.cancelled).sum();
        let failed: u64 = s.endpoints.iter().map(|e| e.failures + e.requests).sum();
        if (cancelled, failed, client.hedge_stats().hedges()) != (2, 0, 1) {
            v.push(format!(
                "endpoint cancelled {cancelled}, finished {failed}, hedges {}; want 2, 0, 1",
                client.hedge_stats().hedges()
            ));
        }
        check(&v, &client, &rec);
    });
}

/// The first attempt of a hedged request wins with a 200 whose body the server then cuts:
/// one failure (not a success), duration under `failure`; the hedge cancelled.
#[test]
fn a_hedge_race_won_by_a_body_that_is_cut_is_one_failure() {
    run(|snap| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let _ = n;
        let slow_cut = || {
            common::serve_sockets(move |socket, _| async move {
                tokio::time::sleep(ms(60)).await;
                cut_body(socket).await;
            })
        };
        let a = slow_cut().await;
        let b = slow_cut().await;
        let client = client_for(&[a, b], "hedge_cut")
            .deadline(Duration::from_secs(5))
            .hedge(hedge_fixed(ms(20)))
            .build()
            .unwrap();
        let r = client.get("/").await.unwrap();
        assert!(r.into_body().collect().await.is_err());
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "hedge_cut");
        let mut v = crate::edges_support::violations(&client, &rec, "hedge_cut");
        want_outcomes(&client, (1, 0, 1, 0), &mut v);
        let f = samples(
            &rec,
            "meshless_request_duration_seconds",
            &[sv, ("class", "failure")],
        )
        .len();
        let all = samples(&rec, "meshless_request_duration_seconds", &[sv]).len();
        if (f, all) != (1, 1) {
            v.push(format!("duration samples failure {f}, all {all}"));
        }
        check(&v, &client, &rec);
    });
}
