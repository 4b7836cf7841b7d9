use super::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

/// A body fed by a channel: each message is a data frame, the sender's drop ends it. The
/// deadline's stream tests use it too.
pub(in crate::deadline) struct Chan(pub(in crate::deadline) mpsc::Receiver<Bytes>);

impl Body for Chan {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// Records whether it was dropped while a meshless timer was expiring.
struct Witness(std::sync::Arc<std::sync::Mutex<Option<bool>>>);

impl Drop for Witness {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(expiry::expiring());
    }
}

fn chan() -> (mpsc::Sender<Bytes>, Chan) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Chan(rx))
}

fn kind(err: &BoxError) -> Option<Kind> {
    err.downcast_ref::<Error>().map(Error::kind)
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_ends_at_the_deadline_with_one_error() {
    let (tx, inner) = chan();
    let start = Instant::now();
    let mut body = DeadlineBody::new(inner, Some(start + Duration::from_millis(300)), None);
    tx.send(Bytes::from("hello")).await.unwrap();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "hello");
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(kind(&err), Some(Kind::DeadlineExceeded));
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
    assert!(body.frame().await.is_none(), "one error, then the end");
    assert!(body.is_end_stream());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_restarts_with_each_frame() {
    let (tx, inner) = chan();
    let start = Instant::now();
    let mut body = DeadlineBody::new(inner, None, Some(Duration::from_millis(100)));
    tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(80)).await;
            if tx.send(Bytes::from("x")).await.is_err() {
                return;
            }
        }
        // Then silence, with the sender kept alive.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(tx);
    });
    for _ in 0..5 {
        body.frame().await.unwrap().unwrap();
    }
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(kind(&err), Some(Kind::BodyIdleTimeout));
    assert_eq!(Instant::now() - start, Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn the_inner_body_is_dropped_as_expiring() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (_tx, inner) = chan();
    let witness = Witness(seen.clone());
    let inner = inner.map_frame(move |f| {
        let _ = &witness;
        f
    });
    let mut body = DeadlineBody::new(inner, Some(Instant::now() + Duration::from_millis(5)), None);
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(*seen.lock().unwrap(), Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_complete_body_needs_no_timer() {
    let mut body = DeadlineBody::new(
        http_body_util::Full::new(Bytes::from("done")),
        Some(Instant::now() + Duration::from_millis(1)),
        Some(Duration::ZERO),
    );
    assert_eq!(body.size_hint().exact(), Some(4));
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "done");
    assert!(
        body.sleep.is_none(),
        "nothing waited, so no timer was built"
    );
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

/// The data is there, but the deadline has passed: a body may not outlive its deadline by
/// being read late, so it ends with the deadline's error, still without a timer.
#[tokio::test(start_paused = true)]
async fn a_complete_body_read_after_its_deadline_ends_with_the_deadline() {
    let mut body = DeadlineBody::new(
        http_body_util::Full::new(Bytes::from("done")),
        Some(Instant::now()),
        None,
    );
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(kind(&err), Some(Kind::DeadlineExceeded));
    assert!(body.sleep.is_none());
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.frame().await.is_none(), "one error, then the end");
}

/// A body whose next frame is always ready never waits, so its timer never runs: each frame
/// must be checked against the deadline itself. The frames before the deadline pass, the
/// first one at the deadline does not, and the inner body is dropped as by its caller: the
/// frame had arrived, so the lateness is the reader's, not the endpoint's.
#[tokio::test(start_paused = true)]
async fn a_body_always_ready_still_ends_at_the_deadline() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (tx, inner) = chan();
    let witness = Witness(seen.clone());
    let inner = inner.map_frame(move |f| {
        let _ = &witness;
        f
    });
    let start = Instant::now();
    let mut body = DeadlineBody::new(inner, Some(start + Duration::from_millis(300)), None);
    let mut frames = 0;
    let mut end = None;
    // Ten frames, a second in all: far past the deadline, and never an endless loop.
    for _ in 0..10 {
        // A frame is waiting whenever the reader, slower than the sender, asks.
        tx.send(Bytes::from("x")).await.unwrap();
        match body.frame().await.unwrap() {
            Ok(_) => frames += 1,
            Err(err) => {
                end = Some(err);
                break;
            }
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    let end = end.expect("the body ends within a second of a 300 ms deadline");
    assert_eq!(kind(&end), Some(Kind::DeadlineExceeded));
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
    assert_eq!(
        frames, 3,
        "the frames at 0, 100 and 200 ms, not the one at 300 ms"
    );
    assert!(body.sleep.is_none(), "never waited: no timer");
    assert_eq!(
        *seen.lock().unwrap(),
        Some(false),
        "dropped as the caller's, not as expiring"
    );
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

/// A body of one ready item, a frame or an error, then the end.
struct Once(Option<Result<Frame<Bytes>, std::io::Error>>);

impl Body for Once {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take())
    }
}

/// Trailers are a frame like any other: late, they are not handed out. The end of the stream
/// and the inner body's own error are: they end the body all the same.
#[tokio::test(start_paused = true)]
async fn late_trailers_fail_but_a_late_end_or_error_passes() {
    let deadline = Instant::now() + Duration::from_millis(10);
    tokio::time::advance(Duration::from_millis(10)).await;

    let trailers = Once(Some(Ok(Frame::trailers(http::HeaderMap::new()))));
    let mut late = DeadlineBody::new(trailers, Some(deadline), None);
    let err = late.frame().await.unwrap().unwrap_err();
    assert_eq!(kind(&err), Some(Kind::DeadlineExceeded));

    let mut ended = DeadlineBody::new(Once(None), Some(deadline), None);
    assert!(ended.frame().await.is_none());

    let failing = Once(Some(Err(std::io::Error::other("reset"))));
    let mut failed = DeadlineBody::new(failing, Some(deadline), None);
    let err = failed.frame().await.unwrap().unwrap_err();
    assert_eq!(
        kind(&err),
        Some(Kind::Service),
        "the inner body's own error: {err}"
    );
    let source = std::error::Error::source(err.downcast_ref::<Error>().unwrap());
    assert_eq!(source.map(|s| s.to_string()).as_deref(), Some("reset"));
}
