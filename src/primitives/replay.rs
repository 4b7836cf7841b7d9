//! A lazily-buffering request body that can be replayed for retries.
//!
//! [`ReplayBody`] wraps any [`http_body::Body`] and keeps the bytes it yields
//! (up to a cap) in a buffer shared by all of its clones, so a retry can resend
//! the request body without the body (or the request) being `Clone`. Nothing is
//! read ahead: the buffer fills only as fast as an attempt consumes the body,
//! and a later attempt first replays what was buffered and then carries on
//! reading the original body where the previous attempt stopped.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;

/// The default number of body bytes kept for replay: 64 KiB, as in linkerd.
///
/// # Example
///
/// ```
/// use http_body_util::Full;
/// use meshless::retry::{DEFAULT_REPLAY_CAP, ReplayBody};
///
/// let body = ReplayBody::new(Full::new(bytes::Bytes::from_static(b"hi")), DEFAULT_REPLAY_CAP);
/// assert!(body.try_clone().is_some());
/// ```
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// The default number of body frames kept for replay: 1024.
///
/// Bytes alone do not bound the buffer: each frame costs a handle (and may keep a larger
/// allocation alive), and zero-length frames cost one each while adding no bytes. 1024 frames
/// hold the default 64 KiB in frames of 64 bytes on average; a body cut finer is sent once,
/// intact, and not replayed.
///
/// # Example
///
/// ```
/// use http_body_util::Full;
/// use meshless::retry::{DEFAULT_REPLAY_CAP, DEFAULT_REPLAY_FRAMES, ReplayBody};
///
/// let body = ReplayBody::with_limits(
///     Full::new(bytes::Bytes::from_static(b"hi")),
///     DEFAULT_REPLAY_CAP,
///     DEFAULT_REPLAY_FRAMES,
/// );
/// assert!(body.try_clone().is_some());
/// ```
pub const DEFAULT_REPLAY_FRAMES: usize = 1024;

/// A request body that can be cloned for a retry, buffering lazily.
///
/// [`ReplayBody::new`] wraps the body of the first attempt; each call to
/// [`try_clone`](ReplayBody::try_clone) makes a body for another attempt that
/// yields the same frames from the start: first those already buffered, then
/// (once it has caught up) frames read from the original body, which are
/// buffered in turn. Data frames are replayed with the same chunk boundaries
/// and trailers are replayed too.
///
/// At most `cap` bytes of data are kept, in at most [`DEFAULT_REPLAY_FRAMES`]
/// data frames (zero-length ones included; see [`with_limits`](Self::with_limits)).
/// When the body turns out to be larger, or cut into more frames, the buffer is dropped and the body can no longer be cloned, but the reader
/// that crossed the cap keeps streaming the rest of the body normally, so a
/// large body is still sent once, intact. A body whose size hint already says
/// it is larger than `cap` is never buffered at all.
///
/// Only one handle may read at a time: creating a clone *supersedes* every
/// earlier handle, whose next [`poll_frame`](Body::poll_frame) yields a
/// [`ReplayError`] (see [`ReplayError::is_superseded`]). This keeps two
/// attempts from polling the original body concurrently and stealing each
/// other's wakers. A superseded handle can still be used to create further
/// clones, so a retry layer may keep one handle as a never-polled "template"
/// and send clones of it.
///
/// A body that is already at its end when wrapped (e.g. of a `GET`) takes a
/// fast path: nothing is allocated and clones are free.
///
/// `ReplayBody<B>` is `Send + Sync` when `B: Send`, and `Unpin` for any `B`.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use meshless::retry::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let template = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 1024);
///
/// // First attempt.
/// let first = template.try_clone().expect("small body is replayable");
/// let bytes = first.collect().await.unwrap().to_bytes();
/// assert_eq!(bytes, "hello");
///
/// // Retry: the same bytes again, although `Full` is consumed.
/// let second = template.try_clone().expect("still replayable");
/// let bytes = second.collect().await.unwrap().to_bytes();
/// assert_eq!(bytes, "hello");
/// # }
/// ```
pub struct ReplayBody<B> {
    /// `None` for a body that was empty when wrapped (the fast path).
    shared: Option<Arc<Replayed<B>>>,
    /// The generation this handle belongs to; it may read only while it is
    /// the shared state's current generation. 32 bits (with the flag beside it) keep a
    /// handle at 32 bytes, and so the request it is the body of at 256 (above that size,
    /// every move of a request or of a future holding one is a slower `memcpy`). It wraps
    /// after 4 billion clones of one body, which no retry policy makes.
    generation: u32,
    /// Absolute index of the next data chunk this handle yields.
    pos: usize,
    /// Whether this handle has yielded the trailers.
    trailers_sent: bool,
    /// Data bytes this handle has yielded, to keep `size_hint` accurate.
    yielded: u64,
}

