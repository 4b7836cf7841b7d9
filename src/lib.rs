#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod balance;
pub mod budget;
pub mod classify;
pub mod deadline;
pub mod error;
pub mod http;
pub mod observe;
pub mod outlier;
pub mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{BoxError, ConfigError, Error};
