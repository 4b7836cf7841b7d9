//! Which requests may be sent again: the idempotency rules and markers.

use crate::support::*;

/// Sends `req` through `layer` to a service answering `first`, then 200; returns the attempts.
async fn attempts_with(layer: RetryLayer, req: Request<String>, first: u16) -> usize {
    let (inner, log) = mock::<String>(vec![reply(first), reply(200)]);
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    let expect = if log.count() == 1 { first } else { 200 };
    assert_eq!(res.status(), expect);
    log.count()
}

#[tokio::test(start_paused = true)]
async fn idempotency_post_502_is_not_retried() {
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 502).await, 1);
    // 504 and 408 follow the same rule.
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 504).await, 1);
    // The same 502 is retried for a GET.
    assert_eq!(attempts_with(quick(), get("/orders"), 502).await, 2);
}

#[tokio::test(start_paused = true)]
async fn idempotency_post_429_is_retried_but_a_plain_503_is_not() {
    // 429 proves the server did not act (RFC 6585); a plain 503 may come from a proxy or an
    // application that acted first.
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 429).await, 2);
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 503).await, 1);
    // A 503 that says when to come back is the server declining the request.
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "0"), reply(200)]);
    let res = send(&mut quick().layer(inner), post("/orders", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 2);
    // A plain 503 is retried for a GET.
    assert_eq!(attempts_with(quick(), get("/orders"), 503).await, 2);
    // 500 is retried for a GET (a passing fault, as Envoy's `5xx` has it), never for a POST;
    // 501 is never retried: a retry would only repeat it.
    assert_eq!(attempts_with(quick(), get("/orders"), 500).await, 2);
    assert_eq!(attempts_with(quick(), post("/orders", "x"), 500).await, 1);
    assert_eq!(attempts_with(quick(), get("/orders"), 501).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_post_marked_idempotent_is_retried_on_502() {
    let mut req = post("/charge", "charge-7");
    req.extensions_mut().insert(Idempotent(true));
    let (inner, log) = mock::<String>(vec![reply(502), reply(200)]);
    let res = send(&mut quick().layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body(), b"charge-7");
}

#[tokio::test(start_paused = true)]
async fn idempotency_all_true_retries_post_on_502() {
    let layer = quick().idempotency(Idempotency::default().all(true));
    assert_eq!(attempts_with(layer, post("/orders", "x"), 502).await, 2);
    // A per-request mark still wins over the client setting.
    let layer = quick().idempotency(Idempotency::default().all(true));
    let mut req = post("/orders", "x");
    req.extensions_mut().insert(Idempotent(false));
    assert_eq!(attempts_with(layer, req, 502).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_per_route_rule() {
    let rules = || {
        Idempotency::default()
            .route(|method, uri, _| method == Method::POST && uri.path() == "/search")
    };
    let layer = quick().idempotency(rules());
    assert_eq!(attempts_with(layer, post("/search", "q=1"), 502).await, 2);
    let layer = quick().idempotency(rules());
    assert_eq!(attempts_with(layer, post("/orders", "x"), 502).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_header_makes_post_retryable() {
    let keyed = || {
        let mut req = post("/orders", "x");
        req.headers_mut()
            .insert("idempotency-key", "8e03978e-40d5".parse().unwrap());
        req
    };
    let (inner, log) = mock::<String>(vec![reply(502), reply(200)]);
    let res = send(&mut quick().layer(inner), keyed()).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["idempotency-key"], "8e03978e-40d5");

    // Not when the client disabled the header rule.
    let layer = quick().idempotency(Idempotency::default().idempotency_key(false));
    assert_eq!(attempts_with(layer, keyed(), 502).await, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotency_get_marked_not_idempotent_is_not_retried() {
    let marked = || {
        let mut req = get("/items");
        req.extensions_mut().insert(Idempotent(false));
        req
    };
    assert_eq!(attempts_with(quick(), marked(), 502).await, 1);

    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let err = send(&mut quick().layer(inner), marked()).await.unwrap_err();
    assert_eq!(err.kind(), Kind::Service);
    assert_eq!(log.count(), 1);

    // `Idempotent(false)` trusts no answer from the server: not even 429.
    assert_eq!(attempts_with(quick(), marked(), 503).await, 1);
    assert_eq!(attempts_with(quick(), marked(), 429).await, 1);
    // Only an attempt that never left is repeated.
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionRefused), reply(200)]);
    let res = send(&mut quick().layer(inner), marked()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 2);
}
