//! The replay body's tests: buffering, replay, caps, trailers, errors.

use super::*;
use http::HeaderValue;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use proptest::prelude::*;
use std::collections::VecDeque;
use tokio::sync::mpsc;

type TestFrame = Result<Frame<Bytes>, BoxError>;

/// A streaming body fed through a channel, with an optional size hint.
struct ChannelBody {
    rx: mpsc::Receiver<TestFrame>,
    hint: SizeHint,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TestFrame>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn channel(hint: SizeHint) -> (mpsc::Sender<TestFrame>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody { rx, hint })
}

/// A body yielding scripted frames, returning `Pending` (and waking
/// itself) before each one.
struct ScriptBody {
    frames: VecDeque<TestFrame>,
    hint: SizeHint,
    pending: bool,
}

impl ScriptBody {
    fn new(frames: Vec<TestFrame>, hint: SizeHint) -> Self {
        ScriptBody {
            frames: frames.into(),
            hint,
            pending: true,
        }
    }
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TestFrame>> {
        if self.pending {
            self.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending = true;
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn trailers() -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("grpc-status", HeaderValue::from_static("0"));
    map
}

fn data(bytes: &'static [u8]) -> TestFrame {
    Ok(Frame::data(Bytes::from_static(bytes)))
}

/// Everything a body yielded, frame by frame.
#[derive(Debug, PartialEq)]
struct Output {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Output {
    fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

async fn read_all<B>(mut body: B) -> Result<Output, BoxError>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut out = Output {
        chunks: Vec::new(),
        trailers: None,
    };
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(chunk) => out.chunks.push(chunk),
            Err(frame) => out.trailers = frame.into_trailers().ok(),
        }
    }
    assert!(body.is_end_stream());
    Ok(out)
}

/// Reads a body to its end without a runtime (the test bodies wake
/// themselves, so polling in a loop makes progress).
fn read_sync<B>(body: &mut B) -> Result<Output, BoxError>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Output {
        chunks: Vec::new(),
        trailers: None,
    };
    let mut spins = 0;
    loop {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Pending => {
                spins += 1;
                assert!(spins < 1_000_000, "body never became ready");
            }
            Poll::Ready(None) => return Ok(out),
            Poll::Ready(Some(frame)) => match frame?.into_data() {
                Ok(chunk) => out.chunks.push(chunk),
                Err(frame) => out.trailers = frame.into_trailers().ok(),
            },
        }
    }
}

fn is_superseded(err: &BoxError) -> bool {
    err.downcast_ref::<ReplayError>()
        .is_some_and(ReplayError::is_superseded)
}

#[test]
fn is_send_sync_unpin_static() {
    fn check<T: Send + Sync + Unpin + 'static>() {}
    check::<ReplayBody<ChannelBody>>();
    check::<ReplayBody<Full<Bytes>>>();
    check::<ReplayError>();
}

#[test]
fn a_handle_keeps_a_request_within_256_bytes() {
    // Above 256 bytes a move of the request (or of a future holding it) is a slower
    // `memcpy` loop: the handle must stay at 32 bytes whatever it wraps.
    assert!(std::mem::size_of::<ReplayBody<Empty<Bytes>>>() <= 32);
    assert!(std::mem::size_of::<ReplayBody<Full<Bytes>>>() <= 32);
    assert!(std::mem::size_of::<http::Request<ReplayBody<Empty<Bytes>>>>() <= 256);
}

#[tokio::test]
async fn empty_body_fast_path() {
    let body = ReplayBody::new(Empty::<Bytes>::new(), DEFAULT_REPLAY_CAP);
    assert!(body.shared.is_none(), "no shared state for an empty body");
    assert!(body.is_end_stream());
    assert!(!body.is_capped());
    assert_eq!(body.size_hint().exact(), Some(0));

    let clone = body.try_clone().expect("empty body is replayable");
    assert!(clone.shared.is_none());
    assert!(clone.is_end_stream());

    let out = read_all(body).await.unwrap();
    assert!(out.chunks.is_empty() && out.trailers.is_none());
    let out = read_all(clone).await.unwrap();
    assert!(out.chunks.is_empty() && out.trailers.is_none());

    // `Full` of nothing is empty too.
    let full = ReplayBody::new(Full::new(Bytes::new()), 0);
    assert!(full.shared.is_none());
    assert!(full.try_clone().is_some());
}

