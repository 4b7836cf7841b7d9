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
    /// Bytes of the request's body still to be written, as its head declared them
    /// (`content-length`): until they are, every write is body, whatever it looks like.
    body_left: u64,
}

/// Where a watched connection is in its request/answer exchanges. hyper's HTTP/1.1 client
/// sends one request at a time and reads its answer before it writes the next, so a write
/// that begins with a whole request line after the answer came, and after the body its head
/// declared (see [`Watched::body_left`]), starts a new request. Other writes are the rest of
/// the request under way: a body still going out when the server answered early (an upload it
/// refuses, or answers as it reads), or after `100 Continue`. Interim answers (`1xx`) are
/// followed to the final one, whose code decides; `101` hands the connection over to another
/// protocol and the answer to a `CONNECT` may make it a tunnel: both end the watch.
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
    /// An interim answer's head is coming: `matched` bytes of its end (`\r\n\r\n`) came last.
    /// The final answer's status line follows it.
    Interim { matched: u8, tunnel: bool },
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

/// What remains to be written of the body that a request's head declares, once `written`
/// bytes of the write that began with `head` went out: its `content-length` less the body
/// bytes in that write. 0 for a request with no body, and for one whose body's length is not
/// declared (chunked) or whose head is not whole in `head`: the watch then treats later writes
/// as it always did (see [`starts_request`]). `GET` and `HEAD` are taken as bodiless unread,
/// so that the common request pays for no look at its headers.
fn declared_body(head: &[u8], written: usize) -> u64 {
    if head.starts_with(b"GET ") || head.starts_with(b"HEAD ") {
        return 0;
    }
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return 0;
    };
    let mut length = None;
    // The lines after the request line, up to the empty one.
    for line in head[..end].split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return 0;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let digits = value.len() <= 19 && !value.is_empty();
            if !digits || !value.iter().all(u8::is_ascii_digit) {
                return 0;
            }
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
        }
    }
    let sent = written.saturating_sub(end + 4) as u64;
    length.map_or(0, |length| length.saturating_sub(sent))
}

/// Looks in `read` for the end of an interim answer's head (`\r\n\r\n`), `matched` bytes of
/// which came at the end of the reads before: the bytes after it (the next answer's), or how
/// much of it ends `read`.
fn interim_end(read: &[u8], mut matched: u8) -> Result<&[u8], u8> {
    const END: &[u8; 4] = b"\r\n\r\n";
    for (i, &b) in read.iter().enumerate() {
        matched = if b == END[usize::from(matched)] {
            matched + 1
        } else if b == b'\r' {
            1
        } else {
            0
        };
        if usize::from(matched) == END.len() {
            return Ok(&read[i + 1..]);
        }
    }
    Err(matched)
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
            body_left: 0,
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
    fn note_read(&mut self, mut read: &[u8]) {
        loop {
            let (mut start, len, tunnel) = match self.exchange {
                Some(Exchange::Asked { tunnel, .. }) => ([0; STATUS_END], 0, tunnel),
                Some(Exchange::Answering { start, len, tunnel }) => {
                    (start, usize::from(len), tunnel)
                }
                Some(Exchange::Interim { matched, tunnel }) => match interim_end(read, matched) {
                    Ok(rest) => {
                        read = rest;
                        self.exchange = Some(Exchange::Answering {
                            start: [0; STATUS_END],
                            len: 0,
                            tunnel,
                        });
                        continue;
                    }
                    Err(matched) => {
                        self.exchange = Some(Exchange::Interim { matched, tunnel });
                        return;
                    }
                },
                _ => return,
            };
            if len == 0 {
                // RFC 9112 §2.2: empty lines before a status line are to be ignored.
                let blank = read
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                read = &read[blank..];
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
                Some(Exchange::Interim { matched: 0, tunnel })
            } else if tunnel {
                None
            } else {
                Some(Exchange::Answered)
            };
            if !interim {
                return;
            }
        }
    }

    /// Notes a write of `written` bytes that began with `first` (the bytes of its first
    /// non-empty buffer).
    fn note_write(&mut self, first: &[u8], written: usize) {
        if self.body_left > 0 {
            // More of the body the request's head declared.
            self.body_left = self.body_left.saturating_sub(written as u64);
            return;
        }
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
        self.body_left = declared_body(first, written);
    }

    fn written(
        &mut self,
        written: Poll<io::Result<usize>>,
        first: &[u8],
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.note_write(first, n);
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
