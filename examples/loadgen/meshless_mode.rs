//! `--mode meshless`: `meshless::http::Client` with the library's default policy, changed only
//! by the flags: `--timeout-ms` is its deadline, `--attempt-timeout-ms` its attempt timeout,
//! `--no-retry` sets `max_retries(0)`, `--idempotent` marks every request idempotent,
//! `--hedge` turns hedging on with its defaults, `--limit` sets a concurrency limit, `--no-breaker` turns the breaker off, `--throttle`
//! turns client-side throttling on.

use super::cli::{Args, LimitFlag};
use super::common::{EndpointReport, Outcome, Spec, deadline_after, finish};
use meshless::ConfigError;
use meshless::breaker::BreakerConfig;
use meshless::hedge::HedgeConfig;
use meshless::http::Client;
use meshless::limit::{AimdConfig, Algorithm, GradientConfig, LimitConfig};
use meshless::retry::Idempotency;
use meshless::throttle::ThrottleConfig;
use std::net::SocketAddr;
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
        let algorithm = match args.limit {
            LimitFlag::None => None,
            LimitFlag::Adaptive => Some(Algorithm::Gradient(GradientConfig::default())),
            LimitFlag::Aimd => Some(Algorithm::Aimd(AimdConfig::default())),
            LimitFlag::Fixed(max) => Some(Algorithm::Fixed { max }),
        };
        if let Some(algorithm) = algorithm {
            let mut limit = LimitConfig::default();
            limit.algorithm = algorithm;
            builder = builder.limit(limit);
        }
        if args.no_breaker {
            let mut breaker = BreakerConfig::default();
            breaker.enabled = false;
            builder = builder.breaker(breaker);
        }
        if args.hedge {
            builder = builder.hedge(HedgeConfig::default());
        }
        if args.throttle {
            let mut throttle = ThrottleConfig::default();
            throttle.enabled = true;
            builder = builder.throttle(throttle);
        }
        Ok(Meshless {
            client: builder.build()?,
        })
    }

    /// One logical request. The client's deadline bounds it up to the response head; what is
    /// left of the same deadline bounds reading the body.
    pub async fn send(&self, spec: &Spec) -> Outcome {
        let deadline = deadline_after(spec.timeout);
        // Through the `Service` impl rather than `Client::request`: the future of that async
        // fn is not provably `Send` inside `tokio::spawn` ("implementation of `Service` is not
        // general enough"), which the load workers need.
        match self.client.clone().oneshot(spec.request()).await {
            Ok(res) => finish(res, deadline, "deadline-exceeded").await,
            Err(e) => Outcome::Failed(e.kind().as_str()),
        }
    }

    /// Client-side attempts: every request that reached the retry layer, plus every retry
    /// and every hedge. A request the client shed (open circuit, full limit, throttling) sent
    /// nothing.
    pub fn attempts(&self) -> u64 {
        let retry = self.client.retry_stats();
        retry.requests()
            + retry.retries()
            + retry.stale_resends()
            + self.client.hedge_stats().hedges()
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
