//! The settings compiled for the hot path, the seeded draws and the counts of what was injected.

use super::config::{ChaosConfig, DEFAULT_ERROR_STATUS, DEFAULT_GRPC_CODE, Faults, MAX_DELAY};
use super::telemetry::Telemetry;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A kind of fault the layer injects.
///
/// ```
/// use meshless::chaos::Fault;
/// assert_eq!(Fault::Reset.as_str(), "reset");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// A delay before the request goes on.
    Delay,
    /// An error response instead of the inner service's answer.
    Error,
    /// A connection reset: the request may have been processed, as far as the client knows.
    Reset,
    /// A refused connection: the request was never sent.
    Refused,
}

impl Fault {
    /// A short, stable name, used as the `fault` metric label.
    ///
    /// ```
    /// assert_eq!(meshless::chaos::Fault::Delay.as_str(), "delay");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Delay => "delay",
            Fault::Error => "error",
            Fault::Reset => "reset",
            Fault::Refused => "refused",
        }
    }
}

/// How many requests the faults could have hit, and how many of each fault were injected.
///
/// ```
/// let counts = meshless::chaos::ChaosCounts::default();
/// assert_eq!(counts.requests, 0);
/// assert_eq!(counts.injected(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosCounts {
    /// Requests that matched faults with some rate above 0 (and so drew their faults).
    pub requests: u64,
    /// Requests delayed.
    pub delays: u64,
    /// Requests answered by an injected error response.
    pub errors: u64,
    /// Requests failed as a reset connection.
    pub resets: u64,
    /// Requests failed as a refused connection.
    pub refusals: u64,
}

impl ChaosCounts {
    /// Requests that were not passed on to the inner service: errors, resets and refusals
    /// (a delayed request is passed on, later).
    ///
    /// ```
    /// let mut counts = meshless::chaos::ChaosCounts::default();
    /// counts.errors = 2;
    /// counts.resets = 1;
    /// assert_eq!(counts.injected(), 3);
    /// ```
    pub fn injected(&self) -> u64 {
        self.errors + self.resets + self.refusals
    }
}

/// One request's outcome fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Error,
    Reset,
    Refused,
}

/// What the draws decided for one request.
#[derive(Debug)]
pub(crate) struct Decision<'a> {
    pub(crate) delay: Option<Duration>,
    pub(crate) outcome: Outcome,
    pub(crate) faults: &'a Compiled,
}

/// One set of faults, with its thresholds and its error response ready.
#[derive(Debug)]
pub(crate) struct Compiled {
    delay_rate: f64,
    delay: Duration,
    jitter_nanos: u64,
    /// Cumulative thresholds of the outcome draw: error below the first, reset below the
    /// second, refused below the third.
    error_below: f64,
    reset_below: f64,
    refuse_below: f64,
    pub(crate) status: StatusCode,
    pub(crate) grpc_code: HeaderValue,
    pub(crate) headers: HeaderMap,
    active: bool,
}

/// A rule's matcher and faults.
#[derive(Debug)]
struct Rule {
    method: Option<Method>,
    path_prefix: Option<Box<str>>,
    faults: Compiled,
}

/// Every service of a layer shares one plan: its rules, draws and counts.
#[derive(Debug)]
pub(crate) struct Plan {
    rules: Vec<Rule>,
    default: Compiled,
    seed: u64,
    /// The index of the next request's draws: requests draw in the order they are called.
    next: AtomicU64,
    delays: AtomicU64,
    errors: AtomicU64,
    resets: AtomicU64,
    refusals: AtomicU64,
    pub(crate) telemetry: OnceLock<Telemetry>,
}

impl Plan {
    /// The plan of an active config, `None` when it would inject nothing. Values that
    /// [`ChaosConfig::validate`] refuses are clamped or dropped: that is where they are checked.
    pub(crate) fn new(config: &ChaosConfig, seed: u64) -> Option<Plan> {
        if !config.is_active() {
            return None;
        }
        let rules = config
            .rules
            .iter()
            .map(|rule| Rule {
                method: rule
                    .method
                    .as_ref()
                    .and_then(|m| Method::from_bytes(m.as_bytes()).ok()),
                path_prefix: rule.path_prefix.as_deref().map(Box::from),
                faults: Compiled::new(&rule.faults),
            })
            .collect();
        Some(Plan {
            rules,
            default: Compiled::new(&config.faults),
            seed,
            next: AtomicU64::new(0),
            delays: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            telemetry: OnceLock::new(),
        })
    }