/// What all handles of one [`ReplayBody`] share.
struct Replayed<B> {
    /// The size hint of the wrapped body (lower, upper), captured when it
    /// was wrapped; read without the lock.
    hint: (u64, Option<u64>),
    /// `Shared::capped`, readable without the lock: the retry layer asks on every request
    /// that finishes, where a lock would be two atomic operations more.
    capped: AtomicBool,
    state: Mutex<Shared<B>>,
}

/// State shared by all handles of one [`ReplayBody`].
struct Shared<B> {
    /// The wrapped body; `None` once it ended or failed.
    body: Option<Pin<Box<B>>>,
    /// Buffered data chunks; `chunks[0]` has absolute index `start`.
    chunks: Vec<Bytes>,
    /// Absolute index of `chunks[0]`: chunks before it were dropped.
    start: usize,
    /// Total length of `chunks`.
    buffered: usize,
    /// At most this many bytes are buffered.
    cap: usize,
    /// At most this many data frames are buffered.
    frame_cap: usize,
    /// Trailers yielded by the wrapped body, if any.
    trailers: Option<HeaderMap>,
    /// The wrapped body is done: it yielded its end or its trailers.
    ended: bool,
    /// The body is larger than `cap`: it is not buffered and not replayable.
    capped: bool,
    /// The wrapped body yielded an error: it is not replayable.
    failed: bool,
    /// The generation of the newest handle, the only one that may read.
    generation: u32,
}

impl<B> Shared<B> {
    /// Absolute index one past the last buffered chunk.
    fn end(&self) -> usize {
        self.start.saturating_add(self.chunks.len())
    }

    /// Drops the buffer (`extra` more chunks are consumed unbuffered) and
    /// returns the absolute index a caught-up reader is then at.
    fn drop_buffer(&mut self, extra: usize) -> usize {
        self.start = self.end().saturating_add(extra);
        self.chunks = Vec::new();
        self.buffered = 0;
        self.start
    }

    /// Marks the body failed and drops its buffer (it is not replayable): the absolute index
    /// its reader is then at.
    fn fail(&mut self) -> usize {
        self.failed = true;
        self.body = None;
        self.drop_buffer(0)
    }

    fn replayable(&self) -> bool {
        !self.capped && !self.failed
    }
}

