#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod chaos;
pub mod classify;
pub mod deadline;
pub mod error;
pub mod hedge;
pub mod http;
#[cfg(feature = "kube")]
pub mod kube;
pub mod limit;
pub mod observe;
pub mod outlier;
#[cfg(feature = "serde")]
pub mod policy;
mod primitives;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod retry;
pub mod route;
mod stack;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
#[cfg(feature = "tonic")]
pub mod tonic;

pub use error::{BoxError, ConfigError, Error};
/// Retry backoff: how long to wait before a retry (the doubling ladder ejections climb too).
pub use primitives::ladder as backoff;
