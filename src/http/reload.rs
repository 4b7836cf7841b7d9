//! Swapping a running client's routes and per-request policies.

use super::client::Client;
use crate::error::ConfigError;
use crate::route::{Route, Routing};
use std::sync::{Arc, Mutex};

/// What a reload swaps, and what the next one starts from.
#[derive(Debug)]
pub(crate) struct Reload {
    /// Matches each request before the stack.
    pub(super) routing: Arc<Routing>,
    /// Held through a reload, so that two never interleave.
    applied: Mutex<Applied>,
}

#[derive(Debug)]
struct Applied {
    routes: Vec<Route>,
    /// The configuration in force, when the client was made from one: a reload may change
    /// only what it can apply.
    #[cfg(feature = "serde")]
    config: Option<crate::policy::ClientConfig>,
}

impl Reload {
    pub(crate) fn new(routing: Arc<Routing>, routes: Vec<Route>) -> Reload {
        Reload {
            routing,
            applied: Mutex::new(Applied {
                routes,
                #[cfg(feature = "serde")]
                config: None,
            }),
        }
    }

    #[cfg(feature = "serde")]
    pub(crate) fn compared_with(self, config: Option<crate::policy::ClientConfig>) -> Reload {
        let mut applied = self.applied.into_inner().unwrap_or_else(|e| e.into_inner());
        applied.config = config;
        Reload {
            routing: self.routing,
            applied: Mutex::new(applied),
        }
    }
}

impl Client {
    /// Replaces the client's routes (see [`crate::route`]) for the requests sent from now
    /// on, keeping its other settings. Checked first: a bad route changes nothing and comes
    /// back as a [`ConfigError`] naming it (`routes[1].match.path_prefix`). Requests in
    /// flight finish with the policies they started with; endpoints, their measurements and
    /// ejections, the budget, the breaker and the limit are untouched.
    ///
    /// ```
    /// use meshless::route::Route;
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build()?;
    /// client.reload_routes([Route::path_prefix("/v1/reports").max_retries(0)])?;
    /// let err = client.reload_routes([Route::path_prefix("reports")]).unwrap_err();
    /// assert_eq!(err.path(), "routes[0].match.path_prefix");
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn reload_routes(
        &self,
        routes: impl IntoIterator<Item = Route>,
    ) -> Result<(), ConfigError> {
        let routes: Vec<Route> = routes.into_iter().collect();
        let mut applied = self.lock();
        self.reload.routing.reload_routes(&routes)?;
        applied.routes = routes;
        Ok(())
    }

    /// The routes in force: those the client was built with, or the last reloaded.
    ///
    /// ```
    /// use meshless::route::Route;
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build()?;
    /// client.reload_routes([Route::any().max_retries(1)])?;
    /// assert_eq!(client.routes().len(), 1);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn routes(&self) -> Vec<Route> {
        self.lock().routes.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Applied> {
        // A poisoned lock only says a reload panicked midway: what it guards is whole, since
        // each field is written after the swap succeeded.
        self.reload
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(feature = "serde")]
mod from_config {
    use super::*;
    use crate::policy::ClientConfig;
    use std::path::Path;

    impl Client {
        /// Applies a new configuration to the running client: its routes and the client's
        /// own deadline, attempt timeout, retries and hedging (on or off, count, a fixed
        /// delay), for the requests sent from now on. One snapshot is swapped whole; requests
        /// in flight finish under the one they started with. Endpoint state (measurements,
        /// ejections, connections), budget tokens, the breaker's and the limit's state are
        /// kept.
        ///
        /// Checked first, as a new client's would be: a bad value changes nothing and comes
        /// back as a [`ConfigError`] naming its path. A client made from a configuration
        /// ([`Client::from_file`], [`ClientBuilder::from_config`](crate::http::ClientBuilder::from_config))
        /// also refuses a change it cannot apply without a new client, naming the setting
        /// (`endpoints`, `balance.outlier.interval`, `hedge.max_extra_load`, …) with
        /// [`setting`](ConfigError::setting) `"reload"`. A client built in code has no
        /// configuration to compare a new one with: it refuses this call (setting `"reload"`),
        /// rather than take a file's defaults for the settings it was built with; reload its
        /// routes with [`reload_routes`](Self::reload_routes). Reloadable: `routes`, `deadline.timeout`, `attempt_timeout.timeout`,
        /// `retry.max_retries`, `hedge` on or off, `hedge.max_hedges`, a fixed `hedge.delay`.
        ///
        /// ```
        /// use meshless::http::Client;
        /// use meshless::policy::ClientConfig;
        ///
        /// let text = "endpoints = ['127.0.0.1:1']";
        /// let client = Client::from_toml_str(text)?;
        /// let mut config = ClientConfig::from_toml_str(text)?;
        /// config.retry.max_retries = 0;
        /// client.reload(&config)?;
        ///
        /// config.endpoints.push("127.0.0.1:2".into());
        /// assert_eq!(client.reload(&config).unwrap_err().path(), "endpoints");
        /// # Ok::<(), meshless::ConfigError>(())
        /// ```
        pub fn reload(&self, config: &ClientConfig) -> Result<(), ConfigError> {
            let config = config.clone().normalized()?;
            let mut applied = self.lock();
            let Some(old) = &applied.config else {
                return Err(ConfigError::new(
                    "reload",
                    "a client built in code has no configuration to compare a new one with: \
                     reload its routes (`reload_routes`), or build it from a configuration",
                ));
            };
            if let Some(path) = crate::policy::unreloadable(old, &config) {
                return Err(ConfigError::new(
                    "reload",
                    "cannot change on a running client: build a new one for it",
                )
                .placed(path));
            }
            let defaults = crate::policy::route_defaults(&config);
            self.reload.routing.reload(&config.routes, &defaults)?;
            applied.routes = config.routes.clone();
            applied.config = Some(config);
            Ok(())
        }

        /// [`reload`](Self::reload) from a file, its format named by its extension.
        ///
        /// ```
        /// let client = meshless::http::Client::from_toml_str("endpoints = ['127.0.0.1:1']")?;
        /// let err = client.reload_file("missing.toml").unwrap_err();
        /// assert_eq!(err.setting(), "file");
        /// # Ok::<(), meshless::ConfigError>(())
        /// ```
        pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
            self.reload(&ClientConfig::from_file(path)?)
        }
    }
}
