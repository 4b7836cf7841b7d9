//! Telling a stale keep-alive connection from a failing server.
//!
//! A server may close an idle HTTP/1.1 connection at any time (RFC 9112 §9.3), and a client
//! that picks that connection from its pool at the same moment writes a request the server
//! never reads. hyper then fails the request as an early close or a reset, like a server that
//! crashed while handling it. Both are possible; which one is likely is told by the connection:
//! a connection that already carried an answer, and ends after this request began and before
//! any byte of its answer, most likely met the close (the race). [`Watched`] watches each
//! HTTP/1.1 connection for that shape and reports it as a [`StaleConnection`] error, which the
//! classifier knows ([`Reason::StaleConnection`](crate::classify::Reason::StaleConnection)):
//! the endpoint is charged nothing, and the retry layer sends an idempotent request again at
//! once, at no retry cost.
//!
//! HTTP/2 connections are not watched: their reads and writes interleave across streams, and
//! HTTP/2 says itself which streams were not processed (`GOAWAY`, `REFUSED_STREAM`).

use super::framing::{Body, LAST_CHUNK, declared_body, interim_end, starts_request};
use crate::classify::StaleConnection;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An I/O stream that reports the end of a reused connection, met by a request before its
/// answer, as a [`StaleConnection`] error (see the module's documentation).
pub(crate) struct Watched<S> {
    inner: S,
    /// `None` for a connection that is not watched (HTTP/2), or no longer (see [`Exchange`]).
    exchange: Option<Exchange>,
    /// What is left to write of the request's body: until it is all out, every write is
    /// body, whatever it looks like.
    body: Body,
}

/// Where a watched connection is in its request/answer exchanges. hyper's HTTP/1.1 client
/// sends one request at a time and reads its answer before it writes the next, so once a
/// request's body is all out (see [`Body`]) and its answer came, a write that begins with a
/// whole request line starts a new request. Until then every write is the request under way
/// (its body after `100 Continue`, say). A final answer that begins before the body is known
/// to be all out (an early answer to an upload, or a body whose end the watch cannot count)
/// ends the watch: what is written after it may be anything. Interim answers (`1xx`) are
/// followed to the final one; `101` hands the connection over to another protocol and the
/// answer to a `CONNECT` may make it a tunnel: both end the watch too.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// No request yet.
    #[default]
    Fresh,
    /// A request is on its way and no byte of its answer has come; `reused` when answers came
    /// on this connection before it; `tunnel` when it is a `CONNECT`.
    Asked { reused: bool, tunnel: bool },
    /// The first bytes of an answer came (an interim one's included), fewer than its status
    /// code needs: `start` holds the first `len`, collected across reads however the server
    /// splits them.
    Answering {
        start: [u8; STATUS_END],
        len: u8,
        tunnel: bool,
    },
    /// An interim answer's head is coming, its end not seen yet (`state`: see
    /// [`interim_end`]). The final answer's status line follows it.
    Interim { state: u8, tunnel: bool },
    /// The answer's status code came, and it is a final one.
    Answered,
}

/// `HTTP/1.1 101`: the bytes of an answer up to the end of its status code.
const STATUS_END: usize = 12;

/// Where the status code's first digit is (`HTTP/1.1 1…` is an interim answer).
const STATUS_DIGIT: usize = 9;

