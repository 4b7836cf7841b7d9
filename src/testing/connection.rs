//! One accepted connection: served over HTTP/1.1 or HTTP/2, and reset on demand.

use super::backend::Shared;
use super::respond::respond;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

/// The HTTP server settings shared by every connection of a fleet: HTTP/1.1, or HTTP/2 with
/// prior knowledge, told apart by the first bytes the client sends.
pub(crate) type Http = auto::Builder<TokioExecutor>;

/// What a connection's task shares with the requests it serves.
pub(crate) struct Conn {
    backend: Arc<Shared>,
    /// A request asks for the connection to be reset.
    reset: Notify,
    /// Set before the socket is dropped, to make the drop a reset (RST) rather than a close.
    aborted: AtomicBool,
}

impl Conn {
    pub(crate) fn backend(&self) -> &Shared {
        &self.backend
    }

    /// Asks the connection's task to reset the connection. (A `Notify` keeps the permit, so
    /// this works even before the task first waits.)
    pub(crate) fn reset(&self) {
        self.reset.notify_one();
    }
}

/// Serves `tcp` until the client is done with it, a request asks for a reset, or the backend
/// goes down (or away): `down` changes, or its sender is dropped.
pub(crate) async fn serve(
    tcp: TcpStream,
    backend: Arc<Shared>,
    http: Arc<Http>,
    mut down: watch::Receiver<()>,
) {
    let conn = Arc::new(Conn {
        backend,
        reset: Notify::new(),
        aborted: AtomicBool::new(false),
    });
    let socket = TokioIo::new(Socket {
        tcp,
        conn: Arc::clone(&conn),
    });
    let for_requests = Arc::clone(&conn);
    let service = service_fn(move |request| respond(Arc::clone(&for_requests), request));
    let mut connection = pin!(http.serve_connection(socket, service));

    let aborted = tokio::select! {
        // The client closed the connection, or broke the protocol: either way it is over, and
        // there is nobody to tell.
        _ = connection.as_mut() => false,
        () = conn.reset.notified() => true,
        _ = down.changed() => true,
    };
    if aborted {
        conn.aborted.store(true, Ordering::Relaxed);
    }
    // `connection` is dropped here, and the socket with it (with a reset if aborted), before
    // `down`: so whoever waits for every receiver of `down` to go knows the sockets are closed.
}

/// The connection's TCP stream, which resets instead of closing when the connection was
/// aborted.
///
/// Only aborted connections get `SO_LINGER` 0: set on every socket, it would turn every
/// ordinary close into a reset too, and a reset discards any answer still in the send buffer.
struct Socket {
    tcp: TcpStream,
    conn: Arc<Conn>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.conn.aborted.load(Ordering::Relaxed) {
            // If this fails the socket still closes, with a FIN: the client still sees its
            // request fail, only with another error.
            let _ = self.tcp.set_zero_linger();
        }
    }
}

// The rest only hands every call to the stream.

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