    /// The faults of this request: its rule's draws, or `None` when its faults are all off.
    pub(crate) fn decide<B>(&self, req: &Request<B>) -> Option<Decision<'_>> {
        let faults = self.faults_for(req);
        if !faults.active {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let delay = (self.draw(n, 0) < faults.delay_rate).then(|| {
            let extra = (self.draw(n, 1) * (faults.jitter_nanos as f64)) as u64;
            faults.delay.saturating_add(Duration::from_nanos(extra))
        });
        let u = self.draw(n, 2);
        let outcome = if u < faults.error_below {
            Outcome::Error
        } else if u < faults.reset_below {
            Outcome::Reset
        } else if u < faults.refuse_below {
            Outcome::Refused
        } else {
            Outcome::Pass
        };
        self.count(delay.is_some(), outcome);
        Some(Decision {
            delay,
            outcome,
            faults,
        })
    }

    fn faults_for<B>(&self, req: &Request<B>) -> &Compiled {
        for rule in &self.rules {
            let method = rule.method.as_ref().is_none_or(|m| m == req.method());
            let path = rule
                .path_prefix
                .as_deref()
                .is_none_or(|p| req.uri().path().starts_with(p));
            if method && path {
                return &rule.faults;
            }
        }
        &self.default
    }

    fn count(&self, delayed: bool, outcome: Outcome) {
        let telemetry = self.telemetry.get();
        if delayed {
            self.delays.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = telemetry {
                t.injected(Fault::Delay);
            }
        }
        let (counter, fault) = match outcome {
            Outcome::Pass => return,
            Outcome::Error => (&self.errors, Fault::Error),
            Outcome::Reset => (&self.resets, Fault::Reset),
            Outcome::Refused => (&self.refusals, Fault::Refused),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = telemetry {
            t.injected(fault);
        }
    }

    /// The `k`-th uniform draw in `[0, 1)` of request `n`: a SplitMix64 hash of the seed and
    /// the position, so that a request's draws depend only on the seed and its call order,
    /// never on how the requests that came before it ended.
    fn draw(&self, n: u64, k: u64) -> f64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let position = n.wrapping_mul(3).wrapping_add(k).wrapping_add(1);
        let mut z = self.seed.wrapping_add(position.wrapping_mul(GAMMA));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits: every value a double holds exactly in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn counts(&self) -> ChaosCounts {
        ChaosCounts {
            requests: self.next.load(Ordering::Relaxed),
            delays: self.delays.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
        }
    }
}

/// A rate as the draws use it: within `[0, 1]`, a NaN as 0.
fn rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

impl Compiled {
    fn new(faults: &Faults) -> Compiled {
        let error_below = rate(faults.error_rate);
        let reset_below = (error_below + rate(faults.reset_rate)).min(1.0);
        let refuse_below = (reset_below + rate(faults.refuse_rate)).min(1.0);
        let delay = faults.delay.min(MAX_DELAY);
        let jitter = faults.delay_jitter.min(MAX_DELAY.saturating_sub(delay));
        let status = if (400..=599).contains(&faults.error_status) {
            faults.error_status
        } else {
            DEFAULT_ERROR_STATUS
        };
        let code = if (1..=16).contains(&faults.error_grpc_code) {
            faults.error_grpc_code
        } else {
            DEFAULT_GRPC_CODE
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &faults.error_headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        Compiled {
            delay_rate: rate(faults.delay_rate),
            delay,
            jitter_nanos: u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX),
            error_below,
            reset_below,
            refuse_below,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            grpc_code: HeaderValue::from(code),
            headers,
            active: faults.is_active(),
        }
    }
}
