//! Dropping the series of an endpoint that discovery removed.
//!
//! The [`metrics`] facade can register a series but not unregister one, so an address that
//! leaves the fleet would keep its series in the recorder forever: under DNS churn, a slow
//! leak of dead labels. A recorder that can drop series (one built on
//! `metrics_util::registry::Registry`, which has `delete_counter` and its siblings) implements
//! [`ForgetSeries`]; given to [`BalanceBuilder::forget_series`], it is told every series of an
//! endpoint once the endpoint is removed and its last request has finished.
//!
//! [`BalanceBuilder::forget_series`]: crate::balance::BalanceBuilder::forget_series

use metrics::{Key, Label};
use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// A recorder that can drop the series of a removed endpoint.
///
/// ```
/// use meshless::observe::ForgetSeries;
/// use metrics::Key;
/// use metrics_util::registry::{AtomicStorage, Registry};
///
/// struct Dropping(Registry<Key, AtomicStorage>);
///
/// impl ForgetSeries for Dropping {
///     fn forget_counter(&self, key: &Key) {
///         self.0.delete_counter(key);
///     }
///     fn forget_gauge(&self, key: &Key) {
///         self.0.delete_gauge(key);
///     }
///     fn forget_histogram(&self, key: &Key) {
///         self.0.delete_histogram(key);
///     }
/// }
/// ```
pub trait ForgetSeries: Send + Sync + 'static {
    /// Drops the counter `key`, if the recorder has it.
    fn forget_counter(&self, key: &Key);
    /// Drops the gauge `key`, if the recorder has it.
    fn forget_gauge(&self, key: &Key);
    /// Drops the histogram `key`, if the recorder has it.
    fn forget_histogram(&self, key: &Key);
}

/// Which kind of series a key names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SeriesKind {
    Counter,
    Gauge,
    Histogram,
}

/// A balancer's [`ForgetSeries`], with a count of the live endpoints under each label: an
/// endpoint removed and inserted again while the old one still finishes a request shares its
/// series with the new one, which must keep them.
#[derive(Clone)]
pub(crate) struct Forgetter {
    sink: Arc<dyn ForgetSeries>,
    live: Arc<Mutex<HashMap<Vec<Label>, usize>>>,
}

impl Forgetter {
    pub(crate) fn new(sink: Arc<dyn ForgetSeries>) -> Self {
        Forgetter {
            sink,
            live: Arc::default(),
        }
    }

    /// An endpoint labelled `labels`, whose series are `series`, began to record; the returned
    /// guard forgets them when dropped, unless another endpoint with the same labels still
    /// lives.
    pub(crate) fn hold(&self, labels: Vec<Label>, series: Vec<(SeriesKind, Key)>) -> SeriesGuard {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        *live.entry(labels.clone()).or_insert(0) += 1;
        SeriesGuard {
            forgetter: self.clone(),
            labels,
            series,
        }
    }

    /// The endpoint labelled `labels` is gone: if it was the last one under them, `series`
    /// are forgotten, with the count still locked so that an endpoint inserted again under
    /// the same labels meanwhile registers its series after they are dropped, not before.
    fn release(&self, labels: &[Label], series: &[(SeriesKind, Key)]) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get_mut(labels) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                live.remove(labels);
                // A panic in the recorder's code must not escape into the balancer (this runs
                // where an endpoint set is swapped, or while a request's future is dropped).
                let forgot = panic::catch_unwind(AssertUnwindSafe(|| {
                    for (kind, key) in series {
                        match kind {
                            SeriesKind::Counter => self.sink.forget_counter(key),
                            SeriesKind::Gauge => self.sink.forget_gauge(key),
                            SeriesKind::Histogram => self.sink.forget_histogram(key),
                        }
                    }
                }));
                if forgot.is_err() {
                    tracing::warn!(?labels, "ForgetSeries panicked: some series may be left");
                }
            }
            None => {}
        }
    }
}

impl fmt::Debug for Forgetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forgetter").finish_non_exhaustive()
    }
}

/// Forgets an endpoint's series when the endpoint is gone (see [`Forgetter::hold`]).
pub(crate) struct SeriesGuard {
    forgetter: Forgetter,
    labels: Vec<Label>,
    series: Vec<(SeriesKind, Key)>,
}

impl Drop for SeriesGuard {
    fn drop(&mut self) {
        self.forgetter.release(&self.labels, &self.series);
    }
}

impl fmt::Debug for SeriesGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesGuard")
            .field("labels", &self.labels)
            .finish()
    }
}
