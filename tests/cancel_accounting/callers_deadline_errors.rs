//! A caller's own deadline (a `RequestDeadline` shorter than the client's).

use crate::support::*;
use meshless::backoff::Backoff;
use meshless::deadline::RequestDeadline;

/// Reads each request head and resets the connection (RST) at once: every attempt fails, fast,
/// on a fresh connection (never the stale shape).
async fn resetting() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if read_head(&mut s, &mut pending).await.is_some() {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    (addr, heads)
}

fn get_with(deadline: Option<Duration>) -> Request<http_body_util::Empty<Bytes>> {
    let mut req = Request::get("/x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    if let Some(d) = deadline {
        req.extensions_mut().insert(RequestDeadline::after(d));
    }
    req
}

/// An endpoint that resets every request, a retry that cannot fit before the caller's deadline
/// (backoff at least 1 s, the caller's deadline 300 ms): the retry layer returns the reset as
/// `DeadlineExceeded` at once, long before any deadline passed. That is the endpoint's
/// failure, not the caller's impatience: the throttle (which now reads the precise marker,
/// `is_callers_deadline`) counts it; the breaker, which still matches on "the request carries
/// a caller's deadline and the error's kind is DeadlineExceeded", ignores it, so the circuit
/// never opens on an upstream that fails every request, as long as callers pass deadlines.
async fn breaker_on_resets(
    callers: bool,
) -> (
    meshless::breaker::BreakerStats,
    Vec<(Kind, String, Duration)>,
    usize,
) {
    let (addr, heads) = resetting().await;
    let mut b = meshless::breaker::BreakerConfig::default();
    b.consecutive_failures = 3;
    b.break_duration = Duration::from_secs(5);
    b.max_break_duration = Duration::from_secs(5);
    // The control has the same 300 ms as the client's own deadline.
    let own = if callers {
        Duration::from_secs(10)
    } else {
        ms(300)
    };
    let client = builder(&[addr], false)
        .deadline(own)
        .max_retries(2)
        .backoff(
            Backoff::decorrelated_jitter(Duration::from_secs(1), Duration::from_secs(2)).unwrap(),
        )
        .breaker(b)
        .build()
        .unwrap();
    let mut errors = Vec::new();
    for _ in 0..6 {
        let start = tokio::time::Instant::now();
        let r = timeout(BOUND, client.request(get_with(callers.then_some(ms(300)))))
            .await
            .expect("ends");
        let e = r.expect_err("every request is reset");
        errors.push((e.kind(), e.to_string(), start.elapsed()));
    }
    settle(&client).await;
    (
        client.breaker().stats(),
        errors,
        heads.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn breaker_control_without_callers_deadline_opens() {
    let (st, errors, heads) = breaker_on_resets(false).await;
    eprintln!("control: {st:?}\n{errors:#?}\nheads {heads}");
    assert!(
        st.trips >= 1,
        "control: the breaker opens on resets: {st:?} {errors:?}"
    );
}

#[tokio::test]
async fn breaker_opens_on_resets_when_callers_pass_deadlines() {
    let (st, errors, heads) = breaker_on_resets(true).await;
    eprintln!("callers: {st:?}\n{errors:#?}\nheads {heads}");
    // Every request ended long before the caller's deadline: nothing expired.
    assert!(errors.iter().all(|(_, _, t)| *t < ms(250)), "{errors:?}");
    assert!(
        st.trips >= 1 && heads <= 4,
        "an upstream that resets every request never opened the breaker because the callers \
         passed deadlines (heads sent: {heads}; errors {errors:?}): {st:?}"
    );
}

/// The error a caller gets when its own deadline passes: same kind, same timeout-ness, same
/// response (504, `x-meshless-error: deadline-exceeded`) and the same Display as the client's
/// own deadline.
#[tokio::test]
async fn callers_deadline_error_looks_like_a_deadline() {
    let (addr, _rx) = h1_server().await;
    let client = builder(&[addr], false)
        .deadline(Duration::from_millis(150))
        // Longer than either deadline: the deadline, not a derived attempt timeout, ends it.
        .attempt_timeout(Duration::from_secs(5))
        .max_retries(0)
        .build()
        .unwrap();
    let hold = |d: Option<Duration>| {
        let mut req = Request::get("/hold")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        if let Some(d) = d {
            req.extensions_mut().insert(RequestDeadline::after(d));
        }
        req
    };
    let own = timeout(BOUND, client.request(hold(None)))
        .await
        .unwrap()
        .unwrap_err();
    let callers = timeout(BOUND, client.request(hold(Some(ms(50)))))
        .await
        .unwrap()
        .unwrap_err();
    for e in [&own, &callers] {
        assert_eq!(e.kind(), Kind::DeadlineExceeded, "{e:?}");
        assert!(e.is_timeout(), "{e:?}");
        let r: http::Response<()> = e.to_response();
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()["x-meshless-error"], "deadline-exceeded");
    }
    eprintln!(
        "own: {own} / {:?}; callers: {callers} / {:?}",
        std::error::Error::source(&own).map(|s| s.to_string()),
        std::error::Error::source(&callers).map(|s| s.to_string())
    );
    assert_eq!(own.to_string(), callers.to_string());
    settle(&client).await;
    assert_books(&client);
}

/// A caller's deadline, then the request retried after a fast failure: the first attempt's
/// failure is charged, the second attempt (cut by the caller's deadline) is not, and every
/// book balances.
#[tokio::test]
async fn callers_deadline_after_a_retry_charges_only_the_real_failure() {
    // First connection: reset; later ones: silent.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            let reset = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let _ = read_head(&mut s, &mut pending).await;
                if reset {
                    let _ = s.set_zero_linger();
                    drop(s);
                } else {
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    let client = builder(&[addr], false)
        .deadline(Duration::from_secs(10))
        .max_retries(2)
        .backoff(Backoff::none())
        .build()
        .unwrap();
    let e = timeout(BOUND, client.request(get_with(Some(ms(200)))))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), Kind::DeadlineExceeded, "{e:?}");
    settle(&client).await;
    assert_books(&client);
    let eps = client.endpoints();
    let (req, fail, canc) = eps.iter().fold((0, 0, 0), |a, e| {
        (a.0 + e.requests, a.1 + e.failures, a.2 + e.cancelled)
    });
    assert_eq!((req, fail, canc), (1, 1, 1), "{eps:#?}");
}

