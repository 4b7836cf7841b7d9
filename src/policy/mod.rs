//! Policies as data (feature `serde`): every layer's settings, and a whole
//! [`http::Client`](crate::http::Client), read from TOML, YAML or JSON; a gRPC service config
//! imported into them.
//!
//! Each layer's config struct ([`RetryConfig`](crate::retry::RetryConfig),
//! [`BudgetConfig`](crate::budget::BudgetConfig), [`DeadlineConfig`](crate::deadline::DeadlineConfig),
//! [`BreakerConfig`](crate::breaker::BreakerConfig), …) deserializes with its own field names
//! (snake_case), every missing field taking its documented default and every unknown field
//! refused. [`ClientConfig`] gathers them into one client. Loading checks everything, and a bad
//! value comes back as a [`ConfigError`](crate::ConfigError) whose [`path`](crate::ConfigError::path) says where it is in
//! the file: `retry.backoff.base`, `balance.outlier.interval`, `deadline.streaming_content_types[1]`.
//!
//! Value shapes, the same in the three formats:
//!
//! | kind | written | examples |
//! |---|---|---|
//! | duration | a string with its unit: `ns`, `us`, `ms`, `s`, `m`, `h`; decimals and sums allowed | `"250ms"`, `"2s"`, `"1m"`, `"0.25s"`, `"1m30s"` |
//! | optional setting that is on by default | the setting, or `"off"` | `slow_call_duration = "off"`, `success_rate = "off"` |
//! | choice with settings | a table named by the choice | `algorithm = { fixed = { max = 64 } }`, `algorithm = "unlimited"` |
//!
//! ```
//! use meshless::policy::ClientConfig;
//! use std::time::Duration;
//!
//! let config = ClientConfig::from_toml_str(r#"
//!     endpoints = ["127.0.0.1:8080"]
//!     [deadline]
//!     timeout = "800ms"
//!     [retry]
//!     max_retries = 3
//!     backoff = { base = "0.05s", cap = "1s" }
//! "#)?;
//! assert_eq!(config.deadline.timeout, Duration::from_millis(800));
//! assert_eq!(config.retry.backoff.base, Duration::from_millis(50));
//!
//! let err = ClientConfig::from_toml_str(r#"
//!     endpoints = ["127.0.0.1:8080"]
//!     [retry.backoff]
//!     base = "1m"
//!     cap = "1s"
//! "#).unwrap_err();
//! assert_eq!(err.path(), "retry.backoff.cap");
//! # Ok::<(), meshless::ConfigError>(())
//! ```

pub(crate) mod choice;
mod client;
pub(crate) mod duration;
mod grpc;
mod load;
pub(crate) mod optional;
mod place;
mod reload;
mod route;

pub use self::client::ClientConfig;
pub use self::duration::{format_duration, parse_duration};
pub use self::grpc::{GrpcMethodName, GrpcMethodPolicy, GrpcServiceConfig};
pub use self::load::Format;
pub(crate) use self::reload::{route_defaults, unreloadable};

/// How a setting that can be turned off is written off.
pub(crate) const OFF: &str = "off";

/// Whether `text` turns an optional setting off.
pub(crate) fn is_off(text: &str) -> bool {
    matches!(text, "off" | "none")
}
