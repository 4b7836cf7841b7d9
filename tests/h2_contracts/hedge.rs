//! Hedging over HTTP/2: the losing attempt is reset (RST_STREAM(CANCEL)) and charged nothing.

use super::*;
use http::Response;
use meshless::hedge::{HedgeConfig, HedgeDelay};

#[tokio::test]
async fn a_hedge_loser_is_reset_and_not_charged() {
    let (slow, slog) = serve_h2(
        None,
        script(|mut c: Call| async move {
            if let Some(r) = wait_reset_response(&mut c.respond).await {
                c.log.resets.lock().unwrap().push((c.index, r));
            }
        }),
    )
    .await;
    let (fast, _flog) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder().status(200).body(()).unwrap();
            let _ = c.respond.send_response(res, true);
        }),
    )
    .await;
    let mut hedge = HedgeConfig::default();
    hedge.delay = HedgeDelay::Fixed(Duration::from_millis(50));
    let client = Client::builder()
        .endpoints([slow.to_string(), fast.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(5))
        .hedge(hedge)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    for i in 0..10 {
        let r = client.get("http://svc/x").await;
        assert_eq!(
            r.as_ref().map(|r| r.status().as_u16()).map_err(err),
            Ok(200),
            "GET {i}"
        );
    }
    let calls = slog.calls();
    assert!(calls >= 1, "the slow endpoint got a first attempt");
    let s = slog.clone();
    assert!(
        eventually(move || s.resets().len() == calls).await,
        "{calls} attempts on the slow endpoint, resets {:?}",
        slog.resets()
    );
    let stats = client.stats();
    eprintln!("{stats:?}");
    let slow_stats = stats.endpoints.iter().find(|e| e.key == slow).unwrap();
    assert_eq!(slow_stats.failures, 0, "{slow_stats:?}");
    assert_eq!(slow_stats.in_flight, 0, "{slow_stats:?}");
    books(&client);
}
