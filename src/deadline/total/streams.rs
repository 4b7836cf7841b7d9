//! Streams under the deadline: the total deadline does not cut one that keeps producing, and
//! an idle limit (the request's deadline, unless one is set) ends one that stops.

use super::*;
use crate::deadline::body::tests::Chan;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::ServiceExt;

/// Through `layer`, a response of `content_type` whose body gets `frames` frames 300 ms apart
/// and then nothing, its sender kept for an hour. Returns the frames read, how the body ended
/// and when, counted from the request's start.
async fn stream_then_silence(
    layer: DeadlineLayer,
    content_type: &'static str,
    frames: usize,
) -> (usize, Option<Kind>, Duration) {
    let start = Instant::now();
    let svc = layer.layer(tower::service_fn(move |_: Request<()>| async move {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..frames {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if tx.send(Bytes::from("x")).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let mut res = http::Response::new(Chan(rx));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        Ok::<_, BoxError>(res)
    }));
    let mut body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(_) => read += 1,
            Err(err) => {
                let kind = err.downcast_ref::<Error>().map(Error::kind);
                return (read, kind, Instant::now() - start);
            }
        }
    }
    (read, None, Instant::now() - start)
}

const DEADLINE: Duration = Duration::from_millis(500);

/// A stream the server chose (`text/event-stream`) outlives the deadline while it produces,
/// and, with no idle limit set, ends one deadline's length after its last frame.
#[tokio::test(start_paused = true)]
async fn a_silent_stream_ends_after_the_deadline_s_length() {
    let (read, end, at) =
        stream_then_silence(DeadlineLayer::new(DEADLINE), "text/event-stream", 6).await;
    assert_eq!(read, 6, "every frame, 1.8 s into a 500 ms deadline");
    assert_eq!(end, Some(Kind::BodyIdleTimeout));
    assert_eq!(at, Duration::from_millis(1800) + DEADLINE);

    // Silent from the head on: it ends at the deadline, as any body would.
    let (read, end, at) =
        stream_then_silence(DeadlineLayer::new(DEADLINE), "text/event-stream", 0).await;
    assert_eq!((read, end, at), (0, Some(Kind::BodyIdleTimeout), DEADLINE));
}

/// A shorter caller's deadline is the request's: the stream's idle limit follows it.
#[tokio::test(start_paused = true)]
async fn the_default_idle_limit_is_the_request_s_own_deadline() {
    let layer = DeadlineLayer::new(Duration::from_secs(10));
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(RequestDeadline(Instant::now() + DEADLINE));
    let svc = layer.layer(tower::service_fn(|_: Request<()>| async {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let mut res = http::Response::new(Chan(rx));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        Ok::<_, BoxError>(res)
    }));
    let start = Instant::now();
    let mut body = svc.oneshot(req).await.unwrap().into_body();
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<Error>().map(Error::kind),
        Some(Kind::BodyIdleTimeout)
    );
    assert_eq!(Instant::now() - start, DEADLINE);
}

/// A configured idle limit replaces the default, `Duration::MAX` being none; an ordinary body
/// gets no idle limit by default (its deadline covers it).
#[tokio::test(start_paused = true)]
async fn a_configured_idle_limit_replaces_the_default() {
    let short = DeadlineLayer::new(DEADLINE).body_idle_timeout(Duration::from_millis(200));
    let (read, end, at) = stream_then_silence(short, "text/event-stream", 3).await;
    assert_eq!((read, end), (0, Some(Kind::BodyIdleTimeout)));
    assert_eq!(at, Duration::from_millis(200));

    let none = DeadlineLayer::new(DEADLINE).body_idle_timeout(Duration::MAX);
    let (read, end, at) = stream_then_silence(none, "text/event-stream", 3).await;
    assert_eq!((read, end), (3, None), "ends when the sender does");
    assert!(at > Duration::from_secs(3600), "{at:?}");

    let (read, end, at) =
        stream_then_silence(DeadlineLayer::new(DEADLINE), "application/json", 3).await;
    assert_eq!((read, end, at), (1, Some(Kind::DeadlineExceeded), DEADLINE));
}
