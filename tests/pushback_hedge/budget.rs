//! A retry the balancer holds back for pushback spends one token when it is sent, however long the
//! hold, and a budget of one token pays for it.

use super::*;

/// The retry budget bounds retries. A retry the balancer refuses unsent (every endpoint quiet
/// for longer than the attempt may wait) has its token refunded — but the retry layer then
/// sends the same retry after the quiet, with no token. With a budget of about one token,
/// several requests each get a retry.
#[tokio::test]
async fn a_retry_sent_after_waiting_out_pushback_still_spends_the_budget() {
    budget_under_pushback(ms(100)).await;
}

/// Control: the same, with an attempt timeout long enough for the balancer to wait out the
/// pushback itself: the token is spent and the budget bounds the retries.
#[tokio::test]
async fn control_a_retry_the_balancer_holds_through_pushback_spends_the_budget() {
    budget_under_pushback(ms(1000)).await;
}

async fn budget_under_pushback(attempt_timeout: Duration) {
    let firsts: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let f = firsts.clone();
    let servers = Servers::start(1, move |_, _, seen| {
        if f.lock().unwrap().insert(seen.path.clone()) {
            Act::Reply(grpc_unavailable(Some("300")))
        } else {
            Act::Reply(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
                    .to_vec(),
            )
        }
    })
    .await;
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_second(0.1)
        .ratio(0.0)
        .build()
        .unwrap();
    let before = budget.balance();
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .attempt_timeout(attempt_timeout)
        .budget(budget.clone())
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for n in 0..4 {
        let started = Instant::now();
        match client.request(grpc_request(&format!("/svc.S/M{n}"))).await {
            Ok(r) => {
                outcomes.push(format!(
                    "grpc-status {:?} in {:?}",
                    r.headers().get("grpc-status"),
                    started.elapsed()
                ));
                let _ = r.into_body().collect().await;
            }
            Err(e) => outcomes.push(format!("{e} in {:?}", started.elapsed())),
        }
    }
    let s = client.retry_stats();
    eprintln!(
        "attempt timeout {attempt_timeout:?}: {outcomes:?}\nsends {}, retries {}, budget_exhausted {}, balance {before} -> {}",
        servers.count(),
        s.retries(),
        s.budget_exhausted(),
        budget.balance()
    );
    books_balance(&client);
    assert!(
        s.retries() <= before.floor() as u64 + 1,
        "a budget of {before} tokens allowed {} retries (sends {}), balance now {}",
        s.retries(),
        servers.count(),
        budget.balance()
    );
}

/// A budget holding exactly one retry, then two. The first attempt answers 503 Retry-After: 1;
/// the retry (paid with a token) is refused unsent by the balancer (the only endpoint is quiet
/// past the attempt's timeout), and handed back its token. Waiting out the quiet and sending
/// it costs one token, which the budget has (the refused one came back): the retry is sent
/// and answered, and exactly one token is gone.
#[tokio::test]
async fn a_retry_held_back_by_pushback_is_paid_from_the_one_token_there_is() {
    for tokens in [1.0, 2.0] {
        let servers = Servers::start(1, |i, _, _| {
            if i == 0 {
                Act::Reply(status_with("503 Service Unavailable", "retry-after: 1\r\n"))
            } else {
                Act::Reply(ok())
            }
        })
        .await;
        // `min_per_second` over the 10 s TTL is the reserve: 0.1/s holds one token.
        let budget = Budget::builder()
            .ttl(Duration::from_secs(10))
            .min_per_second(tokens / 10.0)
            .ratio(0.0)
            .build()
            .unwrap();
        let before = budget.balance();
        assert!((before - tokens).abs() < 1e-9, "balance {before}");
        let client = Client::builder()
            .endpoints(servers.endpoints())
            .deadline(ms(4000))
            .attempt_timeout(ms(200))
            .budget(budget.clone())
            .build()
            .unwrap();
        let res = client.get("/q").await;
        let out = match &res {
            Ok(r) => format!("status {}", r.status()),
            Err(e) => chain(e),
        };
        eprintln!(
            "{tokens} tokens: {out}; sends {}; balance {before} -> {}",
            servers.count(),
            budget.balance()
        );
        assert_eq!(
            res.as_ref().map(|r| r.status().as_u16()).ok(),
            Some(200),
            "{tokens} tokens, one retry sent: {out}"
        );
        if let Ok(r) = res {
            let _ = r.into_body().collect().await;
        }
        assert!(
            (budget.balance() - (before - 1.0)).abs() < 1e-9,
            "{before} -> {}",
            budget.balance()
        );
        assert_eq!(servers.count(), 2);
        books_balance(&client);
    }
}