#[tokio::test]
async fn full_read_then_replayed_twice_with_trailers() {
    let (tx, inner) = channel(SizeHint::new());
    let feeder = tokio::spawn(async move {
        for chunk in [&b"hello "[..], b"streaming ", b"world"] {
            tx.send(Ok(Frame::data(Bytes::from_static(chunk))))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        tx.send(Ok(Frame::trailers(trailers()))).await.unwrap();
    });

    let template = ReplayBody::new(inner, DEFAULT_REPLAY_CAP);
    let first = template.try_clone().unwrap();
    let out1 = read_all(first).await.unwrap();
    feeder.await.unwrap();
    assert_eq!(out1.bytes(), b"hello streaming world");
    assert_eq!(out1.chunks.len(), 3);
    assert_eq!(out1.trailers, Some(trailers()));

    for _ in 0..2 {
        let retry = template.try_clone().unwrap();
        assert!(!retry.is_end_stream());
        let out = read_all(retry).await.unwrap();
        assert_eq!(out, out1, "replay must be frame-for-frame identical");
    }
    assert!(!template.is_capped());
}

#[tokio::test]
async fn partial_read_then_replay_continues_from_inner() {
    let (tx, inner) = channel(SizeHint::new());
    let mut first = ReplayBody::new(inner, DEFAULT_REPLAY_CAP);
    let template = first.try_clone().unwrap();
    let mut first_attempt = template.try_clone().unwrap();
    // `first` is superseded; the template is never polled.
    assert!(is_superseded(&first.frame().await.unwrap().unwrap_err()));

    tx.send(data(b"abc")).await.unwrap();
    tx.send(data(b"def")).await.unwrap();
    let f = first_attempt.frame().await.unwrap().unwrap();
    assert_eq!(f.into_data().unwrap(), "abc");
    let f = first_attempt.frame().await.unwrap().unwrap();
    assert_eq!(f.into_data().unwrap(), "def");
    // Attempt 1 is abandoned mid-stream (e.g. the connection failed).
    drop(first_attempt);

    let second = template.try_clone().unwrap();
    let reader = tokio::spawn(read_all(second));
    tx.send(data(b"ghi")).await.unwrap();
    tokio::task::yield_now().await;
    tx.send(data(b"jkl")).await.unwrap();
    drop(tx);
    let out = reader.await.unwrap().unwrap();
    assert_eq!(out.bytes(), b"abcdefghijkl");
    assert_eq!(out.trailers, None);

    // And a third attempt replays everything from the buffer alone.
    let third = template.try_clone().unwrap();
    assert_eq!(read_all(third).await.unwrap(), out);
}

#[tokio::test]
async fn over_cap_body_streams_intact_but_is_not_replayable() {
    let (tx, inner) = channel(SizeHint::new());
    let body = ReplayBody::new(inner, 10);
    let template = body.try_clone().unwrap();
    let reader = tokio::spawn(read_all(template.try_clone().unwrap()));
    for chunk in [&b"0123"[..], b"4567", b"89ab", b"cdef", b""] {
        tx.send(Ok(Frame::data(Bytes::from_static(chunk))))
            .await
            .unwrap();
    }
    tx.send(Ok(Frame::trailers(trailers()))).await.unwrap();
    drop(tx);
    let out = reader.await.unwrap().unwrap();
    assert_eq!(out.bytes(), b"0123456789abcdef");
    assert_eq!(out.trailers, Some(trailers()));

    assert!(template.is_capped());
    assert!(template.try_clone().is_none());
    let state = lock(&template.shared.as_ref().unwrap().state);
    assert!(
        state.chunks.is_empty() && state.buffered == 0,
        "buffer freed"
    );
}

#[tokio::test]
async fn cap_is_inclusive() {
    let body = ReplayBody::new(ScriptBody::new(vec![data(b"12345")], SizeHint::new()), 5);
    let retry = body.try_clone().unwrap();
    assert_eq!(read_all(retry).await.unwrap().bytes(), b"12345");
    let again = body.try_clone().expect("exactly cap bytes is replayable");
    assert_eq!(read_all(again).await.unwrap().bytes(), b"12345");
}

#[tokio::test]
async fn size_hint_over_cap_is_not_replayable_up_front() {
    let (tx, inner) = channel(SizeHint::with_exact(100));
    let body = ReplayBody::new(inner, 99);
    assert!(body.is_capped());
    assert!(body.try_clone().is_none());
    assert_eq!(body.size_hint().exact(), Some(100));

    // The one attempt still gets the whole body, and nothing is buffered.
    let reader = tokio::spawn(read_all(body));
    tx.send(Ok(Frame::data(Bytes::from(vec![7u8; 100]))))
        .await
        .unwrap();
    drop(tx);
    let out = reader.await.unwrap().unwrap();
    assert_eq!(out.bytes(), vec![7u8; 100]);

    // A lower bound over the cap is enough.
    let mut hint = SizeHint::new();
    hint.set_lower(11);
    let (_tx, inner) = channel(hint);
    assert!(ReplayBody::new(inner, 10).try_clone().is_none());

    // Exactly the cap is fine.
    let full = ReplayBody::new(Full::new(Bytes::from_static(b"0123456789")), 10);
    assert!(!full.is_capped());
    assert!(full.try_clone().is_some());
}

#[tokio::test]
async fn size_hint_is_the_original_for_fresh_clones() {
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"0123456789")), 64);
    assert_eq!(body.size_hint().exact(), Some(10));
    let mut first = body.try_clone().unwrap();
    assert_eq!(first.size_hint().exact(), Some(10));
    first.frame().await.unwrap().unwrap();
    assert_eq!(first.size_hint().exact(), Some(0));
    let second = body.try_clone().unwrap();
    assert_eq!(second.size_hint().exact(), Some(10));
}

