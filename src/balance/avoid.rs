//! Endpoints a request would rather not go to: the hedge layer's way to send a hedge somewhere
//! else than the attempts it races.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many endpoints one list remembers: gRPC A6 caps a call at 5 attempts, one more is slack.
const SLOTS: usize = 6;

/// A request extension shared by every attempt of one hedged request: [`Balance`](super::Balance)
/// writes each endpoint it sends one of them to, and picks an endpoint not on the list when a
/// ready one exists (falling back to any endpoint otherwise, so that it never refuses a request
/// for this). Requests without it cost the balancer one extension lookup.
///
/// Clones share the list. It holds at most six endpoints; later ones are not remembered.
///
/// ```
/// use meshless::balance::{AvoidEndpoints, Balance};
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let balance = Balance::builder().build();
/// for name in ["a", "b"] {
///     balance.insert(name, service_fn(move |_req: http::Request<()>| async move {
///         Ok::<_, std::io::Error>(http::Response::builder().header("x-name", name).body(String::new()).unwrap())
///     }));
/// }
/// let avoid = AvoidEndpoints::new();
/// let mut seen = Vec::new();
/// for _ in 0..2 {
///     let mut req = http::Request::new(());
///     req.extensions_mut().insert(avoid.clone());
///     let res = balance.clone().oneshot(req).await?;
///     seen.push(res.headers()["x-name"].to_str().unwrap().to_owned());
/// }
/// seen.sort();
/// assert_eq!(seen, ["a", "b"]); // the second went to the endpoint the first did not
/// assert_eq!(avoid.len(), 2);
/// # Ok::<_, meshless::Error>(()) });
/// ```
#[derive(Debug, Clone, Default)]
pub struct AvoidEndpoints(Arc<[AtomicUsize; SLOTS]>);

impl AvoidEndpoints {
    /// An empty list.
    ///
    /// ```
    /// assert!(meshless::balance::AvoidEndpoints::new().is_empty());
    /// ```
    pub fn new() -> Self {
        AvoidEndpoints::default()
    }

    /// How many endpoints the list holds.
    ///
    /// ```
    /// assert_eq!(meshless::balance::AvoidEndpoints::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0
            .iter()
            .take_while(|slot| slot.load(Ordering::Acquire) != 0)
            .count()
    }

    /// True when no endpoint is on the list.
    ///
    /// ```
    /// assert!(meshless::balance::AvoidEndpoints::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the endpoint with this identity (never 0) is on the list.
    pub(crate) fn contains(&self, id: usize) -> bool {
        self.0
            .iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .take_while(|&seen| seen != 0)
            .any(|seen| seen == id)
    }

    /// Puts the endpoint with this identity (never 0) on the list, unless it is there or the
    /// list is full.
    pub(crate) fn add(&self, id: usize) {
        for slot in self.0.iter() {
            match slot.compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(seen) if seen == id => return,
                Err(_) => {}
            }
        }
    }
}
