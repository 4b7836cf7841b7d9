//! The attempt timeout against services in memory, on paused time.

use super::*;
use tower::ServiceExt;

/// Sleeps as long as the request's `x-sleep-ms` says, then echoes its headers. The derived
/// timeout's tests use it too.
pub(super) fn sleeper()
-> impl Service<Request<()>, Response = http::HeaderMap, Error = BoxError, Future = impl Send> + Clone
{
    tower::service_fn(|req: Request<()>| async move {
        let ms = req
            .headers()
            .get("x-sleep-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, BoxError>(req.headers().clone())
    })
}

fn request(sleep_ms: u64, deadline_in: Option<Duration>) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut().insert("x-sleep-ms", sleep_ms.into());
    if let Some(d) = deadline_in {
        req.extensions_mut()
            .insert(RequestDeadline(Instant::now() + d));
    }
    req
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout_fires() {
    let svc = AttemptTimeout::new(sleeper(), Duration::from_millis(100));
    let start = Instant::now();
    let err = svc.clone().oneshot(request(500, None)).await.unwrap_err();
    assert_eq!(err.kind(), Kind::AttemptTimedOut);
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
    assert!(svc.oneshot(request(50, None)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_deadline_shortens_the_attempt() {
    let svc = AttemptTimeout::new(sleeper(), Duration::from_millis(100));
    let start = Instant::now();
    let err = svc
        .oneshot(request(500, Some(Duration::from_millis(40))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(Instant::now() - start, Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn no_time_left_means_no_attempt() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = tower::service_fn(move |_: Request<()>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, BoxError>(()) }
    });
    let err = AttemptTimeout::new(svc, Duration::from_millis(100))
        .oneshot(request(0, Some(Duration::ZERO)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_limit_is_propagated() {
    let svc = AttemptTimeoutLayer::new(Duration::from_millis(300))
        .deadline_header(true)
        .layer(sleeper());
    let mut req = request(0, Some(Duration::from_millis(200)));
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/grpc".parse().unwrap(),
    );
    let headers = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(headers["grpc-timeout"], "200000u");
    assert!(headers.get(DEADLINE_HEADER).is_none());

    let headers = svc.oneshot(request(0, None)).await.unwrap();
    assert_eq!(headers[DEADLINE_HEADER], "300");

    let headers = AttemptTimeout::new(sleeper(), Duration::from_millis(300))
        .oneshot(request(0, None))
        .await
        .unwrap();
    assert!(
        headers.get(DEADLINE_HEADER).is_none(),
        "HTTP propagation is opt-in"
    );
}

#[tokio::test(start_paused = true)]
async fn the_callers_own_limit_is_never_raised() {
    let svc = AttemptTimeoutLayer::new(Duration::from_millis(300))
        .deadline_header(true)
        .layer(sleeper());
    let with = |name: &'static str, value: &'static str| {
        let mut req = request(0, None);
        req.headers_mut()
            .insert(name, HeaderValue::from_static(value));
        req
    };
    let cases = [
        (DEADLINE_HEADER, "50", "50"),
        (DEADLINE_HEADER, "9000", "300"),
        (DEADLINE_HEADER, "soon", "300"),
    ];
    for (name, value, expect) in cases {
        let headers = svc.clone().oneshot(with(name, value)).await.unwrap();
        assert_eq!(headers[name], expect, "{value}");
    }
    let mut grpc = with("grpc-timeout", "100m");
    grpc.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let headers = svc.clone().oneshot(grpc).await.unwrap();
    assert_eq!(headers["grpc-timeout"], "100000u");

    // A retry carries the caller's original header; what is left of it is what counts.
    let mut retry = with(DEADLINE_HEADER, "100");
    retry
        .extensions_mut()
        .insert(CallerDeadline(Instant::now() + Duration::from_millis(40)));
    let headers = svc.oneshot(retry).await.unwrap();
    assert_eq!(headers[DEADLINE_HEADER], "40");
}

#[tokio::test(start_paused = true)]
async fn the_timeout_drops_the_attempt_as_expiring() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let held = seen.clone();
    let svc = tower::service_fn(move |_: Request<()>| {
        let held = held.clone();
        async move {
            struct Witness(std::sync::Arc<std::sync::Mutex<Option<bool>>>);
            impl Drop for Witness {
                fn drop(&mut self) {
                    *self.0.lock().unwrap() = Some(expiry::expiring());
                }
            }
            let _w = Witness(held);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>(())
        }
    });
    let err = AttemptTimeout::new(svc, Duration::from_millis(100))
        .oneshot(request(0, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::AttemptTimedOut);
    assert_eq!(*seen.lock().unwrap(), Some(true));
}

/// A response ready at once builds no timer: the future completes without a tokio
/// runtime, where building one would panic.
#[test]
fn a_ready_response_builds_no_timer() {
    let svc = tower::service_fn(|_: Request<()>| async { Ok::<_, BoxError>(()) });
    let mut svc = AttemptTimeout::new(svc, Duration::from_millis(100));
    let mut future = std::pin::pin!(svc.call(Request::new(())));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
}

/// Found the same whether the map is searched by comparison or by hash: the first
/// content type (in any case) decides a gRPC call, and the caller's limit headers are seen.
#[test]
fn limits_are_found_in_small_and_large_maps() {
    for extra in [0, 1, SCAN - 3, SCAN - 2, SCAN, 4 * SCAN] {
        let mut headers = http::HeaderMap::new();
        for i in 0..extra {
            let name = http::HeaderName::try_from(format!("x-h-{i}")).unwrap();
            headers.insert(name, HeaderValue::from_static("v"));
        }
        let found = Limits::find(&headers);
        assert!(
            !found.grpc && !found.grpc_timeout && !found.deadline_header,
            "{extra}"
        );
        headers.append(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("Application/GRPC+proto"),
        );
        headers.append(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/x"),
        );
        assert!(Limits::find(&headers).grpc, "{extra}");
        headers.insert(grpc_timeout::HEADER, HeaderValue::from_static("1H"));
        headers.insert(DEADLINE_HEADER, HeaderValue::from_static("5"));
        let found = Limits::find(&headers);
        assert!(found.grpc_timeout && found.deadline_header, "{extra}");
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!Limits::find(&headers).grpc, "{extra}");
    }
}

/// A limit the caller put on the request leaves no higher than the time left, whatever the
/// content type says, and a gRPC content type is recognised in any case.
#[tokio::test(start_paused = true)]
async fn the_callers_limit_headers_never_leave_higher() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(http::HeaderMap::new()));
    let store = seen.clone();
    let svc = tower::service_fn(move |req: Request<()>| {
        *store.lock().unwrap() = req.headers().clone();
        async { Ok::<_, BoxError>(()) }
    });
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(300));
    for content_type in [None, Some("application/json"), Some("Application/GRPC")] {
        let mut req = Request::new(());
        if let Some(ct) = content_type {
            req.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        req.headers_mut()
            .insert(grpc_timeout::HEADER, HeaderValue::from_static("1H"));
        req.headers_mut()
            .insert(DEADLINE_HEADER, HeaderValue::from_static("3600000"));
        layer.layer(svc.clone()).oneshot(req).await.unwrap();
        let headers = seen.lock().unwrap().clone();
        let grpc = headers
            .get(&grpc_timeout::HEADER)
            .and_then(grpc_timeout::parse);
        assert_eq!(grpc, Some(Duration::from_millis(300)), "{content_type:?}");
        assert_eq!(
            headers
                .get(DEADLINE_HEADER)
                .and_then(super::super::total::parse_millis),
            Some(Duration::from_millis(300)),
            "{content_type:?}"
        );
    }
    // A lower limit of the caller's stays.
    let mut req = Request::new(());
    req.headers_mut()
        .insert(grpc_timeout::HEADER, HeaderValue::from_static("50m"));
    layer.layer(svc.clone()).oneshot(req).await.unwrap();
    let sent = seen.lock().unwrap().get(&grpc_timeout::HEADER).cloned();
    assert_eq!(
        sent.as_ref().and_then(grpc_timeout::parse),
        Some(Duration::from_millis(50))
    );
}

#[tokio::test(start_paused = true)]
async fn no_limit_never_panics() {
    let svc = AttemptTimeout::new(sleeper(), Duration::MAX);
    assert!(svc.oneshot(request(10, None)).await.is_ok());
}