/// Locks the shared state, recovering from a poisoned mutex.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Wraps the body of the first attempt; up to `cap` bytes are kept for
    /// replay as they are read.
    ///
    /// If the body is already at its end, it is dropped and nothing is
    /// allocated. If its size hint says it is larger than `cap`, it is
    /// marked [capped](ReplayBody::is_capped) at once and never buffered.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use meshless::retry::ReplayBody;
    ///
    /// let small = ReplayBody::new(Full::new(Bytes::from_static(b"abc")), 3);
    /// assert!(!small.is_capped());
    ///
    /// let large = ReplayBody::new(Full::new(Bytes::from_static(b"abcd")), 3);
    /// assert!(large.is_capped());
    /// ```
    pub fn new(body: B, cap: usize) -> Self {
        Self::with_limits(body, cap, DEFAULT_REPLAY_FRAMES)
    }

    /// Like [`new`](Self::new), keeping at most `frames` data frames as well as `cap` bytes:
    /// a body cut into more frames is [capped](ReplayBody::is_capped), sent once and intact,
    /// and not replayed.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use meshless::retry::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // No frame may be kept: the one attempt still gets the whole body.
    /// let body = ReplayBody::with_limits(Full::new(Bytes::from_static(b"xyz")), 1024, 0);
    /// let first = body.try_clone().unwrap();
    /// assert_eq!(first.collect().await.unwrap().to_bytes(), "xyz");
    /// assert!(body.is_capped());
    /// assert!(body.try_clone().is_none());
    /// # }
    /// ```
    pub fn with_limits(body: B, cap: usize, frames: usize) -> Self {
        let hint = body.size_hint();
        let hint = (hint.lower(), hint.upper());
        let shared = if body.is_end_stream() {
            None
        } else {
            let cap_u64 = u64::try_from(cap).unwrap_or(u64::MAX);
            Some(Arc::new(Replayed {
                hint,
                capped: AtomicBool::new(hint.0 > cap_u64),
                state: Mutex::new(Shared {
                    body: Some(Box::pin(body)),
                    chunks: Vec::new(),
                    start: 0,
                    buffered: 0,
                    cap,
                    frame_cap: frames,
                    trailers: None,
                    ended: false,
                    capped: hint.0 > cap_u64,
                    failed: false,
                    generation: 0,
                }),
            }))
        };
        ReplayBody {
            shared,
            generation: 0,
            pos: 0,
            trailers_sent: false,
            yielded: 0,
        }
    }

    /// A body for the next attempt, replaying from byte 0; `None` when it
    /// cannot be replayed (more than `cap` bytes were read, the size hint
    /// says the body is larger than `cap`, or the wrapped body failed).
    ///
    /// Creating a clone supersedes every earlier clone (including `self`):
    /// from then on only the newest reads, and the others yield a
    /// [`ReplayError`] when polled. Any handle, superseded or not, can create
    /// clones.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use meshless::retry::{ReplayBody, ReplayError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let first = ReplayBody::new(Full::new(Bytes::from_static(b"data")), 1024);
    /// let second = first.try_clone().unwrap();
    ///
    /// // `first` is superseded by `second`.
    /// let err = first.collect().await.unwrap_err();
    /// assert!(err.downcast_ref::<ReplayError>().unwrap().is_superseded());
    /// assert_eq!(second.collect().await.unwrap().to_bytes(), "data");
    /// # }
    /// ```
    #[inline]
    pub fn try_clone(&self) -> Option<Self> {
        let generation = match &self.shared {
            None => 0,
            Some(shared) => {
                let mut state = lock(&shared.state);
                if !state.replayable() {
                    return None;
                }
                state.generation = state.generation.wrapping_add(1);
                state.generation
            }
        };
        Some(ReplayBody {
            shared: self.shared.clone(),
            generation,
            pos: 0,
            trailers_sent: false,
            yielded: 0,
        })
    }
}

// For hedging: handles that read beside the current one instead of superseding it, which is
// safe only once nothing more is read from the wrapped body.
impl<B: Body> ReplayBody<B> {
    /// A handle that does not read yet: of the same generation as the newest, so that it can
    /// make a [`try_clone_complete`](Self::try_clone_complete) later without superseding the
    /// attempt that is reading now. Never poll it while another handle reads.
    pub(crate) fn template(&self) -> Self {
        let generation = match &self.shared {
            None => 0,
            Some(shared) => lock(&shared.state).generation,
        };
        ReplayBody {
            shared: self.shared.clone(),
            generation,
            pos: 0,
            trailers_sent: false,
            yielded: 0,
        }
    }

    /// A body for an attempt that runs *beside* the others (a hedge), replaying from byte 0
    /// without superseding any handle; `None` unless the whole body has been read and kept
    /// (still streaming, larger than the cap, or failed). Once the body is complete, every
    /// handle reads from the buffer alone, so several may read at once.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use meshless::retry::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let first = ReplayBody::new(Full::new(Bytes::from_static(b"data")), 1024);
    /// // Not read yet: a hedge would have to read the original body beside the first attempt.
    /// assert!(first.try_clone_complete().is_none());
    /// let mut first = first;
    /// let sent = (&mut first).collect().await.unwrap().to_bytes();
    /// let hedge = first.try_clone_complete().unwrap();
    /// assert_eq!(hedge.collect().await.unwrap().to_bytes(), sent);
    /// # }
    /// ```
    pub fn try_clone_complete(&self) -> Option<Self> {
        let generation = match &self.shared {
            None => 0,
            Some(shared) => {
                let state = lock(&shared.state);
                let complete = state.ended
                    || state.trailers.is_some()
                    || state.body.as_ref().is_none_or(|body| body.is_end_stream());
                if !state.replayable() || !complete {
                    return None;
                }
                state.generation
            }
        };
        Some(ReplayBody {
            shared: self.shared.clone(),
            generation,
            pos: 0,
            trailers_sent: false,
            yielded: 0,
        })
    }
}