/// Whether `error` is how a closed connection shows: the peer's FIN (without TLS's
/// `close_notify`), its reset, or a write after either.
fn closes(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

impl<S> Watched<S> {
    /// Wraps `inner`; `watch` is false for a connection that must not be watched (HTTP/2).
    pub(crate) fn new(inner: S, watch: bool) -> Self {
        Watched {
            inner,
            exchange: watch.then(Exchange::default),
            body: Body::Done,
        }
    }

    /// Whether an end of the connection now is the stale connection's shape: a request on its
    /// way on a reused connection, with nothing of its answer; or, on a connection whose last
    /// answer came, a write of a new request (`writing`, the bytes of the write that failed).
    fn stale(&self, writing: Option<&[u8]>) -> bool {
        match self.exchange {
            Some(Exchange::Asked { reused, .. }) => reused,
            Some(Exchange::Answered) => {
                self.body == Body::Done && writing.is_some_and(starts_request)
            }
            _ => false,
        }
    }

    /// The error to report for `end` (`None`: a clean close). Only a close is the stale
    /// connection's shape: bytes that are no answer (a corrupt TLS record, an alert) are the
    /// server's failure, whenever they come.
    fn end(&self, end: Option<io::Error>, writing: Option<&[u8]>) -> io::Error {
        if end.as_ref().is_none_or(closes) && self.stale(writing) {
            let kind = end
                .as_ref()
                .map_or(io::ErrorKind::UnexpectedEof, io::Error::kind);
            return io::Error::new(kind, StaleConnection(end));
        }
        end.unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    /// Notes `read`, the bytes a read brought.
    fn note_read(&mut self, mut read: &[u8]) {
        loop {
            let (mut start, len, tunnel) = match self.exchange {
                Some(Exchange::Asked { tunnel, .. }) => ([0; STATUS_END], 0, tunnel),
                Some(Exchange::Answering { start, len, tunnel }) => {
                    (start, usize::from(len), tunnel)
                }
                Some(Exchange::Interim { state, tunnel }) => match interim_end(read, state) {
                    Ok(rest) => {
                        read = rest;
                        self.exchange = Some(Exchange::Answering {
                            start: [0; STATUS_END],
                            len: 0,
                            tunnel,
                        });
                        continue;
                    }
                    Err(state) => {
                        self.exchange = Some(Exchange::Interim { state, tunnel });
                        return;
                    }
                },
                _ => return,
            };
            if len == 0 {
                // RFC 9112 §2.2: empty lines before a status line are to be ignored; before
                // the first answer they are no answer yet.
                let blank = read
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                read = &read[blank..];
                if read.is_empty() {
                    return;
                }
            }
            // The answer has begun: from here on the connection's end is not stale, whatever
            // the status. Its code says whether the watch goes on (see `Exchange`).
            let status = if len == 0 && read.len() >= STATUS_END {
                // The usual case: the whole status line in one read, nothing to keep.
                &read[..STATUS_END]
            } else {
                let take = read.len().min(STATUS_END - len);
                start[len..len + take].copy_from_slice(&read[..take]);
                if len + take < STATUS_END {
                    self.exchange = Some(Exchange::Answering {
                        start,
                        len: (len + take) as u8,
                        tunnel,
                    });
                    return;
                }
                &start[..]
            };
            let interim = status[STATUS_DIGIT] == b'1';
            let switching = &status[STATUS_DIGIT..] == b"101";
            read = &read[(STATUS_END - len).min(read.len())..];
            self.exchange = if switching {
                // Another protocol from here on: not watched any more.
                None
            } else if interim {
                Some(Exchange::Interim { state: 0, tunnel })
            } else if tunnel || self.body != Body::Done {
                // A tunnel; or an answer that came before the body was known to be all out,
                // after which a write may be body or a new request: not told apart.
                None
            } else {
                Some(Exchange::Answered)
            };
            if !interim {
                return;
            }
        }
    }

    /// Notes a write that took `written` of the `total` bytes offered, which began with
    /// `first` and ended with `last` (its first and last non-empty buffers).
    fn note_write(&mut self, first: &[u8], last: &[u8], written: usize, total: usize) {
        let whole = written == total;
        match self.body {
            Body::Left(left) => {
                // More of the body the request's head declared.
                self.body = match left.saturating_sub(written as u64) {
                    0 => Body::Done,
                    left => Body::Left(left),
                };
                return;
            }
            Body::Open => {
                if whole && last == LAST_CHUNK {
                    self.body = Body::Done;
                }
                return;
            }
            Body::Done => {}
        }
        let reused = match self.exchange {
            // A fresh connection's first write is a request's head.
            Some(Exchange::Fresh) => false,
            Some(Exchange::Answered) if starts_request(first) => true,
            Some(Exchange::Answered) | None => return,
            // More of a request whose head declared no body (or was not read, a `GET`'s): a
            // body after all, whose end the watch cannot count.
            Some(_) => {
                self.body = Body::Open;
                return;
            }
        };
        // Too short to tell a `CONNECT` from another method: taken as one, which only ends
        // the watch.
        let tunnel = first.len() < b"CONNECT ".len() || first.starts_with(b"CONNECT ");
        self.exchange = Some(Exchange::Asked { reused, tunnel });
        self.body = declared_body(first, written);
        // An empty chunked body goes out with its head.
        if self.body == Body::Open && whole && !std::ptr::eq(first, last) && last == LAST_CHUNK {
            self.body = Body::Done;
        }
    }

    fn written(
        &mut self,
        written: Poll<io::Result<usize>>,
        first: &[u8],
        last: &[u8],
        total: usize,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 && self.exchange.is_some() {
                    self.note_write(first, last, n, total);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.end(Some(e), Some(first)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (filled, room) = (buf.filled().len(), buf.remaining());
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.exchange.is_none() {
            return read;
        }
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => {
                this.note_read(&buf.filled()[filled..]);
                Poll::Ready(Ok(()))
            }
            // A clean close: only an error carries the stale shape up through hyper, which
            // reads a close as the end of the answer.
            Poll::Ready(Ok(())) if room > 0 && this.stale(None) => {
                Poll::Ready(Err(this.end(None, None)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.end(Some(e), None))),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if this.exchange.is_none() {
            return written;
        }
        this.written(written, buf, buf, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if this.exchange.is_none() {
            return written;
        }
        let mut offered = bufs.iter().filter(|b| !b.is_empty());
        let first = offered.next().map_or(&[][..], |b| &b[..]);
        let last = offered.next_back().map_or(first, |b| &b[..]);
        let total = bufs.iter().map(|b| b.len()).sum();
        this.written(written, first, last, total)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            // A flush writes nothing new: the bytes it pushes were noted when written.
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.end(Some(e), None))),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "stale_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "stale_writes_tests.rs"]
mod writes_tests;
