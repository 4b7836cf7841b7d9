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
/// sends one request at a time and reads its answer before the next, so a write after answer
/// bytes starts a new request, but in two cases, which end the watch: a request body written
/// after an interim `1xx` answer (`100 Continue`; `101` hands the connection over to another
/// protocol), and a `CONNECT`, after which the connection may be a tunnel.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// No request yet.
    #[default]
    Fresh,
    /// A request is on its way and no byte of its answer has come; `reused` when answers came
    /// on this connection before it.
    Asked { reused: bool },
    /// Bytes of the last request's answer came.
    Answered,
}

/// `HTTP/1.1 1`: the start of an interim (or switching) answer, whose digit is at this index.
const STATUS_DIGIT: usize = 9;

impl<S> Watched<S> {
    /// Wraps `inner`; `watch` is false for a connection that must not be watched (HTTP/2).
    pub(crate) fn new(inner: S, watch: bool) -> Self {
        Watched {
            inner,
            exchange: watch.then(Exchange::default),
        }
    }

    /// Whether an end of the connection now is the stale connection's shape: a request on its
    /// way on a reused connection, with nothing of its answer; or a new request starting on
    /// one (`writing`).
    fn stale(&self, writing: bool) -> bool {
        match self.exchange {
            Some(Exchange::Asked { reused }) => reused,
            Some(Exchange::Answered) => writing,
            _ => false,
        }
    }

    /// The error to report for `end` (`None`: a clean close).
    fn end(&self, end: Option<io::Error>, writing: bool) -> io::Error {
        if self.stale(writing) {
            let kind = end
                .as_ref()
                .map_or(io::ErrorKind::UnexpectedEof, io::Error::kind);
            return io::Error::new(kind, StaleConnection(end));
        }
        end.unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    /// Notes `read`, the bytes a read brought (none: a close).
    fn note_read(&mut self, read: &[u8]) {
        if let Some(Exchange::Asked { .. }) = self.exchange {
            // The first bytes of an answer: an interim one ends the watch (see `Exchange`).
            // Too short to tell, it ends it too: only the watch is lost.
            let interim = read.get(STATUS_DIGIT).is_none_or(|digit| *digit == b'1');
            self.exchange = (!interim).then_some(Exchange::Answered);
        }
    }

    /// Notes a write that began with `first` (the bytes of its first non-empty buffer).
    fn note_write(&mut self, first: &[u8]) {
        let reused = match self.exchange {
            Some(Exchange::Fresh) => false,
            Some(Exchange::Answered) => true,
            // More of the request on its way, or not watched.
            _ => return,
        };
        // A new request: a `CONNECT` may turn the connection into a tunnel.
        let connect = first.len() < b"CONNECT ".len() || first.starts_with(b"CONNECT ");
        self.exchange = (!connect).then_some(Exchange::Asked { reused });
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
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.end(Some(e), true))),
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
            Poll::Ready(Ok(())) if room > 0 && this.stale(false) => {
                Poll::Ready(Err(this.end(None, false)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.end(Some(e), false))),
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
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.end(Some(e), true))),
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