// Apart from the `Body` bounds, so that the retry future can ask while it is dropped.
impl<B> ReplayBody<B> {
    /// Ends the reading of every handle: the request they carry was given up (its caller
    /// dropped it, or its deadline passed). A handle still in a transport's hands fails on its
    /// next read instead of sending the rest of the body. hyper parks a request that waits for
    /// an HTTP/2 stream and sends it once one frees, even after its caller left: its server
    /// then gets a request cut by a reset, not a whole one that nobody waits for (and that a
    /// POST's caller was told had failed).
    pub(crate) fn abandon(&self) {
        if let Some(shared) = &self.shared {
            let mut state = lock(&shared.state);
            // No handle belongs to the next generation: each one's next read is an error.
            state.generation = state.generation.wrapping_add(1);
            state.body = None;
        }
    }

    /// True once the body was found larger than the cap (then it is sent
    /// once, never replayed).
    ///
    /// This is about size only: after the wrapped body failed, `is_capped`
    /// may be false while [`try_clone`](ReplayBody::try_clone) returns `None`.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use meshless::retry::ReplayBody;
    ///
    /// let body = ReplayBody::new(Full::new(Bytes::from(vec![0u8; 100])), 10);
    /// assert!(body.is_capped());
    /// assert!(body.try_clone().is_none());
    /// ```
    pub fn is_capped(&self) -> bool {
        match &self.shared {
            None => false,
            Some(shared) => shared.capped.load(Ordering::Acquire),
        }
    }
}

impl<B> Replayed<B> {
    /// The error of a body whose data broke the exact length its size hint declared, having
    /// sent `sent` bytes (and ended, if `ended`). The declared length is what HTTP/1.1 sends as
    /// `content-length` and HTTP/2 checks: a body that ends short would leave the server waiting
    /// for the rest, or make it reset the stream, as if it were at fault. Failing the body
    /// instead makes it the caller's error, which is never retried and charges no endpoint.
    fn wrong_length(&self, sent: u64, ended: bool) -> Option<BoxError> {
        let (lower, upper) = self.hint;
        let declared = upper.filter(|upper| *upper == lower)?;
        let wrong = if ended {
            sent != declared
        } else {
            sent > declared
        };
        wrong.then(|| Box::new(LengthMismatch { declared, sent }) as BoxError)
    }
}

/// A request body that sent more or fewer bytes than the exact length its size hint declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LengthMismatch {
    declared: u64,
    sent: u64,
}

impl fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sent < self.declared {
            write!(
                f,
                "request body ended after {} of the {} bytes its size hint declared",
                self.sent, self.declared
            )
        } else {
            write!(
                f,
                "request body sent more than the {} bytes its size hint declared",
                self.declared
            )
        }
    }
}

