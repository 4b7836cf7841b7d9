//! The builder's connection settings: logical authority, TLS, keepalives and the pool.

use super::ClientBuilder;
use std::time::Duration;

impl ClientBuilder {
    /// The authority (`host[:port]`) of requests given as a path (`client.get("/x")`): what
    /// `Host` / `:authority` carry and, for `https`, the name the certificate must hold.
    /// Default: the [`dns`](Self::dns) name, else the chosen endpoint's `IP:port`. A full URI
    /// (`https://svc.example/x`) keeps its own authority. Userinfo is refused here and stripped
    /// from URIs: it never leaves in a header.
    ///
    /// ```
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["10.0.0.1:8080", "10.0.0.2:8080"])
    ///     .authority("payments.internal")
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// Sends requests given as a path over `https` (default `false`: `http`). A full URI keeps
    /// its own scheme. Needs the `tls` feature (on by default); without it `build` fails.
    ///
    /// ```
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["10.0.0.1:8443"])
    ///     .authority("payments.internal")
    ///     .https(true)
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn https(mut self, enabled: bool) -> Self {
        self.https = enabled;
        self
    }

    /// TCP keepalive: probes after `idle` without traffic, then every `idle` (default 10 s, as
    /// linkerd's proxy). A peer that vanished (host down, NAT entry dropped) is found after
    /// about ten times `idle` instead of the kernel's two hours. `None` turns it off; values
    /// are clamped to 1 s ..= 32767 s, the range Linux accepts.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().tcp_keepalive(Some(Duration::from_secs(30)));
    /// ```
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// HTTP/2 keepalive: a PING after `interval` without any frame from the server, idle
    /// connections included; no answer within
    /// [`http2_keepalive_timeout`](Self::http2_keepalive_timeout) closes the connection and
    /// its streams fail (default 20 s). A black-holed connection is found in under a minute
    /// rather than kept for as long as the kernel retransmits. `None` or [`Duration::MAX`]
    /// turns it off.
    ///
    /// gRPC servers in Go and Java refuse pings more often than every 5 minutes by default
    /// (`GOAWAY too_many_pings`) on streams that stay silent; against them, with streams
    /// silent for minutes, raise the interval to 5 minutes or turn pings off.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().http2_keepalive(Some(Duration::from_secs(300)));
    /// ```
    pub fn http2_keepalive(mut self, interval: Option<Duration>) -> Self {
        self.http2_keepalive = interval;
        self
    }

    /// How long an HTTP/2 keepalive PING may wait for its answer (default 20 s, as gRPC's
    /// keepalive timeout and hyper). [`Duration::MAX`] means no limit.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().http2_keepalive_timeout(Duration::from_secs(5));
    /// ```
    pub fn http2_keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.http2_keepalive_timeout = timeout;
        self
    }

    /// How long an unused connection stays in the pool (default 4 s). Keep it below the
    /// servers' own keep-alive timeout (Node and Apache: 5 s) so that the client, not the
    /// server, closes idle connections; a request on a connection the server has just closed
    /// is still sent again transparently when it provably never left. `None` or
    /// [`Duration::MAX`] keeps idle connections until the server closes them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().pool_idle_timeout(Some(Duration::from_secs(50)));
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The most idle connections kept per endpoint (default 128); more are closed when their
    /// request ends. HTTP/2 shares one connection, so this matters for HTTP/1.1.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().pool_max_idle_per_host(16);
    /// ```
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }
}

/// TLS settings: on with the `tls` feature (default).
#[cfg(feature = "tls")]
impl ClientBuilder {
    /// Also trusts the root CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks),
    /// for services with a private CA. Checked at `build`: bad PEM is a
    /// [`ConfigError`](crate::ConfigError) naming `tls_root_pem`.
    ///
    /// ```
    /// # let ca_pem = "";
    /// let b = meshless::http::Client::builder().tls_root_pem(ca_pem);
    /// let err = b.endpoints(["127.0.0.1:1"]).build().unwrap_err();
    /// assert_eq!(err.setting(), "tls_root_pem");
    /// ```
    pub fn tls_root_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls.roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Trusts the Mozilla roots shipped in `webpki-roots` (default `true`). Turn it off to
    /// trust only the roots given with [`tls_root_pem`](Self::tls_root_pem) (a private PKI).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().tls_webpki_roots(false);
    /// ```
    pub fn tls_webpki_roots(mut self, enabled: bool) -> Self {
        self.tls.webpki_roots = enabled;
        self
    }

    /// Trusts the operating system's root certificates too (default `false`). Needs the
    /// `native-roots` feature; `build` fails without it, or when the system has none.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().tls_native_roots(true);
    /// ```
    pub fn tls_native_roots(mut self, enabled: bool) -> Self {
        self.tls.native_roots = enabled;
        self
    }

    /// The client's certificate chain and private key, both PEM, for servers that require
    /// mutual TLS. Checked at `build` (`tls_identity_pem` in the error). The key never
    /// appears in `Debug` output.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let chain = std::fs::read("client.pem")?;
    /// let key = std::fs::read("client.key")?;
    /// let b = meshless::http::Client::builder().tls_identity_pem(chain, key);
    /// # Ok(()) }
    /// ```
    pub fn tls_identity_pem(mut self, chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        self.tls.identity_pem = Some((chain.as_ref().to_vec(), key.as_ref().to_vec()));
        self
    }

    /// The name every server certificate must carry, whatever the request's URI names; for
    /// URIs that name an IP, or a host other than the certificate's. Default: the host of the
    /// request's URI (for a path: [`authority`](Self::authority), else the DNS name, else the
    /// endpoint's IP).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().tls_server_name("payments.internal");
    /// ```
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self
    }
}
