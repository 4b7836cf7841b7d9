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
}

/// Where a watched connection is in its request/answer exchanges. hyper's HTTP/1.1 client
/// sends one request at a time and reads its answer before it writes the next, so a write
/// that begins with a whole request line after answer bytes came starts a new request. Other
/// writes after answer bytes are the rest of the request under way: a body still going out
/// when the server answered early (an upload it refuses, or answers as it reads). Interim
/// answers (`1xx`: a request body follows `100 Continue`, and `101` hands the connection over
/// to another protocol) and the answer to a `CONNECT` (the connection may be a tunnel) end
/// the watch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// No request yet.
    #[default]
    Fresh,
    /// A request is on its way and no byte of its answer has come; `reused` when answers came
    /// on this connection before it; `tunnel` when it is a `CONNECT`.
    Asked { reused: bool, tunnel: bool },
    /// The first bytes of the answer came, fewer than its status code needs: `start` holds
    /// the first `len`, collected across reads however the server splits them.
    Answering {
        start: [u8; STATUS_END],
        len: u8,
        tunnel: bool,
    },
    /// The answer's status code came, and it is a final one.
    Answered,
}

/// `HTTP/1.1 101`: the bytes of an answer up to the end of its status code.
const STATUS_END: usize = 12;

/// Where the status code's first digit is (`HTTP/1.1 1…` is an interim answer).
const STATUS_DIGIT: usize = 9;

/// Whether a write that begins with `bytes` begins a request: the whole request line, as
/// hyper writes a request's head (one buffer, ahead of its body): a method token, a space, a
/// target, a space and `HTTP/1.x` with its line end. Body bytes that happen to look like a
/// method and a space (`SELECT 1;`) are no request.
fn starts_request(bytes: &[u8]) -> bool {
    let method = bytes.iter().take_while(|&&b| is_tchar(b)).count();
    if method == 0 || bytes.get(method) != Some(&b' ') {
        return false;
    }
    let rest = &bytes[method + 1..];
    let target = rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count();
    let version = &rest[target..];
    target > 0
        && version.len() >= b" HTTP/1.1\r\n".len()
        && version.starts_with(b" HTTP/1.")
        && version[8].is_ascii_digit()
        && version[9..].starts_with(b"\r\n")
}

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

/// RFC 9110's token characters, of which a method is made (`BASELINE-CONTROL`, `get`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<S> Watched<S> {
    /// Wraps `inner`; `watch` is false for a connection that must not be watched (HTTP/2).
    pub(crate) fn new(inner: S, watch: bool) -> Self {
        Watched {
            inner,
            exchange: watch.then(Exchange::default),
        }
    }

    /// Whether an end of the connection now is the stale connection's shape: a request on its
    /// way on a reused connection, with nothing of its answer; or, on a connection whose last
    /// answer came, a write of a new request (`writing`, the bytes of the write that failed).
    fn stale(&self, writing: Option<&[u8]>) -> bool {
        match self.exchange {
            Some(Exchange::Asked { reused, .. }) => reused,
            Some(Exchange::Answered) => writing.is_some_and(starts_request),
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
    fn note_read(&mut self, read: &[u8]) {
        let (mut start, len, tunnel) = match self.exchange {
            Some(Exchange::Asked { tunnel, .. }) => ([0; STATUS_END], 0, tunnel),
            Some(Exchange::Answering { start, len, tunnel }) => (start, usize::from(len), tunnel),
            _ => return,
        };
        // The answer has begun: from here on the connection's end is not stale, whatever the
        // status. Its code says whether the watch goes on (see `Exchange`).
        if len == 0 && read.len() >= STATUS_END {
            // The usual case: the whole status line in the first read, nothing to keep.
            let interim = read[STATUS_DIGIT] == b'1';
            self.exchange = (!tunnel && !interim).then_some(Exchange::Answered);
            return;
        }
        let take = read.len().min(STATUS_END - len);
        start[len..len + take].copy_from_slice(&read[..take]);
        let len = len + take;
        self.exchange = if len < STATUS_END {
            Some(Exchange::Answering {
                start,
                len: len as u8,
                tunnel,
            })
        } else if tunnel || start[STATUS_DIGIT] == b'1' {
            None
        } else {
            Some(Exchange::Answered)
        };
    }

    /// Notes a write that began with `first` (the bytes of its first non-empty buffer).
    fn note_write(&mut self, first: &[u8]) {
        let reused = match self.exchange {
            // A fresh connection's first write is a request's head.
            Some(Exchange::Fresh) => false,
            Some(Exchange::Answered) if starts_request(first) => true,
            // More of the request on its way, or not watched.
            _ => return,
        };
        // Too short to tell a `CONNECT` from another method: taken as one, which only ends
        // the watch.
        let tunnel = first.len() < b"CONNECT ".len() || first.starts_with(b"CONNECT ");
        self.exchange = Some(Exchange::Asked { reused, tunnel });
    }

    fn written(
        &mut self,
        written: Poll<io::Result<usize>>,
        first: &[u8],
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.note_write(first);
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
        this.written(written, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        this.written(written, first)
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
