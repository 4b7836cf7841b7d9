//! The deadline layers' settings as plain data, checked in one place.

use super::{AttemptTimeoutLayer, DEADLINE_HEADER, DeadlineLayer};
use crate::error::ConfigError;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// A deadline layer's header name and extra streaming types, in the form it keeps them.
type Checked = (HeaderName, Option<Arc<[HeaderValue]>>);

/// The settings of a [`DeadlineLayer`] as plain data: what a configuration file describes.
///
/// `Default` gives the documented defaults; [`validate`](Self::validate) is the one place the
/// fields are checked, and [`DeadlineLayer::from_config`] calls it.
///
/// | field | default | valid | edge values |
/// |---|---|---|---|
/// | `timeout` | 10 s (the client's deadline) | > 0 | `Duration::MAX` = no deadline |
/// | `honor_inbound` | `false` | any | |
/// | `header` | [`DEADLINE_HEADER`] | an HTTP header name | |
/// | `body_idle_timeout` | `None` (the deadline covers the body; a stream's is the deadline's length) | `None` or > 0 | `Some(Duration::MAX)` = no idle limit |
/// | `streaming_content_types` | none beyond `text/event-stream` | each `type/subtype`, no parameters | |
///
/// ```
/// use meshless::deadline::{DeadlineConfig, DeadlineLayer};
/// use std::time::Duration;
///
/// let mut config = DeadlineConfig::default();
/// config.timeout = Duration::from_secs(2);
/// config.streaming_content_types = vec!["application/x-ndjson".into()];
/// let layer = DeadlineLayer::from_config(&config)?;
/// assert_eq!(layer.config(), config);
///
/// config.streaming_content_types.push("not a type".into());
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.to_string().split(':').next(), Some("invalid deadline.streaming_content_types[1]"));
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct DeadlineConfig {
    /// The total time a request may take, retries, backoff and response body included.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub timeout: Duration,
    /// Whether a deadline the request arrives with (`grpc-timeout`, `header`) may shorten it.
    pub honor_inbound: bool,
    /// The HTTP header read by `honor_inbound`: whole milliseconds remaining.
    pub header: String,
    /// The longest wait for the next response-body frame.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration::optional"))]
    pub body_idle_timeout: Option<Duration>,
    /// Content types treated as streams, beyond `text/event-stream`.
    pub streaming_content_types: Vec<String>,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig {
            timeout: Duration::from_secs(10),
            honor_inbound: false,
            header: DEADLINE_HEADER.to_string(),
            body_idle_timeout: None,
            streaming_content_types: Vec::new(),
        }
    }
}

impl DeadlineConfig {
    /// Checks every field, naming the first bad one (`deadline.timeout`, `deadline.header`,
    /// `deadline.body_idle_timeout`, `deadline.streaming_content_types` with its index).
    ///
    /// ```
    /// let mut config = meshless::deadline::DeadlineConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.timeout = std::time::Duration::ZERO;
    /// assert_eq!(config.validate().unwrap_err().setting(), "deadline.timeout");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    /// The header name and the streaming types in the form the layer keeps them.
    fn checked(&self) -> Result<Checked, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "deadline.timeout",
                "0ns would fail every request before it starts (Duration::MAX is no deadline)",
            ));
        }
        let header = header_name("deadline.header", &self.header)?;
        if self.body_idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "deadline.body_idle_timeout",
                "0ns would fail every body that waits for a frame (None is no idle limit)",
            ));
        }
        let mut types = Vec::with_capacity(self.streaming_content_types.len());
        for (i, text) in self.streaming_content_types.iter().enumerate() {
            types.push(media_type(i, text)?);
        }
        let types = (!types.is_empty()).then(|| Arc::from(types));
        Ok((header, types))
    }
}

/// A header name, or an error naming `setting`.
fn header_name(setting: &'static str, text: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| ConfigError::new(setting, format!("{text:?} is not an HTTP header name")))
}

/// A `type/subtype` media type, as the streaming rule compares it with a response's.
fn media_type(index: usize, text: &str) -> Result<HeaderValue, ConfigError> {
    const SETTING: &str = "deadline.streaming_content_types";
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match text.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => {
            HeaderValue::from_str(text).map_err(|_| {
                ConfigError::at(SETTING, index, format!("{text:?} is not a header value"))
            })
        }
        _ => Err(ConfigError::at(
            SETTING,
            index,
            format!("{text:?} is not a media type (type/subtype, without parameters)"),
        )),
    }
}

