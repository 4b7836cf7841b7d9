//! The success-path overhead of a retry layer: meshless [`RetryLayer`] against tower's
//! `tower::retry::Retry`, side by side over the same mock service.
//!
//! The mock service answers `200 OK` at once. Each iteration builds a request, waits for the
//! service to be ready (`ServiceExt::ready`) and awaits `call`, on a current-thread tokio
//! runtime. Three services are measured on the same requests:
//!
//! - `bare`: the mock service alone, the floor both layers add to;
//! - `meshless`: `RetryLayer::new(Budget::default())` over it;
//! - `tower`: `tower::retry::Retry` over it, with a policy of the same semantics: a shared
//!   `TpsBudget` (ttl 10 s, 10 retries/s, 20%) that each request deposits into and each retry
//!   withdraws from, retrying 5xx responses and errors at most twice, cloning the request (head
//!   and body) for a possible retry.
//!
//! Two requests: a `GET` with an empty body, and a `POST` with a 1 KiB `Full<Bytes>` body (the
//! mock never reads it). Each sample runs on freshly built services, so that no budget sees more
//! than one sample's requests.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, Uri};
use http_body_util::{Empty, Full};
use meshless::budget::Budget;
use meshless::retry::RetryLayer;
use std::convert::Infallible;

use std::time::Duration;
use tokio::runtime::Runtime;
use tower::retry::Retry;
use tower::{Layer, service_fn};

#[path = "common/tower_policy.rs"]
mod tower_policy;
use tower_policy::tower_policy;

#[path = "common/drive.rs"]
mod drive;
use drive::{drive, runtime};

/// The mock service: answers `200 OK` without reading the request.
async fn ok<B>(_req: Request<B>) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

/// Benchmarks bare, meshless and tower on requests made by `request`.
fn compare<B>(c: &mut Criterion, rt: &Runtime, name: &str, request: impl Fn() -> Request<B> + Copy)
where
    B: http_body::Body<Data = Bytes> + Clone + Send + 'static,
    B::Error: Into<meshless::BoxError>,
{
    let mut group = c.benchmark_group(format!("retry_success/{name}"));
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);

    group.bench_function(BenchmarkId::from_parameter("bare"), |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(service_fn(ok::<B>), iters, request))
    });
    group.bench_function(BenchmarkId::from_parameter("meshless"), |b| {
        b.to_async(rt).iter_custom(|iters| {
            let svc = RetryLayer::new(Budget::default()).layer(service_fn(ok));
            drive(svc, iters, request)
        })
    });
    group.bench_function(BenchmarkId::from_parameter("tower"), |b| {
        b.to_async(rt).iter_custom(|iters| {
            let svc = Retry::new(tower_policy(), service_fn(ok::<B>));
            drive(svc, iters, request)
        })
    });

    group.finish();
}

fn retry_success(c: &mut Criterion) {
    let rt = runtime();
    let uri = Uri::from_static("http://svc.local/resource");
    let payload = Bytes::from(vec![b'x'; 1024]);

    let get = {
        let uri = uri.clone();
        move || {
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.uri_mut() = uri.clone();
            req
        }
    };
    compare(c, &rt, "get_empty", &get);

    let post = {
        let (uri, payload) = (uri.clone(), payload.clone());
        move || {
            let mut req = Request::new(Full::new(payload.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = uri.clone();
            req
        }
    };
    compare(c, &rt, "post_full_1kib", &post);
}

criterion_group!(benches, retry_success);
criterion_main!(benches);
