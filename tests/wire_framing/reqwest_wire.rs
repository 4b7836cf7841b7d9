//! The same wire edges through `meshless::reqwest::Client`.
#![cfg(feature = "reqwest")]

use super::*;

fn rq() -> reqwest::Client {
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .unwrap()
}

/// Contract: a POST that may have reached the server is never sent again. The server answers
/// `413` with `connection: close` as soon as it has the head of a 256 KiB POST, then closes
/// without reading the body (the kernel resets the connection on the unread bytes). Through
/// reqwest the POST must be sent once, whatever the outcome, and end without a hang.
#[tokio::test]
async fn reqwest_an_early_413_to_a_large_post_is_sent_once() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"),
            Step::Drop,
        ]
    }))
    .await;
    let http = rq();
    let c = meshless::reqwest::Client::builder(http.clone())
        .endpoints([format!("http://{}", s.addr)])
        .backoff(meshless::backoff::Backoff::none())
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let body = vec![b'a'; 256 * 1024];
    let r = tokio::time::timeout(BOUND, c.send(http.post("http://svc/upload").body(body)))
        .await
        .expect("no hang");
    println!("{:?}", r.as_ref().map(|r| r.status()).map_err(|e| chain(e)));
    assert_eq!(s.hits(), 1, "the POST was sent again: {:?}", s.heads());
}

/// Contract: deadlines cover the response body. An endless chunked trickle read with
/// `bytes()` through reqwest ends near the 400 ms deadline with an error.
#[tokio::test]
async fn reqwest_an_endless_chunked_trickle_ends_at_the_deadline() {
    let mut steps = vec![w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")];
    for _ in 0..200 {
        steps.push(w(b"1\r\nx\r\n"));
        steps.push(Step::Sleep(50));
    }
    let s = serve(Arc::new(move |_, _, _| steps.clone())).await;
    let http = rq();
    let c = meshless::reqwest::Client::builder(http.clone())
        .endpoints([format!("http://{}", s.addr)])
        .deadline(Duration::from_millis(400))
        .build()
        .unwrap();
    let t = Instant::now();
    let r: Result<(), String> = tokio::time::timeout(BOUND, async {
        let res = c
            .send(http.get("http://svc/stream"))
            .await
            .map_err(|e| chain(&e))?;
        res.bytes().await.map(|_| ()).map_err(|e| chain(&e))
    })
    .await
    .expect("no hang");
    let took = t.elapsed();
    println!("{r:?} after {took:?}");
    assert!(r.is_err(), "an endless body read whole?");
    assert!(
        took < Duration::from_millis(1500),
        "deadline extended: {took:?}"
    );
}
