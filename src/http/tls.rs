//! TLS through rustls: which roots to trust, the client's own certificate, and the name checked.
//!
//! The crypto provider is `ring`, chosen explicitly for each client rather than through rustls'
//! process-wide default, so that linking another crate that installs a different provider can
//! neither change nor break this client.

use crate::error::ConfigError;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

/// TLS settings as the builder collects them: plain data, checked when the client is built.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) webpki_roots: bool,
    pub(crate) native_roots: bool,
    pub(crate) roots_pem: Vec<Vec<u8>>,
    pub(crate) identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) server_name: Option<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            webpki_roots: true,
            native_roots: false,
            roots_pem: Vec::new(),
            identity_pem: None,
            server_name: None,
        }
    }
}

// The private key must never reach a log through `{:?}` of the builder.
impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("webpki_roots", &self.webpki_roots)
            .field("native_roots", &self.native_roots)
            .field("custom_roots", &self.roots_pem.len())
            .field("client_identity", &self.identity_pem.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// What a connector needs to start a TLS session: the rustls configuration and the name to
/// check the server's certificate against when the request's URI does not decide it.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl TlsSettings {
    /// Builds the rustls configuration. `h2_only` offers only `h2` in ALPN (HTTP/2 with prior
    /// knowledge); otherwise `h2` then `http/1.1`, and the server chooses.
    pub(crate) fn build(&self, h2_only: bool) -> Result<Tls, ConfigError> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.native_roots {
            add_native_roots(&mut roots)?;
        }
        for pem in &self.roots_pem {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    ConfigError::new("tls_root_pem", format!("not a PEM certificate: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    ConfigError::new("tls_root_pem", format!("unusable root certificate: {e}"))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(ConfigError::new(
                    "tls_root_pem",
                    "no `BEGIN CERTIFICATE` block in the PEM",
                ));
            }
        }
        if roots.is_empty() {
            return Err(ConfigError::new(
                "tls_roots",
                "no root certificate to trust: keep the webpki roots or add one",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.identity_pem {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let (chain, key) = identity(chain, key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ConfigError::new("tls_identity_pem", e.to_string()))?
            }
        };
        config.alpn_protocols = if h2_only {
            vec![b"h2".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let server_name = match &self.server_name {
            None => None,
            Some(name) => Some(server_name(name).ok_or_else(|| {
                ConfigError::new(
                    "tls_server_name",
                    format!("{name:?} is neither a DNS name nor an IP address"),
                )
            })?),
        };
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// The name a certificate must carry, from a URI's host (`[::1]` or `svc.example`).
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).ok()
}

fn identity(
    chain: &[u8],
    key: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let chain = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(
                "tls_identity_pem",
                format!("the certificate chain is not PEM: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            "tls_identity_pem",
            "no `BEGIN CERTIFICATE` block in the certificate chain",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        ConfigError::new(
            "tls_identity_pem",
            format!("no usable private key in the key PEM: {e}"),
        )
    })?;
    Ok((chain, key))
}

#[cfg(feature = "native-roots")]
fn add_native_roots(roots: &mut RootCertStore) -> Result<(), ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(ConfigError::new(
            "tls_native_roots",
            format!(
                "no usable root certificate found in the system's store ({} errors)",
                found.errors.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(feature = "native-roots"))]
fn add_native_roots(_roots: &mut RootCertStore) -> Result<(), ConfigError> {
    Err(ConfigError::new(
        "tls_native_roots",
        "the system's roots need the `native-roots` feature",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_a_config_error_naming_the_field() {
        let settings = TlsSettings {
            roots_pem: vec![b"not a certificate".to_vec()],
            ..TlsSettings::default()
        };
        let err = settings.build(false).err().map(|e| e.setting());
        assert_eq!(err, Some("tls_root_pem"));

        let settings = TlsSettings {
            identity_pem: Some((b"nope".to_vec(), b"nope".to_vec())),
            ..TlsSettings::default()
        };
        let err = settings.build(false).err().map(|e| e.setting());
        assert_eq!(err, Some("tls_identity_pem"));

        let settings = TlsSettings {
            server_name: Some("not a name!".into()),
            ..TlsSettings::default()
        };
        let err = settings.build(false).err().map(|e| e.setting());
        assert_eq!(err, Some("tls_server_name"));

        let settings = TlsSettings {
            webpki_roots: false,
            ..TlsSettings::default()
        };
        let err = settings.build(false).err().map(|e| e.setting());
        assert_eq!(err, Some("tls_roots"));
    }

    #[test]
    fn the_key_never_shows_in_debug() {
        let settings = TlsSettings {
            identity_pem: Some((b"CHAIN".to_vec(), b"SECRET KEY".to_vec())),
            ..TlsSettings::default()
        };
        assert!(!format!("{settings:?}").contains("SECRET"));
    }

    #[test]
    fn names_come_from_hosts_with_or_without_brackets() {
        assert!(server_name("svc.example").is_some());
        assert!(server_name("[::1]").is_some());
        assert!(server_name("127.0.0.1").is_some());
        assert!(server_name("bad name").is_none());
    }
}
