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
    /// `None` for a connection that is not watched (HTTP/2).
    exchange: Option<Exchange>,
}

/// Where a watched connection is in its request/answer exchanges.
#[derive(Debug, Default, Clone, Copy)]
struct Exchange {
    /// Some answer was read on this connection: it is being reused.
    answered: bool,
    /// Request bytes were written since the last answer bytes were read.
    asked: bool,
}

impl Exchange {
    /// Whether an end of the connection now is the stale connection's shape: reused, and a
    /// request begun (written in part or whole, or being written) with nothing of its answer.
    fn stale(self, writing: bool) -> bool {
        self.answered && (self.asked || writing)
    }
}

impl<S> Watched<S> {
    /// Wraps `inner`; `watch` is false for a connection that must not be watched (HTTP/2).
    pub(crate) fn new(inner: S, watch: bool) -> Self {
        Watched {
            inner,
            exchange: watch.then(Exchange::default),
        }
    }

    /// The error to report for `end` (`None`: a clean close), given where the exchange is.
    fn end(&self, end: Option<io::Error>, writing: bool) -> io::Error {
        match self.exchange {
            Some(exchange) if exchange.stale(writing) => {
                let kind = end
                    .as_ref()
                    .map_or(io::ErrorKind::UnexpectedEof, io::Error::kind);
                io::Error::new(kind, StaleConnection(end))
            }
            _ => end.unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into()),
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
        let Some(exchange) = this.exchange.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => {
                exchange.answered = true;
                exchange.asked = false;
                Poll::Ready(Ok(()))
            }
            // A clean close: only an error carries the stale shape up through hyper, which
            // reads a close as the end of the answer.
            Poll::Ready(Ok(())) if room > 0 && exchange.stale(false) => {
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
        this.wrote(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(written)
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

impl<S> Watched<S> {
    fn wrote(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if let Some(exchange) = self.exchange.as_mut() {
                    exchange.asked |= n > 0;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.end(Some(e), true))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
#[path = "stale_tests.rs"]
mod tests;
