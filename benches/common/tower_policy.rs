//! tower's retry policy with meshless's semantics, shared by the benches that compare the two.

use http::{Request, Response};
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;
use tower::retry::Policy;
use tower::retry::budget::{Budget as _, TpsBudget};

/// The most retries per request, as meshless's default.
pub const MAX_RETRIES: u32 = 2;

/// A tower retry policy with meshless's budget semantics: every request deposits (when tower
/// clones it before the first attempt), every retry withdraws; 5xx responses and errors are
/// retried at most [`MAX_RETRIES`] times.
#[derive(Clone)]
pub struct TowerPolicy {
    budget: Arc<TpsBudget>,
    retries: u32,
}

impl<B: Clone, RB, E> Policy<Request<B>, Response<RB>, E> for TowerPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<RB>, E>,
    ) -> Option<Self::Future> {
        let failed = match result {
            Ok(res) => res.status().is_server_error(),
            Err(_) => true,
        };
        if !failed || self.retries >= MAX_RETRIES || !self.budget.withdraw() {
            return None;
        }
        self.retries += 1;
        Some(ready(()))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        // Called on the service's policy before the first attempt, and on the request's own
        // copy (with `retries > 0`) before each retry: deposit once per request.
        if self.retries == 0 {
            self.budget.deposit();
        }
        // Head (method, URI, version, headers, extensions) and body.
        Some(req.clone())
    }
}

pub fn tower_policy() -> TowerPolicy {
    TowerPolicy {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        retries: 0,
    }
}
