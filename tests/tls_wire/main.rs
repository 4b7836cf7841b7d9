//! TLS at the edges, against raw TLS servers whose every byte the tests write: truncation,
//! corrupt records on reused connections, hosts no certificate can name, and schemes that must
//! never fall back to clear text.
#![cfg(all(feature = "tls", feature = "reqwest", feature = "tonic"))]

mod h1;
mod h2tls;
mod schemes;
mod support;
mod wire;
