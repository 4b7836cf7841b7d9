//! How a backend behaves: its latency and the share of requests it fails, and how.

use http::{HeaderValue, StatusCode};
use rand::{Rng, RngExt};
use std::time::Duration;

/// How a backend treats each request, for as long as the behavior is in force.
///
/// Start from [`Behavior::healthy`] (answers every request `200 ok` at once) and add faults, or
/// take [`Behavior::down`] (the port refuses connections). The faults are shares of all
/// requests, drawn independently for each request and taken in this order: a
/// [reset](Behavior::resets), a [hang](Behavior::hangs), an [error](Behavior::errors). Shares
/// are clamped to `0.0..=1.0` (NaN counts as 0); if they add up to more than 1, the later
/// faults get what is left. So `1.0` always happens and `0.0` never does, which keeps tests
/// deterministic.
///
/// Every request that is answered or reset first waits for its [latency](Behavior::latency).
///
/// ```
/// use http::{HeaderValue, StatusCode};
/// use meshless::testing::{Behavior, Latency};
/// use std::time::Duration;
///
/// // A struggling backend: slow, 8% 503, 3% dropped connections, 2% never answered.
/// let flaky = Behavior::healthy()
///     .latency(Latency::lognormal(Duration::from_millis(5), Duration::from_millis(80)))
///     .errors(0.08, StatusCode::SERVICE_UNAVAILABLE)
///     .resets(0.03)
///     .hangs(0.02);
///
/// // A backend shedding load: every request gets 429 with `Retry-After: 1`.
/// let throttled = Behavior::healthy()
///     .errors(1.0, StatusCode::TOO_MANY_REQUESTS)
///     .retry_after(HeaderValue::from_static("1"));
/// # let _ = (flaky, throttled);
/// ```
#[derive(Clone, Debug)]
pub struct Behavior {
    down: bool,
    latency: Latency,
    reset_share: f64,
    hang_share: f64,
    error_share: f64,
    error_status: StatusCode,
    retry_after: Option<HeaderValue>,
    body_size: u64,
}

impl Behavior {
    /// Answers every request at once with `200` and the body `ok`.
    ///
    /// ```
    /// use meshless::testing::Behavior;
    ///
    /// let healthy = Behavior::healthy();
    /// assert!(!healthy.is_down());
    /// ```
    pub fn healthy() -> Behavior {
        Behavior {
            down: false,
            latency: Latency::none(),
            reset_share: 0.0,
            hang_share: 0.0,
            error_share: 0.0,
            error_status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None,
            body_size: 2, // "ok"
        }
    }

    /// The backend is down: its port refuses connections, and the connections it had are
    /// reset. When a later behavior is up again, the backend listens again on the same
    /// address.
    ///
    /// ```
    /// use meshless::testing::Behavior;
    ///
    /// assert!(Behavior::down().is_down());
    /// ```
    pub fn down() -> Behavior {
        Behavior {
            down: true,
            ..Behavior::healthy()
        }
    }

    /// Delays every answer (and every reset) by a sample of `latency`.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Latency};
    /// use std::time::Duration;
    ///
    /// let slow = Behavior::healthy().latency(Latency::fixed(Duration::from_millis(50)));
    /// # let _ = slow;
    /// ```
    pub fn latency(mut self, latency: Latency) -> Behavior {
        self.latency = latency;
        self
    }

    /// Answers a `share` of requests with `status` (and an empty body) instead of `200`.
    ///
    /// A 1xx status cannot end a request; it is answered as `500`, which is what hyper would
    /// put on the wire anyway.
    ///
    /// ```
    /// use http::StatusCode;
    /// use meshless::testing::Behavior;
    ///
    /// let half = Behavior::healthy().errors(0.5, StatusCode::SERVICE_UNAVAILABLE);
    /// # let _ = half;
    /// ```
    pub fn errors(mut self, share: f64, status: StatusCode) -> Behavior {
        self.error_share = clamp_share(share);
        self.error_status = if status.is_informational() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        self
    }

