//! A black-holed endpoint (accepts, never answers) next to a healthy one, when every caller
//! passes a short deadline of its own: the caller's deadline no longer charges the endpoint,
//! so outlier ejection never sees it; only the latency lower bound (`outrun`) steers P2C.

use crate::callers_deadline::silent;
use crate::support::*;
use meshless::deadline::RequestDeadline;

async fn run(callers: bool) -> (usize, Vec<meshless::balance::EndpointStats<SocketAddr>>) {
    let (ok, _rx) = h1_server().await;
    let hole = silent().await;
    let client = builder(&[ok, hole], false)
        .deadline(if callers {
            Duration::from_secs(10)
        } else {
            ms(60)
        })
        .attempt_timeout(Duration::from_secs(5))
        .max_retries(0)
        .build()
        .unwrap();
    let mut failed = 0;
    for _ in 0..80 {
        let mut req = Request::get("/ok")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        if callers {
            req.extensions_mut().insert(RequestDeadline::after(ms(60)));
        }
        match timeout(BOUND, client.request(req)).await.expect("ends") {
            Ok(r) => {
                let _ = r.into_body().collect().await;
            }
            Err(_) => failed += 1,
        }
    }
    settle(&client).await;
    assert_books(&client);
    (failed, client.endpoints())
}

#[tokio::test]
async fn black_hole_is_avoided_with_the_clients_own_deadline() {
    let (failed, eps) = run(false).await;
    eprintln!("own deadline: {failed} of 80 failed\n{eps:#?}");
    assert!(failed <= 12, "{failed} of 80 failed: {eps:#?}");
}

#[tokio::test]
async fn black_hole_is_avoided_when_callers_pass_short_deadlines() {
    let (failed, eps) = run(true).await;
    eprintln!("callers' deadlines: {failed} of 80 failed\n{eps:#?}");
    assert!(failed <= 12, "{failed} of 80 failed: {eps:#?}");
}
