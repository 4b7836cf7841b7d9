//! The attempt timeout a client derives from its deadline (deadline ÷ (retries + 1)) on a
//! request the retry layer will not send again once it may have reached the server: a POST.
//! Cut, no retry could follow; it runs to its deadline instead.

mod common;

use meshless::http::Client;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_within_its_deadline_is_not_cut_by_the_derived_attempt_timeout() {
    let addr = common::serve_heads(|_| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
    })
    .await;
    // 500 ms shared by three attempts: 166 ms each, under the server's 200 ms.
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_millis(500))
        .metrics(false)
        .build()
        .unwrap();
    for i in 0..5 {
        let res = client.post("/pay", "money").await;
        assert_eq!(
            res.map(|r| r.status().as_u16()).map_err(|e| e.kind()),
            Ok(200),
            "POST {i}"
        );
    }
    assert_eq!(client.stats().attempt_timeouts, 0);
}