    /// Adds a `Retry-After` header with this value to every error answer: seconds (`"2"`) or
    /// an HTTP date, as the server wants the client to read it.
    ///
    /// ```
    /// use http::{HeaderValue, StatusCode};
    /// use meshless::testing::Behavior;
    ///
    /// let throttled = Behavior::healthy()
    ///     .errors(1.0, StatusCode::TOO_MANY_REQUESTS)
    ///     .retry_after(HeaderValue::from_static("2"));
    /// # let _ = throttled;
    /// ```
    pub fn retry_after(mut self, value: HeaderValue) -> Behavior {
        self.retry_after = Some(value);
        self
    }

    /// Resets the connection of a `share` of requests instead of answering them.
    ///
    /// The backend drops the connection with `SO_LINGER` 0, so the kernel sends a TCP RST:
    /// the client sees an error for that request (hyper-util's legacy client reports a
    /// connection error such as "connection reset by peer" or "connection closed before
    /// message completed"). Every other request in flight on that connection fails with it,
    /// HTTP/2 streams included, as when a real server crashes.
    ///
    /// ```
    /// use meshless::testing::Behavior;
    ///
    /// let crashing = Behavior::healthy().resets(0.03);
    /// # let _ = crashing;
    /// ```
    pub fn resets(mut self, share: f64) -> Behavior {
        self.reset_share = clamp_share(share);
        self
    }

    /// Never answers a `share` of requests. Their connection stays open (other requests on it
    /// still work over HTTP/2; an HTTP/1.1 connection is stuck behind the hung request), until
    /// the client gives up, the backend goes down, or the fleet shuts down.
    ///
    /// ```
    /// use meshless::testing::Behavior;
    ///
    /// let black_hole = Behavior::healthy().hangs(1.0);
    /// # let _ = black_hole;
    /// ```
    pub fn hangs(mut self, share: f64) -> Behavior {
        self.hang_share = clamp_share(share);
        self
    }

    /// The size in bytes of each `200` answer's body (2 by default: `ok`). Bodies are streamed
    /// from one static buffer, so any size costs no memory.
    ///
    /// ```
    /// use meshless::testing::Behavior;
    ///
    /// let heavy = Behavior::healthy().body_size(64 * 1024);
    /// # let _ = heavy;
    /// ```
    pub fn body_size(mut self, bytes: u64) -> Behavior {
        self.body_size = bytes;
        self
    }

    /// Whether this behavior takes the backend down.
    ///
    /// ```
    /// use meshless::testing::Behavior;
    ///
    /// assert!(Behavior::down().is_down());
    /// assert!(!Behavior::healthy().hangs(1.0).is_down());
    /// ```
    pub fn is_down(&self) -> bool {
        self.down
    }

    pub(crate) fn latency_of(&self) -> &Latency {
        &self.latency
    }

    pub(crate) fn error_status(&self) -> StatusCode {
        self.error_status
    }

    pub(crate) fn retry_after_value(&self) -> Option<&HeaderValue> {
        self.retry_after.as_ref()
    }

    pub(crate) fn body_len(&self) -> u64 {
        self.body_size
    }

    /// Decides what happens to one request.
    pub(crate) fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Fault {
        // The common, fault-free case draws no random number at all.
        if self.reset_share + self.hang_share + self.error_share == 0.0 {
            return Fault::None;
        }
        // One uniform draw in [0, 1), cut into consecutive intervals: a share of 1.0 covers
        // every draw and 0.0 none, exactly.
        let u: f64 = rng.random();
        let mut edge = self.reset_share;
        if u < edge {
            return Fault::Reset;
        }
        edge += self.hang_share;
        if u < edge {
            return Fault::Hang;
        }
        edge += self.error_share;
        if u < edge {
            return Fault::Error;
        }
        Fault::None
    }
}

