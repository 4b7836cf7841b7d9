//! The hedging scenario's acceptance (issue 11) as arithmetic on a few figures of two runs,
//! with no other lab module, so that `tests/lab_hedge_verdict.rs` can include and test it.

/// Hedging cuts the p99.9 by at least this factor…
pub const MIN_CUT: f64 = 6.0;
/// …for at most this many attempts beyond one per request, in percent of the requests, and
/// loses no request (one that got no answer at all).
pub const MAX_EXTRA_PCT: f64 = 5.0;

/// What the verdict needs of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    /// The client's label in the report.
    pub label: String,
    pub requests: u64,
    /// Every attempt sent: first attempts, retries and hedges.
    pub attempts: u64,
    /// Requests that got no answer (an error or a timeout instead of a response).
    pub lost: u64,
    pub p999_ms: f64,
}

impl Tail {
    /// Attempts beyond one per request, in percent of the requests (0 for no requests, and
    /// when a client sent fewer attempts than requests: it shed some).
    pub fn extra_pct(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        100.0 * self.attempts.saturating_sub(self.requests) as f64 / self.requests as f64
    }
}

/// The p99.9 of `baseline` over that of `hedged`: how many times hedging cut it. A hedged
/// p99.9 of zero (no requests) cuts nothing.
pub fn cut(baseline: &Tail, hedged: &Tail) -> f64 {
    if hedged.p999_ms > 0.0 && baseline.p999_ms.is_finite() {
        baseline.p999_ms / hedged.p999_ms
    } else {
        0.0
    }
}

/// Whether `hedged` meets the acceptance against `baseline` (the same client without
/// hedging), and the line that says so with the figures.
pub fn judge(baseline: &Tail, hedged: &Tail) -> (bool, String) {
    let cut = cut(baseline, hedged);
    let extra = hedged.extra_pct();
    let pass = hedged.requests > 0
        && baseline.requests > 0
        && cut >= MIN_CUT
        && extra <= MAX_EXTRA_PCT
        && hedged.lost == 0;
    let text = format!(
        "hedging: p99.9 {} {:.1} ms / {} {:.1} ms = {cut:.1}× ≥ {MIN_CUT}×; extra attempts \
         {extra:.2}% ({} attempts for {} requests) ≤ {MAX_EXTRA_PCT}%; lost {} = 0",
        baseline.label,
        baseline.p999_ms,
        hedged.label,
        hedged.p999_ms,
        hedged.attempts,
        hedged.requests,
        hedged.lost
    );
    (pass, text)
}
