//! Retries on the wire: byte-identical but for the attempt number, replayed bodies, sent once.

use super::*;

#[tokio::test]
async fn a_get_retried_after_a_reset_is_byte_identical_but_for_the_attempt_number() {
    let w = wire(Arc::new(|n, _| match n {
        0 => Act::Reset,
        _ => Act::Answer(OK.to_vec()),
    }))
    .await;
    let c = client(w.addr);
    let req = http::Request::get("http://svc.example/r?x=1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-a", "1")
        .header("x-a", "2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = c.request(req).await.expect("retried");
    assert_eq!(res.status(), 200);
    body_of(res).await;
    let reqs = w.requests();
    assert_eq!(reqs.len(), 2, "{:?}", w.heads());
    let first = String::from_utf8_lossy(&reqs[0].1).into_owned();
    let second = String::from_utf8_lossy(&reqs[1].1).into_owned();
    assert_eq!(
        header_value(&first, "x-meshless-attempt").as_deref(),
        Some("1"),
        "{first}"
    );
    assert_eq!(
        header_value(&second, "x-meshless-attempt").as_deref(),
        Some("2"),
        "{second}"
    );
    assert_eq!(
        first.replace("x-meshless-attempt: 1", "x-meshless-attempt: N"),
        second.replace("x-meshless-attempt: 2", "x-meshless-attempt: N"),
    );
    assert_ne!(reqs[0].0, reqs[1].0, "a new connection");
    books(&c);
}

#[tokio::test]
async fn a_post_with_a_body_reset_after_it_was_read_is_sent_once() {
    let w = wire(Arc::new(|_, _| Act::Reset)).await;
    let c = client(w.addr);
    let err = c.post("/orders", "order-1").await.expect_err("reset");
    assert_eq!(w.requests().len(), 1, "{:?}", w.heads());
    let first = w.heads().remove(0);
    assert!(
        header_value(&first, "x-meshless-attempt").is_none(),
        "{first}"
    );
    let _ = err;
    books(&c);
}
