//! `--mode plain`: what a service without meshless does. One hyper-util client, round robin over
//! the endpoints, one attempt per request, a tokio timeout around the whole request (body
//! included). `--attempt-timeout-ms`, `--idempotent` and `--no-retry` change nothing here.

use super::common::{
    Endpoint, EndpointReport, Meter, Metered, Outcome, Spec, classify, deadline_after, finish,
    hyper_client,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;

pub struct Plain {
    endpoints: Vec<(SocketAddr, Arc<Meter>, Metered<Endpoint>)>,
    next: AtomicUsize,
}

impl Plain {
    pub fn new(addrs: &[SocketAddr]) -> Self {
        let client = hyper_client();
        let endpoints = addrs
            .iter()
            .map(|&addr| {
                let meter = Arc::new(Meter::default());
                let service = Metered::new(Endpoint::new(client.clone(), addr), meter.clone());
                (addr, meter, service)
            })
            .collect();
        Plain {
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    pub async fn send(&self, spec: &Spec) -> Outcome {
        let deadline = deadline_after(spec.timeout);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let endpoint = self.endpoints[i].2.clone();
        match tokio::time::timeout_at(deadline, endpoint.oneshot(spec.request())).await {
            Err(_) => Outcome::Failed("timeout"),
            Ok(Err(e)) => Outcome::Failed(classify(&e)),
            Ok(Ok(res)) => finish(res, deadline, "timeout").await,
        }
    }

    pub fn endpoints(&self) -> Vec<EndpointReport> {
        self.endpoints
            .iter()
            .map(|(addr, meter, _)| EndpointReport::from_meter(*addr, meter))
            .collect()
    }
}
