//! The connector of one endpoint: it always dials that endpoint's address, whatever host the
//! request names, and speaks TLS when the request's scheme is `https`.
//!
//! Keeping the dialled address out of the URI lets the URI keep the caller's logical scheme and
//! authority, so `Host`, `:authority`, SNI and the certificate check all name the service, not
//! an IP, and hyper-util's pool (keyed by scheme and authority) stays per endpoint because each
//! endpoint has its own client.

use super::stale::Watched;
use crate::error::BoxError;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Linux refuses a keepalive idle time above this (`MAX_TCP_KEEPIDLE`); larger settings are
/// clamped rather than turned into a failed connect.
const MAX_TCP_KEEPALIVE: Duration = Duration::from_secs(32_767);

/// How every connection of a client is opened: plain data shared by all endpoints.
#[derive(Clone)]
pub(crate) struct ConnectSettings {
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) tcp_keepalive: Option<Duration>,
    /// HTTP/2 with prior knowledge: no connection is HTTP/1.1, none is watched for staleness.
    pub(crate) http2_only: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: super::tls::Tls,
}

/// Dials one address; a `tower::Service<Uri>` as hyper-util's client wants.
#[derive(Clone)]
pub(crate) struct Connector {
    addr: SocketAddr,
    settings: Arc<ConnectSettings>,
}

impl Connector {
    pub(crate) fn new(addr: SocketAddr, settings: Arc<ConnectSettings>) -> Self {
        Connector { addr, settings }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let addr = self.addr;
        let settings = self.settings.clone();
        Box::pin(async move {
            let open = connect(addr, uri, &settings);
            match settings.connect_timeout {
                None => open.await,
                Some(limit) => match tokio::time::timeout(limit, open).await {
                    Ok(conn) => conn,
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {addr} took longer than {limit:?}"),
                    )
                    .into()),
                },
            }
        })
    }
}

/// TCP, then TLS for `https`. The scheme is checked before the socket is opened, so that a
/// request this connector cannot protect never gets as far as a connection.
async fn connect(addr: SocketAddr, uri: Uri, settings: &ConnectSettings) -> Result<Conn, BoxError> {
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            return Err(format!("unsupported scheme {other:?}: only http and https").into());
        }
    };
    #[cfg(not(feature = "tls"))]
    if tls {
        return Err(crate::Error::new(crate::error::Kind::TlsUnavailable).into());
    }
    // The name the certificate must carry, known before dialling: a host no certificate can
    // name (`bad!host`) is the caller's mistake, not a connect failure of the endpoint's.
    #[cfg(feature = "tls")]
    let name = match tls {
        true => Some(server_name(&uri, settings)?),
        false => None,
    };
    let tcp = TcpStream::connect(addr).await?;
    // Nagle would hold small requests back waiting for ACKs.
    tcp.set_nodelay(true)?;
    if let Some(idle) = settings.tcp_keepalive {
        set_keepalive(&tcp, idle);
    }
    #[cfg(feature = "tls")]
    if let Some(name) = name {
        return tls_handshake(addr, name, tcp, settings).await;
    }
    Ok(Conn {
        io: TokioIo::new(Watched::new(Stream::Plain(tcp), !settings.http2_only)),
        h2: false,
    })
}

/// The configured server name, or the URI's host; refused as the caller's
/// ([`Kind::InvalidRequest`](crate::error::Kind::InvalidRequest)) when it is neither a DNS
/// name nor an IP address.
#[cfg(feature = "tls")]
fn server_name(
    uri: &Uri,
    settings: &ConnectSettings,
) -> Result<rustls::pki_types::ServerName<'static>, BoxError> {
    let refuse = |why: String| crate::Error::with_source(crate::error::Kind::InvalidRequest, why);
    match (&settings.tls.server_name, uri.host()) {
        (Some(name), _) => Ok(name.clone()),
        (None, Some(host)) => super::tls::server_name(host).ok_or_else(|| {
            refuse(format!("{host:?} cannot be checked against a certificate")).into()
        }),
        (None, None) => Err(refuse("an https request needs a host to check".into()).into()),
    }
}

#[cfg(feature = "tls")]
async fn tls_handshake(
    addr: SocketAddr,
    name: rustls::pki_types::ServerName<'static>,
    tcp: TcpStream,
    settings: &ConnectSettings,
) -> Result<Conn, BoxError> {
    let tls = &settings.tls;
    let stream = tls
        .connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| handshake_error(addr, &name, e))?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let watch = !h2 && !settings.http2_only;
    Ok(Conn {
        io: TokioIo::new(Watched::new(Stream::Tls(Box::new(stream)), watch)),
        h2,
    })
}

/// Lifts rustls' error out of the `io::Error` that carries it, so that callers walking
/// `source()` find the `rustls::Error` (an `io::Error`'s `source` skips its payload).
#[cfg(feature = "tls")]
fn handshake_error(
    addr: SocketAddr,
    name: &rustls::pki_types::ServerName<'_>,
    error: io::Error,
) -> BoxError {
    let source: BoxError = match error.get_ref().is_some_and(|e| e.is::<rustls::Error>()) {
        true => error.into_inner().unwrap_or_else(|| "TLS failure".into()),
        false => error.into(),
    };
    Box::new(HandshakeError {
        what: format!(
            "TLS handshake with {addr} as {:?} failed",
            name.to_str().as_ref()
        ),
        source,
    })
}

#[cfg(feature = "tls")]
#[derive(Debug)]
struct HandshakeError {
    what: String,
    source: BoxError,
}

#[cfg(feature = "tls")]
impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

#[cfg(feature = "tls")]
impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Probes start after `idle` and repeat every `idle`: with the kernel's 9 probes a dead peer is
/// found after about ten times `idle`, instead of the kernel default of two hours and more.
fn set_keepalive(tcp: &TcpStream, idle: Duration) {
    let idle = idle.clamp(Duration::from_secs(1), MAX_TCP_KEEPALIVE);
    let keepalive = socket2::TcpKeepalive::new().with_time(idle);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive.with_interval(idle);
    // Keepalive only helps find dead peers sooner; a platform that refuses it still connects.
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "TCP keepalive not set");
    }
}

/// A connection, plain or TLS, as hyper reads and writes it.
pub(crate) struct Conn {
    io: TokioIo<Watched<Stream>>,
    h2: bool,
}

enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