#[tokio::test]
async fn superseded_clone_errors() {
    let (tx, inner) = channel(SizeHint::new());
    tx.send(data(b"one")).await.unwrap();
    tx.send(data(b"two")).await.unwrap();
    drop(tx);

    let mut a = ReplayBody::new(inner, DEFAULT_REPLAY_CAP);
    let f = a.frame().await.unwrap().unwrap();
    assert_eq!(f.into_data().unwrap(), "one");

    let mut b = a.try_clone().unwrap();
    assert!(!a.is_end_stream());
    let err = a.frame().await.unwrap().unwrap_err();
    assert!(is_superseded(&err));
    assert!(err.to_string().contains("superseded"));

    // `b` replays "one" and reads "two" from the inner body.
    let f = b.frame().await.unwrap().unwrap();
    assert_eq!(f.into_data().unwrap(), "one");

    // A clone made from the superseded `a` supersedes `b`.
    let c = a.try_clone().unwrap();
    assert!(is_superseded(&b.frame().await.unwrap().unwrap_err()));
    assert_eq!(read_all(c).await.unwrap().bytes(), b"onetwo");
}

#[tokio::test]
async fn inner_error_is_returned_and_poisons_replay() {
    let frames = vec![data(b"ok"), Err("boom".into())];
    let body = ReplayBody::new(ScriptBody::new(frames, SizeHint::new()), 64);
    let mut first = body.try_clone().unwrap();
    let f = first.frame().await.unwrap().unwrap();
    assert_eq!(f.into_data().unwrap(), "ok");
    let err = first.frame().await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert!(err.downcast_ref::<ReplayError>().is_none());
    assert!(first.frame().await.is_none());
    assert!(first.is_end_stream());

    assert!(body.try_clone().is_none());
    assert!(!body.is_capped());
}

#[tokio::test]
async fn is_end_stream_tracks_replay() {
    // A body that says it ended before yielding `None`.
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"x")), 8);
    let mut first = body.try_clone().unwrap();
    assert!(!first.is_end_stream());
    first.frame().await.unwrap().unwrap();
    assert!(first.is_end_stream());

    let mut second = body.try_clone().unwrap();
    assert!(!second.is_end_stream());
    second.frame().await.unwrap().unwrap();
    assert!(second.is_end_stream());
    assert!(second.frame().await.is_none());

    // Trailers still to replay keep a clone open.
    let frames = vec![Ok(Frame::trailers(trailers()))];
    let body = ReplayBody::new(ScriptBody::new(frames, SizeHint::new()), 8);
    let out = read_all(body.try_clone().unwrap()).await.unwrap();
    assert_eq!(out.trailers, Some(trailers()));
    let clone = body.try_clone().unwrap();
    assert!(!clone.is_end_stream());
    let out = read_all(clone).await.unwrap();
    assert_eq!(out.trailers, Some(trailers()));
}

