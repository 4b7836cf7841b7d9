//! The builder's protection settings: the circuit breaker, the concurrency limit and
//! client-side throttling, which sit outside the retry layer.

use super::ClientBuilder;
use crate::breaker::BreakerConfig;

impl ClientBuilder {
    /// The circuit breaker's settings (default [`BreakerConfig::default`]: on, opening when
    /// half the requests of the last 10 s failed, at least 20 of them). It sits outside the
    /// retry layer: it judges each request by its final outcome, and an open circuit spends no
    /// retry budget. Checked by [`build`](Self::build), which names a bad field as
    /// `breaker.<field>`. Turn it off with `enabled = false`; control it through
    /// [`Client::breaker`](crate::http::Client::breaker).
    ///
    /// ```
    /// use meshless::breaker::BreakerConfig;
    /// use std::time::Duration;
    ///
    /// let mut breaker = BreakerConfig::default();
    /// breaker.break_duration = Duration::from_secs(5);
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .breaker(breaker)
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }
}