impl DeadlineLayer {
    /// A deadline layer with these settings, once [`DeadlineConfig::validate`] accepts them.
    ///
    /// ```
    /// use meshless::deadline::{DeadlineConfig, DeadlineLayer};
    /// let layer = DeadlineLayer::from_config(&DeadlineConfig::default())?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &DeadlineConfig) -> Result<Self, ConfigError> {
        let (header, streaming_types) = config.checked()?;
        Ok(DeadlineLayer {
            timeout: config.timeout,
            honor_inbound: config.honor_inbound,
            header,
            body_idle: config.body_idle_timeout,
            streaming_types,
            routes: Default::default(),
        })
    }

    /// The settings of this layer, as plain data (a content type that is not text reads with
    /// its bytes replaced, as [`String::from_utf8_lossy`] does).
    ///
    /// ```
    /// use meshless::deadline::{DeadlineConfig, DeadlineLayer};
    /// let layer = DeadlineLayer::new(std::time::Duration::from_secs(10));
    /// assert_eq!(layer.config(), DeadlineConfig::default());
    /// ```
    pub fn config(&self) -> DeadlineConfig {
        DeadlineConfig {
            timeout: self.timeout,
            honor_inbound: self.honor_inbound,
            header: self.header.as_str().to_string(),
            body_idle_timeout: self.body_idle,
            streaming_content_types: self
                .streaming_types
                .iter()
                .flat_map(|types| types.iter())
                .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
                .collect(),
        }
    }
}

/// The settings of an [`AttemptTimeoutLayer`] as plain data: what a configuration file
/// describes.
///
/// `Default` is [`AttemptTimeoutLayer::deadline_only`]: no per-attempt limit, no HTTP header.
/// ([`http::Client`](crate::http::Client) sets the limit to its deadline ÷ (retries + 1).)
///
/// | field | default | valid | edge values |
/// |---|---|---|---|
/// | `timeout` | `None`: the request's deadline alone | `None` or > 0 | `Some(Duration::MAX)` = no per-attempt limit |
/// | `deadline_header` | `None`: only gRPC requests carry their limit | `None` or an HTTP header name | |
///
/// ```
/// use meshless::deadline::{AttemptTimeoutConfig, AttemptTimeoutLayer, DEADLINE_HEADER};
/// use std::time::Duration;
///
/// let mut config = AttemptTimeoutConfig::default();
/// config.timeout = Some(Duration::from_millis(300));
/// config.deadline_header = Some(DEADLINE_HEADER.into());
/// let layer = AttemptTimeoutLayer::from_config(&config)?;
/// assert_eq!(layer.config(), config);
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct AttemptTimeoutConfig {
    /// The longest one attempt may take (never past the request's deadline).
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration::optional"))]
    pub timeout: Option<Duration>,
    /// The HTTP header that tells the server the attempt's limit, in whole milliseconds.
    pub deadline_header: Option<String>,
}

impl AttemptTimeoutConfig {
    /// Checks every field, naming the first bad one (`attempt.timeout`,
    /// `attempt.deadline_header`).
    ///
    /// ```
    /// let mut config = meshless::deadline::AttemptTimeoutConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.deadline_header = Some("no spaces".into());
    /// assert_eq!(config.validate().unwrap_err().setting(), "attempt.deadline_header");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    fn checked(&self) -> Result<Option<HeaderName>, ConfigError> {
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "attempt.timeout",
                "0ns would start no attempt (None is the deadline alone)",
            ));
        }
        self.deadline_header
            .as_deref()
            .map(|name| header_name("attempt.deadline_header", name))
            .transpose()
    }
}

impl AttemptTimeoutLayer {
    /// An attempt timeout layer with these settings, once [`AttemptTimeoutConfig::validate`]
    /// accepts them.
    ///
    /// ```
    /// use meshless::deadline::{AttemptTimeoutConfig, AttemptTimeoutLayer};
    /// let layer = AttemptTimeoutLayer::from_config(&AttemptTimeoutConfig::default())?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &AttemptTimeoutConfig) -> Result<Self, ConfigError> {
        let header = config.checked()?;
        Ok(AttemptTimeoutLayer {
            timeout: config.timeout,
            header,
            routes: Default::default(),
            overruns: None,
        })
    }

    /// The settings of this layer, as plain data.
    ///
    /// ```
    /// use meshless::deadline::{AttemptTimeoutConfig, AttemptTimeoutLayer};
    /// assert_eq!(AttemptTimeoutLayer::deadline_only().config(), AttemptTimeoutConfig::default());
    /// ```
    pub fn config(&self) -> AttemptTimeoutConfig {
        AttemptTimeoutConfig {
            timeout: self.timeout,
            deadline_header: self.header.as_ref().map(|h| h.as_str().to_string()),
        }
    }
}