/// The same event, a caller's own deadline passing, counted in the client's books two ways:
/// before the head it is a failure; after the head (mid-body) it is now a cancellation
/// (`DeadlineBody` ends it through `while_cut`, which the retry layer counts as cancelled).
/// The caller gets `DeadlineExceeded` both times. Before this commit both were failures.
#[tokio::test]
async fn callers_deadline_counts_the_same_before_and_after_the_head() {
    let (addr, _rx) = h1_server().await;
    let client = builder(&[addr], false)
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(5))
        .max_retries(0)
        .build()
        .unwrap();
    let req = |path: &str| {
        let mut req = Request::get(path)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut().insert(RequestDeadline::after(ms(150)));
        req
    };
    // Before the head.
    let before = client.stats();
    let e = timeout(BOUND, client.request(req("/hold")))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), Kind::DeadlineExceeded);
    settle(&client).await;
    let head = client.stats();
    // After the head: a chunk, then silence.
    let res = timeout(BOUND, client.request(req("/drip")))
        .await
        .unwrap()
        .unwrap();
    let e = timeout(BOUND, res.into_body().collect())
        .await
        .unwrap()
        .unwrap_err();
    let e = e.downcast::<meshless::Error>().expect("typed");
    assert_eq!(e.kind(), Kind::DeadlineExceeded);
    settle(&client).await;
    let body = client.stats();
    let d = |a: &meshless::http::ClientStats, b: &meshless::http::ClientStats| {
        (b.failures - a.failures, b.cancelled - a.cancelled)
    };
    assert_eq!(
        d(&before, &head),
        d(&head, &body),
        "(failures, cancelled) for the caller's deadline before the head vs mid-body"
    );
}
