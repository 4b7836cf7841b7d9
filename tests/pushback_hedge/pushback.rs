//! Hostile pushback values, what waiting it out may and may not do, and the attempts an error
//! counts.

use super::*;

/// Hostile `Retry-After` values on a 503: a valid one (0, 10^12, past or far-future dates) makes
/// an unmarked POST go on to the other endpoint; a malformed one (negative, bad date, words,
/// fractions) is a plain 503 and the POST is sent once. (The "quiet afterwards" check cannot tell
/// quiet from P2C's failure penalty: endpoint 0 got no GET in every case.)
#[tokio::test]
async fn hostile_retry_after_values_keep_or_ignore_the_endpoint_as_documented() {
    // Endpoint 0 always answers 503 with the hostile value; endpoint 1 answers 200.
    // For each value: send an unmarked POST and a GET; count what endpoint 0 gets afterwards.
    let cases: &[(&str, bool, bool)] = &[
        // (Retry-After value, is pushback (POST retried + endpoint quiet), quiet for long)
        ("0", true, false),
        ("-5", false, false),
        ("1000000000000", true, true),
        ("Sun, 06 Nov 1994 08:49:37 GMT", true, false),
        ("Fri, 31 Dec 9999 23:59:59 GMT", true, true),
        ("Sun, 32 Nov 1994 08:51:37 GMT", false, false),
        ("soon", false, false),
        ("1.5", false, false),
    ];
    for &(value, pushback, long) in cases {
        let v = value.to_string();
        let servers = Servers::start(2, move |_, port, _| {
            if port == 0 {
                Act::Reply(status_with(
                    "503 Service Unavailable",
                    &format!("retry-after: {v}\r\n"),
                ))
            } else {
                Act::Reply(ok())
            }
        })
        .await;
        // Only endpoint 0 first: endpoint 1 is added by a second client sharing nothing, so
        // use one client over both and look at what endpoint 0 got.
        let client = Client::builder()
            .endpoints(servers.endpoints())
            .deadline(ms(2000))
            .backoff(meshless::backoff::Backoff::none())
            .build()
            .unwrap();
        // Drive POSTs until one hits endpoint 0.
        let mut hit = false;
        for _ in 0..40 {
            let before0 = servers.on(0);
            let before1 = servers.on(1);
            let res = client.post("/pay", "x").await;
            let got0 = servers.on(0) - before0;
            let got1 = servers.on(1) - before1;
            if got0 == 0 {
                continue;
            }
            hit = true;
            match &res {
                Ok(r) => eprintln!("{value:?}: POST status {} (0:{got0}, 1:{got1})", r.status()),
                Err(e) => eprintln!("{value:?}: POST error {e} (0:{got0}, 1:{got1})"),
            }
            if pushback {
                assert_eq!(
                    got1, 1,
                    "{value:?}: an unmarked POST after 503+Retry-After goes on"
                );
            } else {
                assert_eq!(
                    got1, 0,
                    "{value:?}: a POST after a plain 503 is not sent again"
                );
            }
            if let Ok(r) = res {
                let _ = r.into_body().collect().await;
            }
            break;
        }
        assert!(hit, "{value:?}: endpoint 0 never picked");
        // Now 30 GETs: with a long pushback endpoint 0 gets none of them.
        let before0 = servers.on(0);
        for _ in 0..30 {
            if let Ok(r) = client.get("/q").await {
                let _ = r.into_body().collect().await;
            }
        }
        let got0 = servers.on(0) - before0;
        eprintln!("{value:?}: endpoint 0 got {got0} of 30 GETs afterwards");
        if long {
            assert_eq!(got0, 0, "{value:?}: a long pushback keeps endpoint 0 quiet");
        }
        books_balance(&client);
    }
}