#[tokio::test]
async fn works_with_stream_body() {
    // `BodyStream` turns a body into a `Stream` of frames, which
    // `StreamBody` turns back into a body (with no size hint).
    let (tx, inner) = channel(SizeHint::with_exact(2));
    let inner = StreamBody::new(BodyStream::new(inner));
    let body = ReplayBody::new(inner, 8);
    tx.send(data(b"a")).await.unwrap();
    tx.send(data(b"b")).await.unwrap();
    drop(tx);
    let first = body.try_clone().unwrap();
    assert_eq!(first.collect().await.unwrap().to_bytes(), "ab");
    let second = body.try_clone().unwrap();
    assert_eq!(second.collect().await.unwrap().to_bytes(), "ab");
}

#[test]
fn overflowed_reader_errors() {
    let body = ReplayBody::new(ScriptBody::new(vec![data(b"x")], SizeHint::new()), 8);
    let mut reader = body.try_clone().unwrap();
    reader.pos = 0;
    lock(&body.shared.as_ref().unwrap().state).start = 3;
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let Poll::Ready(Some(Err(err))) = Pin::new(&mut reader).poll_frame(&mut cx) else {
        panic!("expected an error");
    };
    let err = err.downcast_ref::<ReplayError>().unwrap();
    assert!(err.is_overflowed() && !err.is_superseded());
    assert!(!reader.is_end_stream());
}

#[test]
fn poisoned_mutex_does_not_panic() {
    let body = ReplayBody::new(ScriptBody::new(vec![data(b"xy")], SizeHint::new()), 8);
    let shared = Arc::clone(body.shared.as_ref().unwrap());
    let _ = std::thread::spawn(move || {
        let _guard = shared.state.lock().unwrap();
        panic!("poison the mutex");
    })
    .join();
    assert!(body.shared.as_ref().unwrap().state.is_poisoned());
    let mut clone = body.try_clone().unwrap();
    assert_eq!(read_sync(&mut clone).unwrap().bytes(), b"xy");
    assert!(!body.is_capped());
    let _ = format!("{body:?}");
}

#[tokio::test]
async fn endless_empty_frames_stop_buffering_at_the_frame_cap() {
    let mut frames: Vec<TestFrame> = (0..10_000).map(|_| data(b"")).collect();
    frames.insert(5_000, data(b"payload"));
    let body = ReplayBody::new(ScriptBody::new(frames, SizeHint::new()), DEFAULT_REPLAY_CAP);
    let mut first = body.try_clone().unwrap();
    let out = read_sync(&mut first).unwrap();
    // The one attempt gets every frame, in order.
    assert_eq!(out.chunks.len(), 10_001);
    assert_eq!(out.bytes(), b"payload");
    assert!(body.is_capped());
    assert!(body.try_clone().is_none());
    let state = lock(&body.shared.as_ref().unwrap().state);
    assert!(
        state.chunks.is_empty() && state.buffered == 0,
        "buffer freed"
    );
}

#[tokio::test]
async fn frame_cap_is_inclusive_and_replays_frame_for_frame() {
    let frames = || vec![data(b"a"), data(b""), data(b"c")];
    let body = ReplayBody::with_limits(ScriptBody::new(frames(), SizeHint::new()), 64, 3);
    let out = read_all(body.try_clone().unwrap()).await.unwrap();
    let again = read_all(body.try_clone().expect("3 frames fit"))
        .await
        .unwrap();
    assert_eq!(again, out);
    assert_eq!(again.chunks.len(), 3);

    let body = ReplayBody::with_limits(ScriptBody::new(frames(), SizeHint::new()), 64, 2);
    let out = read_all(body.try_clone().unwrap()).await.unwrap();
    assert_eq!(out.bytes(), b"ac");
    assert_eq!(out.chunks.len(), 3, "sent intact");
    assert!(body.is_capped());
}

proptest! {
    /// Whatever the chunking and the limits, the first attempt gets the body intact, and
    /// the buffer never holds more than the limits allow.
    #[test]
    fn buffer_stays_within_bytes_and_frames(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..64),
        cap in 0usize..200,
        frame_cap in 0usize..40,
    ) {
        let frames: Vec<TestFrame> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(c.clone()))))
            .collect();
        let body = ReplayBody::with_limits(ScriptBody::new(frames, SizeHint::new()), cap, frame_cap);
        let Some(mut first) = body.try_clone() else {
            return Ok(());
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        loop {
            match Pin::new(&mut first).poll_frame(&mut cx) {
                Poll::Pending => continue,
                Poll::Ready(None) => break,
                Poll::Ready(Some(frame)) => {
                    got.push(frame.unwrap().into_data().unwrap());
                    let state = lock(&body.shared.as_ref().unwrap().state);
                    prop_assert!(state.buffered <= cap);
                    prop_assert!(state.chunks.len() <= frame_cap);
                }
            }
        }
        prop_assert_eq!(got.len(), chunks.len());
        prop_assert_eq!(got.concat(), chunks.concat());
        let fits = chunks.concat().len() <= cap && chunks.len() <= frame_cap;
        prop_assert_eq!(body.try_clone().is_some(), fits);
    }
}

