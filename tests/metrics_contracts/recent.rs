//! `ClientStats::recent`: the last minute's success rate and percentiles.

use crate::common;
use crate::edges_support::*;
use crate::support::*;

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `RecentStats`: "Percentiles are the middle of a quarter-octave bucket: within 12.5% of the
/// true value", latencies "from the call to the answer". 60 fast requests and 40 that answer
/// after 120 ms: p50, p90 and p99 within 15% of the exact percentiles of the same latencies
/// as `meshless_request_duration_seconds` recorded them.
#[test]
fn recent_percentiles_match_the_recorded_latencies() {
    run(|snap| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let addr = common::serve_heads(move |_| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                if i % 5 < 2 {
                    tokio::time::sleep(ms(120)).await;
                }
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
            }
        })
        .await;
        let client = client_for(&[addr], "recent").build().unwrap();
        for _ in 0..100 {
            let r = client.get("/").await.unwrap();
            r.into_body().collect().await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        let mut d = samples(
            &rec,
            "meshless_request_duration_seconds",
            &[("service", "recent")],
        );
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let r = client.stats().recent;
        let mut v = Vec::new();
        if r.requests() != 100 || d.len() != 100 {
            v.push(format!(
                "recent requests {}, samples {}",
                r.requests(),
                d.len()
            ));
        }
        for (name, q, got) in [
            ("p50", 0.5, r.p50),
            ("p90", 0.9, r.p90),
            ("p99", 0.99, r.p99),
        ] {
            let want = nearest_rank(&d, q);
            let got = got.map(|g| g.as_secs_f64());
            match got {
                Some(g) if (g - want).abs() <= 0.15 * want + 0.0005 => {}
                _ => v.push(format!("{name}: recent {got:?} s, exact {want:.6} s")),
            }
        }
        check(&v, &client, &rec);
    });
}

/// `RecentStats`: "the logical requests that finished in the last minute (between 50 and 60
/// seconds)". 61 s later (the clock paused and advanced), the window is empty; lifetime counts
/// stay.
#[test]
fn recent_forgets_after_a_minute() {
    run(|snap| async move {
        let addr = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let client = client_for(&[addr], "recent_win").build().unwrap();
        for _ in 0..5 {
            let r = client.get("/").await.unwrap();
            r.into_body().collect().await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(61)).await;
        let s = client.stats();
        let mut v = Vec::new();
        if s.recent.requests() != 0 || s.success_rate().is_some() {
            v.push(format!("61 s later, recent = {:?}", s.recent));
        }
        if s.requests != 5 {
            v.push(format!("lifetime requests {}", s.requests));
        }
        tokio::time::resume();
        check(&v, &client, &rec);
    });
}