/// Multiple Retry-After headers: the first counts. `Retry-After: 1000000000000` then `0`:
/// endpoint 0 stays quiet for max_pushback.
#[tokio::test]
async fn repeated_retry_after_headers_first_one_counts() {
    let servers = Servers::start(2, move |_, port, _| {
        if port == 0 {
            Act::Reply(status_with(
                "503 Service Unavailable",
                "retry-after: 1000000000000\r\nretry-after: 0\r\n",
            ))
        } else {
            Act::Reply(ok())
        }
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        match client.get("/q").await {
            Ok(r) => {
                statuses.push(r.status().as_u16());
                let _ = r.into_body().collect().await;
            }
            Err(e) => panic!("error {e}"),
        }
    }
    eprintln!(
        "endpoint 0: {}, endpoint 1: {}",
        servers.on(0),
        servers.on(1)
    );
    assert!(servers.on(0) <= 1, "endpoint 0 got {}", servers.on(0));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    books_balance(&client);
}

/// gRPC pushback: huge keeps the endpoint quiet; non-numeric / negative is "do not retry" and
/// neither retries nor parks the endpoint.
#[tokio::test]
async fn grpc_pushback_hostile_values() {
    for (value, retried, quiet) in [
        ("99999999999999999999", true, true),
        ("-1", false, false),
        ("abc", false, false),
        ("-99999999999", false, false),
    ] {
        let v = value.to_string();
        let servers = Servers::start(2, move |_, port, _| {
            if port == 0 {
                Act::Reply(grpc_unavailable(Some(&v)))
            } else {
                Act::Reply(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
                        .to_vec(),
                )
            }
        })
        .await;
        let client = Client::builder()
            .endpoints(servers.endpoints())
            .deadline(ms(2000))
            .build()
            .unwrap();
        let mut hit = false;
        for _ in 0..40 {
            let b0 = servers.on(0);
            let b1 = servers.on(1);
            let res = client.request(grpc_request("/svc.S/M")).await;
            let (g0, g1) = (servers.on(0) - b0, servers.on(1) - b1);
            if let Ok(r) = res {
                let _ = r.into_body().collect().await;
            }
            if g0 == 0 {
                continue;
            }
            hit = true;
            eprintln!("{value:?}: 0:{g0} 1:{g1}");
            assert_eq!(g0, 1, "{value:?}: endpoint 0 got the request {g0} times");
            assert_eq!(g1 == 1, retried, "{value:?}: retried elsewhere? {g1}");
            break;
        }
        assert!(hit);
        let b0 = servers.on(0);
        for _ in 0..30 {
            if let Ok(r) = client.request(grpc_request("/svc.S/M")).await {
                let _ = r.into_body().collect().await;
            }
        }
        let g0 = servers.on(0) - b0;
        eprintln!("{value:?}: endpoint 0 got {g0} of 30 afterwards");
        if quiet {
            assert_eq!(g0, 0, "{value:?}");
        }
        books_balance(&client);
    }
}

/// A pushback that fits the deadline is waited out (single endpoint), and the attempt after
/// it is still bounded by the original deadline: it stalls, the request ends at the deadline.
#[tokio::test]
async fn waiting_out_a_pushback_never_extends_the_deadline() {
    let servers = Servers::start(1, |i, _, _| {
        if i == 0 {
            Act::Reply(status_with("503 Service Unavailable", "retry-after: 1\r\n"))
        } else {
            Act::After(ms(5000), ok())
        }
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(1500))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.get("/q").await;
    let took = started.elapsed();
    eprintln!(
        "took {took:?}, sends {}, outcome {:?}",
        servers.count(),
        res.as_ref().map(|r| r.status())
    );
    assert!(res.is_err());
    assert!(took < ms(1500) + ms(250), "took {took:?}");
    books_balance(&client);
}

/// A caller that drops its request while it waits out every endpoint's pushback: counted as
/// cancelled, charged to no endpoint, and no token is kept.
#[tokio::test]
async fn dropping_a_request_waiting_out_pushback_is_cancelled_and_refunds() {
    let servers = Servers::start(1, |i, _, _| {
        if i == 0 {
            Act::Reply(status_with("503 Service Unavailable", "retry-after: 2\r\n"))
        } else {
            Act::Reply(ok())
        }
    })
    .await;
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_second(0.3)
        .ratio(0.0)
        .build()
        .unwrap();
    let before = budget.balance();
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(5000))
        .attempt_timeout(ms(200))
        .budget(budget.clone())
        .build()
        .unwrap();
    let r = tokio::time::timeout(ms(500), client.get("/q")).await;
    assert!(r.is_err(), "still waiting at 500 ms");
    tokio::time::sleep(ms(50)).await;
    let s = client.retry_stats();
    let e = &client.endpoints()[0];
    eprintln!(
        "requests {} successes {} failures {} cancelled {} retries {}; balance {before} -> {}; endpoint {e:?}",
        s.requests(),
        s.successes(),
        s.failures(),
        s.cancelled(),
        s.retries(),
        budget.balance()
    );
    books_balance(&client);
    assert_eq!(s.cancelled(), 1);
    assert_eq!(servers.count(), 1);
    assert!(
        (budget.balance() - before).abs() < 1e-9,
        "{before} -> {}",
        budget.balance()
    );
}

/// Every endpoint answers 429 with a long Retry-After: the request fails at once with
/// `EndpointsPushingBack`. The error's attempt count should be the attempts sent.
#[tokio::test]
async fn the_error_counts_only_attempts_that_were_sent() {
    let servers = Servers::start(2, |_, _, _| {
        Act::Reply(status_with("429 Too Many Requests", "retry-after: 100\r\n"))
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(1000))
        .build()
        .unwrap();
    let e = client
        .get("/q")
        .await
        .expect_err("every endpoint pushing back");
    let s = client.retry_stats();
    eprintln!(
        "error: {e} ({:?}), attempts {}; sends {}; stats attempts {} retries {}",
        e.kind(),
        e.attempts(),
        servers.count(),
        s.attempts(),
        s.retries()
    );
    books_balance(&client);
    assert_eq!(s.attempts() as usize, servers.count());
    assert_eq!(
        e.attempts() as usize,
        servers.count(),
        "the error says {} attempts, {} were sent",
        e.attempts(),
        servers.count()
    );
}

/// Retries off: the first request is answered 429 Retry-After: 100 (the endpoint goes quiet);
/// the second is refused unsent by the balancer. Nothing of it was sent: its error should
/// count 0 attempts, as the same refusal does with retries on.
#[tokio::test]
async fn retries_off_a_request_refused_unsent_counts_no_attempt() {
    let servers = Servers::start(1, |_, _, _| {
        Act::Reply(status_with("429 Too Many Requests", "retry-after: 100\r\n"))
    })
    .await;
    // Shorter than the second before a quiet endpoint takes its first probe.
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(900))
        .max_retries(0)
        .build()
        .unwrap();
    let first = client.get("/q").await;
    eprintln!(
        "first: {:?}",
        first.as_ref().map(|r| r.status()).map_err(chain)
    );
    if let Ok(r) = first {
        let _ = r.into_body().collect().await;
    }
    let e = client.get("/q").await.expect_err("the endpoint is quiet");
    eprintln!("second: {}; sends {}", chain(&e), servers.count());
    assert_eq!(servers.count(), 1);
    assert_eq!(
        e.attempts(),
        0,
        "nothing was sent, the error says {}",
        chain(&e)
    );
}

/// Control, retries on (default): the same second request.
#[tokio::test]
async fn control_retries_on_a_request_refused_unsent_counts_no_attempt() {
    let servers = Servers::start(1, |_, _, _| {
        Act::Reply(status_with("429 Too Many Requests", "retry-after: 100\r\n"))
    })
    .await;
    // Shorter than the second before a quiet endpoint takes its first probe.
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(900))
        .build()
        .unwrap();
    let first = client.get("/q").await;
    eprintln!(
        "first: {:?}",
        first.as_ref().map(|r| r.status()).map_err(chain)
    );
    if let Ok(r) = first {
        let _ = r.into_body().collect().await;
    }
    let e = client.get("/q").await.expect_err("the endpoint is quiet");
    eprintln!("second: {}; sends {}", chain(&e), servers.count());
    assert_eq!(e.attempts(), 0, "{}", chain(&e));
}
