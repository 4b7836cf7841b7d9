//! Layers built from valid configs work, and the edge values mean what the docs say.

use super::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body that sends one frame after `wait`.
struct Slow {
    sleep: Pin<Box<tokio::time::Sleep>>,
    sent: bool,
}

impl Slow {
    fn after(wait: Duration) -> Self {
        Slow {
            sleep: Box::pin(tokio::time::sleep(wait)),
            sent: false,
        }
    }
}

impl http_body::Body for Slow {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.sent {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.sent = true;
        Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"late",
        )))))
    }
}

fn kind_of(err: &BoxError) -> Option<Kind> {
    err.downcast_ref::<Error>().map(Error::kind)
}

/// A service that answers 503 to its first `failures` calls and 200 after, counting calls.
fn flaky(
    failures: usize,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<ReplayBody<String>>,
    Response = Response<String>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<ReplayBody<String>>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut res = Response::new(String::new());
            if n < failures {
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, std::io::Error>(res)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_stack_built_from_configs_retries_within_its_deadline() {
    let mut retry = RetryConfig::default();
    retry.backoff.kind = BackoffKind::None;
    let mut attempt = AttemptTimeoutConfig::default();
    attempt.timeout = Some(SEC);
    let retry_layer = RetryLayer::from_config(Budget::default(), &retry).unwrap();
    let stats = retry_layer.stats();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::from_config(&DeadlineConfig::default()).unwrap())
        .layer(retry_layer)
        .layer(AttemptTimeoutLayer::from_config(&attempt).unwrap())
        .service(flaky(1, calls.clone()));
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one retry after the 503");
    assert_eq!(stats.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_retries_send_each_request_once() {
    let mut retry = RetryConfig::default();
    retry.max_retries = 0;
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::from_config(Budget::default(), &retry).unwrap())
        .service(flaky(5, calls.clone()));
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

fn sleepy(
    wait: Duration,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<String>| async move {
        tokio::time::sleep(wait).await;
        Ok::<_, std::io::Error>(Response::new(String::new()))
    })
}

#[tokio::test(start_paused = true)]
async fn a_max_deadline_is_no_limit_and_a_zero_one_has_passed_already() {
    let mut config = DeadlineConfig::default();
    config.timeout = Duration::MAX;
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::from_config(&config).unwrap())
        .service(sleepy(Duration::from_secs(24 * 3600)));
    assert!(svc.oneshot(Request::new(String::new())).await.is_ok());

    // Refused as a config; the unchecked constructor fails a request that has to wait.
    config.timeout = Duration::ZERO;
    assert!(DeadlineLayer::from_config(&config).is_err());
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::ZERO))
        .service(sleepy(MS));
    let err = svc.oneshot(Request::new(String::new())).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_max_attempt_timeout_is_no_limit_and_a_zero_one_starts_no_attempt() {
    let mut config = AttemptTimeoutConfig::default();
    config.timeout = Some(Duration::MAX);
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::from_config(&config).unwrap())
        .service(sleepy(Duration::from_secs(24 * 3600)));
    assert!(svc.oneshot(Request::new(String::new())).await.is_ok());

    config.timeout = Some(Duration::ZERO);
    assert!(AttemptTimeoutLayer::from_config(&config).is_err());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(Duration::ZERO))
        .service(service_fn(move |_req: Request<String>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(Response::new(String::new())) }
        }));
    let err = svc.oneshot(Request::new(String::new())).await.unwrap_err();
    assert_eq!(err.kind(), Kind::AttemptTimedOut);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing sent");
}

/// Reads the body of a response of `content_type` whose only frame comes after 2 s, under a
/// 1 s deadline built from `config`.
async fn read_slow_body(config: &DeadlineConfig, content_type: &'static str) -> Result<(), Kind> {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::from_config(config).unwrap())
        .service(service_fn(move |_req: Request<String>| async move {
            let mut res = Response::new(Slow::after(2 * SEC));
            res.headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
            Ok::<_, std::io::Error>(res)
        }));
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    match res.into_body().collect().await {
        Ok(body) => {
            assert_eq!(body.to_bytes(), "late");
            Ok(())
        }
        Err(err) => Err(kind_of(&err).expect("a meshless error")),
    }
}