/// Same as [`Behavior::healthy`].
///
/// ```
/// use meshless::testing::Behavior;
///
/// assert!(!Behavior::default().is_down());
/// ```
impl Default for Behavior {
    fn default() -> Behavior {
        Behavior::healthy()
    }
}

/// What a behavior decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Reset,
    Hang,
    Error,
}

fn clamp_share(share: f64) -> f64 {
    if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    }
}

/// How long a backend waits before it answers: nothing, a fixed delay, or a log-normal delay.
///
/// A log-normal distribution is the usual model of service latency: most answers near the
/// median, a long tail to the right. It is given by the two numbers people quote, the median
/// and the 99th percentile.
///
/// ```
/// use meshless::testing::Latency;
/// use std::time::Duration;
///
/// let none = Latency::none();
/// let fixed = Latency::fixed(Duration::from_millis(20));
/// let tail = Latency::lognormal(Duration::from_millis(10), Duration::from_millis(200));
/// assert_eq!(fixed.sample(), Duration::from_millis(20));
/// # let _ = (none, tail);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency(Shape);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    None,
    Fixed(Duration),
    /// `exp(N(mu, sigma²))` seconds.
    LogNormal {
        mu: f64,
        sigma: f64,
    },
}

/// The 99th percentile of the standard normal distribution.
const Z_99: f64 = 2.326_347_874_040_841;

impl Latency {
    /// No delay: the answer is sent as soon as the request is read.
    ///
    /// ```
    /// use meshless::testing::Latency;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Latency::none().sample(), Duration::ZERO);
    /// ```
    pub const fn none() -> Latency {
        Latency(Shape::None)
    }

    /// The same delay for every request.
    ///
    /// ```
    /// use meshless::testing::Latency;
    /// use std::time::Duration;
    ///
    /// let l = Latency::fixed(Duration::from_millis(5));
    /// assert_eq!(l.sample(), Duration::from_millis(5));
    /// ```
    pub const fn fixed(delay: Duration) -> Latency {
        Latency(Shape::Fixed(delay))
    }

    /// A log-normal delay with this median and 99th percentile.
    ///
    /// If `p99` is not above `median`, every delay is `median`; a zero median means no delay.
    ///
    /// ```
    /// use meshless::testing::Latency;
    /// use std::time::Duration;
    ///
    /// let l = Latency::lognormal(Duration::from_millis(10), Duration::from_millis(100));
    /// let below_p99 = (0..1000).filter(|_| l.sample() < Duration::from_millis(100)).count();
    /// assert!(below_p99 > 950); // 990 expected
    /// ```
    pub fn lognormal(median: Duration, p99: Duration) -> Latency {
        if median.is_zero() {
            return Latency::none();
        }
        if p99 <= median {
            return Latency::fixed(median);
        }
        // median = e^mu and p99 = e^(mu + Z_99 sigma); both durations are positive and
        // finite, so both numbers are finite.
        let median = median.as_secs_f64();
        let mu = median.ln();
        let sigma = (p99.as_secs_f64() / median).ln() / Z_99;
        Latency(Shape::LogNormal { mu, sigma })
    }

    /// One delay drawn from this distribution (with the thread's random number generator).
    ///
    /// ```
    /// use meshless::testing::Latency;
    /// use std::time::Duration;
    ///
    /// let l = Latency::lognormal(Duration::from_millis(1), Duration::from_millis(4));
    /// assert!(l.sample() > Duration::ZERO);
    /// ```
    pub fn sample(&self) -> Duration {
        self.sample_with(&mut rand::rng())
    }

    /// One delay drawn with `rng` (seeded in unit tests).
    pub(crate) fn sample_with<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match self.0 {
            Shape::None => Duration::ZERO,
            Shape::Fixed(delay) => delay,
            Shape::LogNormal { mu, sigma } => {
                let seconds = (mu + sigma * standard_normal(rng)).exp();
                // A sample far in the tail may not fit a Duration; it is as good as forever.
                Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
            }
        }
    }
}

