//! The metrics agree with the stats after cancellations at every stage (HTTP/1.1 and HTTP/2):
//! each request counted once as completed, attempts = requests + retries, endpoint counters
//! equal to the stats, gauges back to 0.

use crate::metrics_support as m;
use crate::support::*;

async fn server(h2: bool) -> (SocketAddr, Events) {
    if h2 {
        h2_server().await
    } else {
        h1_server().await
    }
}

fn named(addrs: &[SocketAddr], h2: bool, name: &str) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints(addrs.iter().map(|a| a.to_string()))
        .http2_prior_knowledge(h2)
        .service_name(name)
}

async fn check(client: &Client, snap: &m::Snapshotter, name: &str, out: &mut Vec<String>) {
    let (v, _rec) = m::settle(client, snap, name).await;
    for x in v {
        out.push(format!("[{name}] {x}"));
    }
}

async fn scenarios(h2: bool, snap: m::Snapshotter) {
    let mut out = Vec::new();
    let (a, mut ra) = server(h2).await;
    let (b, _rb) = server(h2).await;
    let mut seen = Vec::new();

    // Hedge race, both attempts held, cancelled.
    let c = named(&[a, b], h2, "hedge")
        .hedge(hedge_fixed(ms(30)))
        .build()
        .unwrap();
    let t = tokio::spawn(c.get("/hold"));
    tokio::time::sleep(ms(200)).await;
    t.abort();
    let _ = t.await;
    check(&c, &snap, "hedge", &mut out).await;

    // Body dropped midway.
    let c = named(&[a], h2, "drip")
        .limit(fixed_limit(1, Duration::ZERO))
        .build()
        .unwrap();
    let res = c.get("/drip").await.unwrap();
    let mut body = res.into_body();
    let _ = body.frame().await;
    drop(body);
    check(&c, &snap, "drip", &mut out).await;

    // Upload cancelled.
    let c = named(&[a], h2, "upload").build().unwrap();
    let (tx, brx) = mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"part")).unwrap();
    let t = tokio::spawn(c.request(Request::post("/read").body(ChanBody(brx)).unwrap()));
    tokio::time::sleep(ms(150)).await;
    t.abort();
    let _ = t.await;
    drop(tx);
    check(&c, &snap, "upload", &mut out).await;

    // Backoff.
    let c = named(&[a], h2, "backoff")
        .backoff(meshless::backoff::Backoff::decorrelated_jitter(ms(400), ms(400)).unwrap())
        .build()
        .unwrap();
    let t = tokio::spawn(c.get("/fail"));
    tokio::time::sleep(ms(150)).await;
    t.abort();
    let _ = t.await;
    check(&c, &snap, "backoff", &mut out).await;

    // Pushback quiet.
    let c = named(&[a], h2, "quiet")
        .deadline(Duration::from_secs(10))
        .backoff(meshless::backoff::Backoff::decorrelated_jitter(ms(1), ms(2)).unwrap())
        .build()
        .unwrap();
    let t = tokio::spawn(c.get("/push"));
    tokio::time::sleep(ms(300)).await;
    t.abort();
    let _ = t.await;
    check(&c, &snap, "quiet", &mut out).await;

    // A limit waiter cancelled, then its holder.
    let c = named(&[a], h2, "waiter")
        .limit(fixed_limit(1, Duration::from_secs(10)))
        .build()
        .unwrap();
    let h = tokio::spawn(c.get("/hold"));
    tokio::time::sleep(ms(100)).await;
    let w = tokio::spawn(c.get("/hold"));
    tokio::time::sleep(ms(100)).await;
    w.abort();
    let _ = w.await;
    h.abort();
    let _ = h.await;
    check(&c, &snap, "waiter", &mut out).await;

    // Caller's own deadline.
    let c = named(&[a], h2, "callerdl").max_retries(0).build().unwrap();
    let mut req = Request::get("/hold")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(meshless::deadline::RequestDeadline::after(ms(50)));
    let _ = c.request(req).await;
    check(&c, &snap, "callerdl", &mut out).await;

    drain(&mut ra, &mut seen, ms(10)).await;
    assert!(
        out.is_empty(),
        "h2={h2} violations:\n  {}",
        out.join("\n  ")
    );
}

#[test]
fn metrics_agree_after_cancellations_h1() {
    m::run(|snap| scenarios(false, snap));
}

#[test]
fn metrics_agree_after_cancellations_h2() {
    m::run(|snap| scenarios(true, snap));
}