#[tokio::test(start_paused = true)]
async fn streaming_content_types_from_a_config_end_the_deadline_at_the_head() {
    let mut config = DeadlineConfig::default();
    config.timeout = SEC;
    let ndjson = "Application/X-NDJSON; charset=utf-8";
    assert_eq!(
        read_slow_body(&config, ndjson).await,
        Err(Kind::DeadlineExceeded),
        "not a stream: the deadline covers the body"
    );
    config.streaming_content_types = vec!["video/mp4".into(), "application/x-ndjson".into()];
    // A stream's default idle limit is the request's deadline: 2 s of silence ends it.
    assert_eq!(
        read_slow_body(&config, ndjson).await,
        Err(Kind::BodyIdleTimeout)
    );

    // An idle limit of `Duration::MAX` is none; a short one still ends the stream.
    config.body_idle_timeout = Some(Duration::MAX);
    assert_eq!(read_slow_body(&config, ndjson).await, Ok(()));
    config.body_idle_timeout = Some(SEC);
    assert_eq!(
        read_slow_body(&config, ndjson).await,
        Err(Kind::BodyIdleTimeout)
    );
}

/// The RTT the balancer reads for its one endpoint, which answered after 100 ms, `later` after
/// the answer.
async fn rtt_after_a_slow_answer(builder: BalanceBuilder, later: Duration) -> Duration {
    let balance = builder.build();
    balance.insert("a", sleepy(100 * MS));
    let res = balance
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
    tokio::time::advance(later).await;
    balance.endpoints()[0].rtt
}

#[tokio::test(start_paused = true)]
async fn balance_edges_are_kept_as_given_never_replaced_by_the_defaults() {
    // A zero default RTT is kept (it used to become 30 ms): a new endpoint reads as instant.
    let balance = Balance::builder()
        .default_rtt(Duration::ZERO)
        .build::<&str, _>();
    balance.insert("a", sleepy(MS));
    assert_eq!(balance.endpoints()[0].rtt, Duration::ZERO);

    let defaults = BalanceBuilder::from_config(&BalanceConfig::default()).unwrap();
    let remembered = rtt_after_a_slow_answer(defaults, MS).await;
    assert!(remembered > 99 * MS, "{remembered:?}");
    // A zero decay forgets at once (it used to become 10 s).
    let forgetful = Balance::builder().decay(Duration::ZERO);
    let forgotten = rtt_after_a_slow_answer(forgetful, MS).await;
    assert!(forgotten < MS, "{forgotten:?}");
    // `Duration::MAX` never forgets, an hour later.
    let mut config = BalanceConfig::default();
    config.decay = Duration::MAX;
    let never = BalanceBuilder::from_config(&config).unwrap();
    let kept = rtt_after_a_slow_answer(never, Duration::from_secs(3600)).await;
    assert!(kept > 99 * MS, "{kept:?}");
}

#[test]
fn budget_and_backoff_maxima_count_as_an_hour() {
    let mut config = BudgetConfig::default();
    config.ttl = Duration::MAX;
    let budget = Budget::from_config(&config).unwrap();
    assert_eq!(budget.ttl(), Duration::from_secs(3600));
    assert_eq!(budget.config().ttl, Duration::from_secs(3600));

    let mut config = BackoffConfig::default();
    (config.base, config.cap) = (Duration::MAX, Duration::MAX);
    let backoff = Backoff::from_config(&config).unwrap();
    assert_eq!(backoff.config().base, Duration::from_secs(3600));
    assert_eq!(backoff.cap(), Duration::MAX, "no cap");
    assert!(backoff.start().next_delay() <= Duration::from_secs(3600));

    // `None` ignores its base and cap, whatever they are.
    config.kind = BackoffKind::None;
    (config.base, config.cap) = (Duration::ZERO, Duration::ZERO);
    assert_eq!(Backoff::from_config(&config).unwrap(), Backoff::none());
}