/// Same as [`Latency::none`].
///
/// ```
/// use meshless::testing::Latency;
///
/// assert_eq!(Latency::default(), Latency::none());
/// ```
impl Default for Latency {
    fn default() -> Latency {
        Latency::none()
    }
}

/// A standard normal sample by the Box-Muller transform of two uniform samples.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // `random::<f64>()` is in [0, 1): `1 - u` is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn quantile(sorted: &[Duration], q: f64) -> Duration {
        sorted[((sorted.len() - 1) as f64 * q) as usize]
    }

    #[test]
    fn lognormal_has_the_median_and_p99_it_was_given() {
        let latency = Latency::lognormal(Duration::from_millis(10), Duration::from_millis(200));
        let mut rng = StdRng::seed_from_u64(7);
        let mut samples: Vec<Duration> = (0..200_000)
            .map(|_| latency.sample_with(&mut rng))
            .collect();
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (median, p99) = (ms(quantile(&samples, 0.5)), ms(quantile(&samples, 0.99)));
        assert!((9.5..10.5).contains(&median), "median {median} ms");
        assert!((180.0..220.0).contains(&p99), "p99 {p99} ms");
    }

    #[test]
    fn lognormal_degenerate_inputs_do_not_panic() {
        assert_eq!(
            Latency::lognormal(Duration::ZERO, Duration::ZERO),
            Latency::none()
        );
        assert_eq!(
            Latency::lognormal(Duration::from_secs(1), Duration::from_millis(1)),
            Latency::fixed(Duration::from_secs(1))
        );
        // A ratio so wide that the tail overflows a Duration.
        let wild = Latency::lognormal(Duration::from_nanos(1), Duration::MAX);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let _ = wild.sample_with(&mut rng);
        }
    }

    #[test]
    fn shares_of_zero_and_one_are_exact() {
        let mut rng = StdRng::seed_from_u64(3);
        let all = |b: &Behavior, f: Fault, rng: &mut StdRng| (0..10_000).all(|_| b.draw(rng) == f);
        assert!(all(&Behavior::healthy(), Fault::None, &mut rng));
        let b = Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(all(&b, Fault::Error, &mut rng));
        assert!(all(&Behavior::healthy().hangs(1.0), Fault::Hang, &mut rng));
        // Resets come first: with every share at 1, every request is reset.
        let b = Behavior::healthy()
            .resets(1.0)
            .hangs(1.0)
            .errors(1.0, StatusCode::BAD_GATEWAY);
        assert!(all(&b, Fault::Reset, &mut rng));
        let b = Behavior::healthy()
            .resets(f64::NAN)
            .hangs(-3.0)
            .errors(0.0, StatusCode::BAD_GATEWAY);
        assert!(all(&b, Fault::None, &mut rng));
    }

    #[test]
    fn shares_are_shares_of_all_requests() {
        let mut rng = StdRng::seed_from_u64(11);
        let b = Behavior::healthy()
            .resets(0.1)
            .hangs(0.2)
            .errors(0.3, StatusCode::SERVICE_UNAVAILABLE);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            let i = match b.draw(&mut rng) {
                Fault::Reset => 0,
                Fault::Hang => 1,
                Fault::Error => 2,
                Fault::None => 3,
            };
            counts[i] += 1;
        }
        for (count, expected) in counts.iter().zip([10_000.0, 20_000.0, 30_000.0, 40_000.0]) {
            assert!((f64::from(*count) - expected).abs() < 1_000.0, "{counts:?}");
        }
    }

    #[test]
    fn informational_error_status_is_answered_as_500() {
        let b = Behavior::healthy().errors(1.0, StatusCode::CONTINUE);
        assert_eq!(b.error_status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