proptest! {
    #[test]
    fn replays_arbitrary_chunkings(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 0..12),
        cap in 0usize..400,
        exact_hint in any::<bool>(),
        with_trailers in any::<bool>(),
    ) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let expected: Vec<u8> = chunks.concat();
        let mut frames: Vec<TestFrame> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(c.clone()))))
            .collect();
        if with_trailers {
            frames.push(Ok(Frame::trailers(trailers())));
        }
        let hint = if exact_hint {
            SizeHint::with_exact(total as u64)
        } else {
            SizeHint::new()
        };

        let body = ReplayBody::new(ScriptBody::new(frames, hint), cap);
        prop_assert_eq!(body.size_hint().lower(), hint.lower());
        let mut first = match body.try_clone() {
            Some(first) => first,
            None => {
                // Only an exact hint over the cap refuses up front.
                prop_assert!(exact_hint && total > cap);
                body
            }
        };
        let out = read_sync(&mut first).unwrap();
        prop_assert_eq!(out.bytes(), expected.clone());
        prop_assert_eq!(out.trailers.is_some(), with_trailers);
        prop_assert!(first.is_end_stream());

        if total <= cap {
            prop_assert!(!first.is_capped());
            let mut second = first.try_clone().expect("within cap");
            let again = read_sync(&mut second).unwrap();
            prop_assert_eq!(again, out);
            prop_assert!(second.is_end_stream());
        } else {
            prop_assert!(first.is_capped());
            prop_assert!(first.try_clone().is_none());
        }
    }
}

/// A body that breaks the exact length its size hint declared fails, is not replayable, and
/// says why; a body within its hint, or with no exact hint, is left alone.
#[tokio::test]
async fn a_body_off_its_exact_length_fails() {
    let short = vec![data(b"0123456789")];
    let body = ReplayBody::new(ScriptBody::new(short, SizeHint::with_exact(100)), 1024);
    let mut first = body.try_clone().unwrap();
    let f = first.frame().await.unwrap().unwrap();
    assert_eq!(f.into_data().unwrap(), "0123456789");
    let err = first.frame().await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "request body ended after 10 of the 100 bytes its size hint declared"
    );
    assert!(err.downcast_ref::<ReplayError>().is_none());
    assert!(first.frame().await.is_none());
    assert!(
        body.try_clone().is_none(),
        "a broken body is never replayed"
    );

    let long = vec![data(b"0123"), data(b"4567")];
    let body = ReplayBody::new(ScriptBody::new(long, SizeHint::with_exact(6)), 1024);
    let mut first = body.try_clone().unwrap();
    assert_eq!(
        first.frame().await.unwrap().unwrap().into_data().unwrap(),
        "0123"
    );
    let err = first.frame().await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "request body sent more than the 6 bytes its size hint declared"
    );
    assert!(body.try_clone().is_none());

    // Short before trailers is short too.
    let frames = vec![data(b"ab"), Ok(Frame::trailers(trailers()))];
    let body = ReplayBody::new(ScriptBody::new(frames, SizeHint::with_exact(3)), 1024);
    let err = read_all(body.try_clone().unwrap()).await.unwrap_err();
    assert!(
        err.to_string().starts_with("request body ended after 2"),
        "{err}"
    );

    // Exact and kept: replayed as it was.
    let frames = vec![data(b"abc"), Ok(Frame::trailers(trailers()))];
    let body = ReplayBody::new(ScriptBody::new(frames, SizeHint::with_exact(3)), 1024);
    read_all(body.try_clone().unwrap()).await.unwrap();
    let again = read_all(body.try_clone().unwrap()).await.unwrap();
    assert_eq!(again.bytes(), b"abc");

    // A lower bound alone is no declared length (nothing is sent as `content-length`).
    let mut hint = SizeHint::new();
    hint.set_lower(100);
    let body = ReplayBody::new(ScriptBody::new(vec![data(b"x")], hint), 1024);
    assert_eq!(
        read_all(body.try_clone().unwrap()).await.unwrap().bytes(),
        b"x"
    );
}
