//! A client from a [`ClientConfig`]: the builder's settings as data (feature `serde`).

use super::ClientBuilder;
use crate::backoff::Backoff;
use crate::balance::BalanceBuilder;
use crate::budget::Budget;
use crate::error::ConfigError;
use crate::http::Client;
use crate::policy::ClientConfig;
use crate::stack::{LayerConfigs, Policies};
use std::path::Path;

impl ClientBuilder {
    /// A builder with every setting of `config`, once [`ClientConfig::validate`] accepts it
    /// (errors name the field's path, `retry.backoff.cap`). What a file cannot hold — a
    /// classifier, idempotency rules, a budget shared with other clients, TLS settings — is
    /// set on the builder after.
    ///
    /// ```
    /// use meshless::http::ClientBuilder;
    /// use meshless::policy::ClientConfig;
    ///
    /// let config = ClientConfig::from_toml_str(r#"
    ///     endpoints = ["127.0.0.1:8080"]
    ///     service_name = "payments"
    ///     [deadline]
    ///     timeout = "800ms"
    /// "#)?;
    /// let client = ClientBuilder::from_config(&config)?
    ///     .idempotency(meshless::retry::Idempotency::default().all(true))
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &ClientConfig) -> Result<ClientBuilder, ConfigError> {
        let c = config.clone().normalized()?;
        let base = c.clone();
        Ok(ClientBuilder {
            endpoints: c.endpoints,
            dns: c.dns,
            connect_timeout: c.connect_timeout,
            http2: c.http2_prior_knowledge,
            policies: Policies {
                service_name: c.service_name,
                metrics: c.metrics,
                deadline: c.deadline.timeout,
                body_idle_timeout: c.deadline.body_idle_timeout,
                attempt_timeout: c.attempt_timeout.timeout,
                budget: Some(Budget::from_config(&c.budget)?),
                max_retries: c.retry.max_retries,
                backoff: Backoff::from_config(&c.retry.backoff)?,
                defer_to_caller: c.retry.defer_to_caller,
                balance: BalanceBuilder::from_config(&c.balance)?,
                breaker: c.breaker,
                limit: c.limit,
                throttle: c.throttle,
                hedge: c.hedge,
                layer_configs: Some(LayerConfigs {
                    deadline: c.deadline,
                    attempt_header: c.attempt_timeout.deadline_header,
                    retry: c.retry,
                }),
                routes: c.routes.clone(),
                ..Policies::default()
            },
            config: Some(base),
            ..ClientBuilder::default()
        })
    }
}

impl Client {
    /// A client from a configuration file, its format named by its extension (`.toml`,
    /// `.yaml`, `.yml`, `.json`; see [`ClientConfig`]). Call it inside a tokio runtime when
    /// the file names a `dns` endpoint.
    ///
    /// ```no_run
    /// let client = meshless::http::Client::from_file("client.toml")?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Client, ConfigError> {
        ClientBuilder::from_config(&ClientConfig::from_file(path)?)?.build()
    }

    /// A client from TOML (see [`ClientConfig`]).
    ///
    /// ```
    /// let client = meshless::http::Client::from_toml_str("endpoints = ['127.0.0.1:8080']")?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Client, ConfigError> {
        ClientBuilder::from_config(&ClientConfig::from_toml_str(text)?)?.build()
    }

    /// A client from YAML (see [`ClientConfig`]).
    ///
    /// ```
    /// let client = meshless::http::Client::from_yaml_str("endpoints: ['127.0.0.1:8080']")?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_yaml_str(text: &str) -> Result<Client, ConfigError> {
        ClientBuilder::from_config(&ClientConfig::from_yaml_str(text)?)?.build()
    }

    /// A client from JSON (see [`ClientConfig`]).
    ///
    /// ```
    /// let client = meshless::http::Client::from_json_str(r#"{"endpoints": ["127.0.0.1:8080"]}"#)?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_json_str(text: &str) -> Result<Client, ConfigError> {
        ClientBuilder::from_config(&ClientConfig::from_json_str(text)?)?.build()
    }
}