impl std::error::Error for LengthMismatch {}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(shared) = &this.shared else {
            return Poll::Ready(None);
        };
        let mut state = lock(&shared.state);

        if state.generation != this.generation {
            return Poll::Ready(Some(Err(ReplayError::superseded().into())));
        }
        if this.pos < state.start {
            return Poll::Ready(Some(Err(ReplayError::overflowed().into())));
        }

        // Replay buffered data.
        if let Some(chunk) = state.chunks.get(this.pos - state.start) {
            let chunk = chunk.clone();
            this.pos += 1;
            this.yielded = this.yielded.saturating_add(chunk.len() as u64);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }

        // Caught up with the buffer.
        if state.failed {
            return Poll::Ready(None);
        }
        if !this.trailers_sent {
            if let Some(trailers) = &state.trailers {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
        }
        if state.ended {
            return Poll::Ready(None);
        }

        // Read on from the wrapped body.
        loop {
            let Some(body) = state.body.as_mut() else {
                state.ended = true;
                return Poll::Ready(None);
            };
            let frame = if body.is_end_stream() {
                None
            } else {
                match body.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Err(error))) => {
                        this.pos = state.fail();
                        return Poll::Ready(Some(Err(error.into())));
                    }
                    Poll::Ready(None) => None,
                    Poll::Ready(Some(Ok(frame))) => Some(frame),
                }
            };
            let Some(frame) = frame else {
                if let Some(error) = shared.wrong_length(this.yielded, true) {
                    this.pos = state.fail();
                    return Poll::Ready(Some(Err(error)));
                }
                state.ended = true;
                state.body = None;
                return Poll::Ready(None);
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let data = data.copy_to_bytes(data.remaining());
                    let sent = this.yielded.saturating_add(data.len() as u64);
                    if let Some(error) = shared.wrong_length(sent, false) {
                        this.pos = state.fail();
                        return Poll::Ready(Some(Err(error)));
                    }
                    // Zero-length frames count too: they add no bytes, but an endless run of
                    // them would grow the buffer without bound.
                    let fits = state
                        .buffered
                        .checked_add(data.len())
                        .is_some_and(|total| total <= state.cap)
                        && state.chunks.len() < state.frame_cap;
                    if state.capped || !fits {
                        state.capped = true;
                        shared.capped.store(true, Ordering::Release);
                        this.pos = state.drop_buffer(1);
                    } else {
                        state.buffered += data.len();
                        // Kept as a copy: a slice of a larger buffer (hyper's read buffer, a
                        // reader's) would keep all of it alive, and the cap counts only the
                        // slice (1,000 frames of 16 bytes held 64 MB). The reader gets the
                        // original, untouched.
                        state.chunks.push(Bytes::copy_from_slice(&data));
                        this.pos = state.end();
                    }
                    this.yielded = this.yielded.saturating_add(data.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if let Some(error) = shared.wrong_length(this.yielded, true) {
                            this.pos = state.fail();
                            return Poll::Ready(Some(Err(error)));
                        }
                        // Trailers are the last frame of a body.
                        state.trailers = Some(trailers.clone());
                        state.ended = true;
                        state.body = None;
                        this.trailers_sent = true;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    // A frame of an unknown kind: skip it.
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let state = lock(&shared.state);
        if state.generation != self.generation || self.pos < state.start {
            // The next poll yields an error.
            return false;
        }
        if self.pos < state.end() {
            return false;
        }
        if state.failed {
            return true;
        }
        if state.trailers.is_some() && !self.trailers_sent {
            return false;
        }
        if state.ended {
            return true;
        }
        state.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    /// The size hint of the wrapped body as captured by [`ReplayBody::new`],
    /// less the data bytes this handle has already yielded (so a fresh clone
    /// reports the original hint).
    fn size_hint(&self) -> SizeHint {
        // A body wrapped at its end has nothing more to send.
        let Some(shared) = &self.shared else {
            return SizeHint::with_exact(0);
        };
        let (lower, upper) = shared.hint;
        let lower = lower.saturating_sub(self.yielded);
        let mut hint = SizeHint::new();
        hint.set_lower(lower);
        if let Some(upper) = upper {
            // `upper >= lower` held, so it still holds after subtracting.
            hint.set_upper(upper.saturating_sub(self.yielded).max(lower));
        }
        hint
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReplayBody");
        d.field("generation", &self.generation)
            .field("pos", &self.pos)
            .field("yielded", &self.yielded);
        match &self.shared {
            None => d.field("empty", &true),
            Some(shared) => {
                let state = lock(&shared.state);
                d.field("hint", &shared.hint)
                    .field("buffered", &state.buffered)
                    .field("cap", &state.cap)
                    .field("frames", &state.chunks.len())
                    .field("frame_cap", &state.frame_cap)
                    .field("ended", &state.ended)
                    .field("capped", &state.capped)
                    .field("failed", &state.failed)
                    .field("current_generation", &state.generation)
            }
        };
        d.finish()
    }
}

/// Error yielded by a superseded clone or one asked for bytes the buffer no
/// longer holds.
///
/// It reaches callers boxed in a [`BoxError`]; use `downcast_ref` to find it.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use meshless::retry::{ReplayBody, ReplayError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let old = ReplayBody::new(Full::new(Bytes::from_static(b"x")), 16);
/// let _new = old.try_clone().unwrap();
/// let err = old.collect().await.unwrap_err();
/// let replay = err.downcast_ref::<ReplayError>().unwrap();
/// assert!(replay.is_superseded());
/// assert!(!replay.is_overflowed());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Superseded,
    Overflowed,
}

impl ReplayError {
    fn superseded() -> Self {
        ReplayError {
            kind: Kind::Superseded,
        }
    }

    fn overflowed() -> Self {
        ReplayError {
            kind: Kind::Overflowed,
        }
    }

    /// True when a newer clone of the body was created, so this one may no
    /// longer read.
    ///
    /// # Example
    ///
    /// See [`ReplayError`].
    pub fn is_superseded(&self) -> bool {
        self.kind == Kind::Superseded
    }

    /// True when the body needed bytes that were dropped from the buffer
    /// because the body grew larger than the cap.
    ///
    /// # Example
    ///
    /// See [`ReplayError`].
    pub fn is_overflowed(&self) -> bool {
        self.kind == Kind::Overflowed
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Superseded => f.write_str("replay body superseded by a newer clone"),
            Kind::Overflowed => f.write_str(
                "replay body needs bytes dropped from the buffer after the cap was exceeded",
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
