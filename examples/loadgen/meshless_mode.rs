//! `--mode meshless`: `meshless::http::Client` with the library's default policy, changed only
//! by the flags: `--timeout-ms` is its deadline, `--attempt-timeout-ms` its attempt timeout,
//! `--no-retry` sets `max_retries(0)`, `--idempotent` marks every request idempotent.

use super::cli::Args;
use super::common::{EndpointReport, Outcome, Spec, finish};
use meshless::ConfigError;
use meshless::http::Client;
use meshless::retry::Idempotency;
use std::net::SocketAddr;
use tokio::time::Instant;
use tower::ServiceExt;

pub struct Meshless {
    client: Client,
}

impl Meshless {
    pub fn new(addrs: &[SocketAddr], args: &Args) -> Result<Self, ConfigError> {
        let mut builder = Client::builder()
            .endpoints(addrs.iter().map(ToString::to_string))
            .deadline(args.timeout);
        if let Some(attempt) = args.attempt_timeout {
            builder = builder.attempt_timeout(attempt);
        }
        if args.no_retry {
            builder = builder.max_retries(0);
        }
        if args.idempotent {
            builder = builder.idempotency(Idempotency::default().all(true));
        }
        Ok(Meshless {
            client: builder.build()?,
        })
    }

    /// One logical request. The client's deadline bounds it up to the response head; what is
    /// left of the same deadline bounds reading the body.
    pub async fn send(&self, spec: &Spec) -> Outcome {
        let deadline = Instant::now() + spec.timeout;
        // Through the `Service` impl rather than `Client::request`: the future of that async
        // fn is not provably `Send` inside `tokio::spawn` ("implementation of `Service` is not
        // general enough"), which the load workers need.
        match self.client.clone().oneshot(spec.request()).await {
            Ok(res) => finish(res, deadline, "deadline-exceeded").await,
            Err(e) => Outcome::Failed(e.kind().as_str()),
        }
    }

    /// Client-side attempts: every request that reached the retry layer, plus every retry.
    /// A request the client shed (open circuit, full limit, throttling) sent nothing.
    pub fn attempts(&self) -> u64 {
        let retry = self.client.retry_stats();
        retry.requests() + retry.retries()
    }

    pub fn endpoints(&self) -> Vec<EndpointReport> {
        self.client
            .endpoints()
            .into_iter()
            .map(|e| EndpointReport {
                addr: e.key,
                requests: e.requests,
                failures: e.failures,
                ejections: e.ejections,
            })
            .collect()
    }
}
