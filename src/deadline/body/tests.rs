use super::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

/// A body fed by a channel: each message is a data frame, the sender's drop ends it.
struct Chan(mpsc::Receiver<Bytes>);

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
    let body = DeadlineBody::new(
        http_body_util::Full::new(Bytes::from("done")),
        Some(Instant::now()),
        Some(Duration::ZERO),
    );
    assert_eq!(body.size_hint().exact(), Some(4));
    // Even with the deadline already passed: the data is there, no waiting is involved.
    assert_eq!(body.collect().await.unwrap().to_bytes(), "done");
}

#[tokio::test(start_paused = true)]
async fn no_limits_and_huge_limits_never_fire_or_panic() {
    let (tx, inner) = chan();
    let mut body = DeadlineBody::new(inner, None, Some(Duration::MAX));
    let pending = tokio::time::timeout(Duration::from_secs(3600), body.frame()).await;
    assert!(pending.is_err(), "still waiting an hour later");
    drop(tx);
    assert!(body.frame().await.is_none());
}
