//! A request that waits inside the client for an HTTP/2 stream (the server's
//! SETTINGS_MAX_CONCURRENT_STREAMS reached) and whose caller gives up (drops it, or its deadline
//! passes) must never reach the server whole afterwards: the caller was told it failed (a
//! `DeadlineExceeded` with no attempt, or nothing at all), and may send it again itself.
//! hyper still opens the parked request's stream once one frees; its body is then cut by a
//! reset, so the server never has the whole request to act on.

use super::*;
use meshless::route::Route;
use tokio::sync::Notify;

#[derive(Default, Debug)]
struct Seen {
    /// (stream, END_STREAM on the request, time since start) of each request HEADERS or its
    /// completion, and resets, in order: ("H" | "D-end" | "RST", stream).
    events: Vec<(&'static str, u32)>,
}

/// SETTINGS_MAX_CONCURRENT_STREAMS = 1. Stream 1 answered at once (warm-up); stream 3 held
/// until `release`, then answered; every later complete stream answered at once.
async fn one_stream_server(release: Arc<Notify>) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    let (addr, _log) = serve_raw(raw(move |conn, tcp, _log| {
        let seen = s2.clone();
        let release = release.clone();
        async move {
            let mut tcp = tcp;
            if conn != 0 || !accept_preface(&mut tcp, common::frames::ONE_STREAM).await {
                return;
            }
            let (mut rd, wr) = tcp.into_split();
            let wr = Arc::new(tokio::sync::Mutex::new(wr));
            loop {
                let mut head = [0u8; 9];
                if tokio::io::AsyncReadExt::read_exact(&mut rd, &mut head)
                    .await
                    .is_err()
                {
                    return;
                }
                let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
                let (kind, flags) = (head[3], head[4]);
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut p = vec![0u8; len];
                if tokio::io::AsyncReadExt::read_exact(&mut rd, &mut p)
                    .await
                    .is_err()
                {
                    return;
                }
                let mut out = Vec::new();
                match kind {
                    SETTINGS if flags & 1 == 0 => out = common::frames::frame(SETTINGS, 1, 0, &[]),
                    PING if flags & 1 == 0 => out = common::frames::frame(PING, 1, 0, &p),
                    HEADERS => seen.lock().unwrap().events.push(("H", stream)),
                    RST => seen.lock().unwrap().events.push(("RST", stream)),
                    WINDOW_UPDATE => {}
                    _ => {}
                }
                let complete = (kind == HEADERS || kind == DATA) && flags & 1 != 0;
                if complete {
                    seen.lock().unwrap().events.push(("END", stream));
                    if stream == 3 {
                        let release = release.clone();
                        let wr = wr.clone();
                        tokio::spawn(async move {
                            release.notified().await;
                            let f = common::frames::frame(HEADERS, 5, 3, &[0x88]);
                            let _ = tokio::io::AsyncWriteExt::write_all(&mut *wr.lock().await, &f)
                                .await;
                        });
                    } else {
                        out.extend(common::frames::frame(HEADERS, 5, stream, &[0x88]));
                    }
                }
                if !out.is_empty() {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut *wr.lock().await, &out).await;
                }
            }
        }
    }))
    .await;
    (addr, seen)
}

/// The streams on which `what` happened ("H": opened, "END": the request was whole).
fn streams_with(seen: &Arc<Mutex<Seen>>, what: &str) -> Vec<u32> {
    seen.lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.0 == what)
        .map(|e| e.1)
        .collect()
}

async fn run(drop_by_caller: bool) {
    let release = Arc::new(Notify::new());
    let (addr, seen) = one_stream_server(release.clone()).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(5))
        .route(Route::path_prefix("/queued").timeout(Duration::from_millis(300)))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    // Warm-up: the connection is up and the client knows the limit of one stream.
    assert_eq!(
        client.get("http://svc/warm").await.expect("warm").status(),
        200
    );
    let hold = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post("http://svc/hold", "hold")
                .await
                .map(|r| r.status())
        }
    });
    assert!(
        eventually(|| streams_with(&seen, "H").contains(&3)).await,
        "hold sent"
    );
    // The POST to /queued waits for the one stream, and its caller gives up.
    let queued = if drop_by_caller {
        match tokio::time::timeout(
            Duration::from_millis(300),
            client.post("http://svc/dropped", "pay"),
        )
        .await
        {
            Ok(r) => format!(
                "answered?! {:?}",
                r.map(|r| r.status()).map_err(|e| err(&e))
            ),
            Err(_) => "dropped by its caller".to_owned(),
        }
    } else {
        match tokio::time::timeout(
            Duration::from_secs(3),
            client.post("http://svc/queued", "pay"),
        )
        .await
        .expect("ends at its 300 ms deadline")
        {
            Ok(r) => format!("answered?! {}", r.status()),
            Err(e) => err(&e),
        }
    };
    let before = streams_with(&seen, "END");
    // Now the held stream ends, and the connection goes on.
    release.notify_one();
    assert_eq!(hold.await.unwrap().expect("hold answered").as_u16(), 200);
    for _ in 0..3 {
        assert_eq!(
            client
                .get("http://svc/after")
                .await
                .expect("after")
                .status(),
            200
        );
    }
    let events = seen.lock().unwrap().events.clone();
    eprintln!("queued: {queued}\nstreams before release {before:?}\nevents {events:?}");
    // Whole requests: 1 warm, 3 hold, then the three /after GETs. A sixth is the abandoned
    // POST reaching the server whole after its caller was told it failed.
    let whole = streams_with(&seen, "END");
    assert_eq!(
        whole.len(),
        5,
        "the abandoned POST reached the server whole after its caller gave up ({queued}): events {events:?}"
    );
    // Its stream, if hyper opened it, was reset.
    let opened = streams_with(&seen, "H");
    let resets = streams_with(&seen, "RST");
    for stream in opened.iter().filter(|s| !whole.contains(s)) {
        assert!(
            resets.contains(stream),
            "stream {stream} left open: {events:?}"
        );
    }
}

/// The caller drops the queued POST's future.
#[tokio::test]
async fn a_post_dropped_while_waiting_for_a_stream_never_reaches_the_server() {
    run(true).await;
}

/// The queued POST's own deadline (300 ms, a route's) passes while it waits.
#[tokio::test]
async fn a_post_whose_deadline_passed_while_waiting_for_a_stream_never_reaches_the_server() {
    run(false).await;
}
