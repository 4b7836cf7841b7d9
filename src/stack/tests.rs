use super::*;
use crate::error::{Error, Kind};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

#[test]
fn zero_timeouts_are_refused_naming_the_field() {
    let zero_deadline = Policies {
        deadline: Duration::ZERO,
        ..Policies::default()
    };
    let err = zero_deadline.check_timeouts().unwrap_err();
    assert_eq!(err.setting(), "deadline");
    let zero_attempt = Policies {
        attempt_timeout: Some(Duration::ZERO),
        ..Policies::default()
    };
    let err = zero_attempt.check_timeouts().unwrap_err();
    assert_eq!(err.setting(), "attempt_timeout");
    let zero_idle = Policies {
        body_idle_timeout: Some(Duration::ZERO),
        ..Policies::default()
    };
    let err = zero_idle.check_timeouts().unwrap_err();
    assert_eq!(err.setting(), "body_idle_timeout");
    assert!(Policies::default().check_timeouts().is_ok());
}

#[test]
fn bad_layer_settings_are_refused_naming_the_layer() {
    let mut policies = Policies::default();
    policies.breaker.failure_rate_threshold = 2.0;
    let err = policies.protection().err().expect("a breaker error");
    assert!(err.setting().starts_with("breaker."), "{}", err.setting());

    let mut policies = Policies::default();
    policies.throttle.k = -1.0;
    let err = policies.protection().err().expect("a throttle error");
    assert!(err.setting().starts_with("throttle."), "{}", err.setting());

    let policies = Policies {
        hedge: Some(HedgeConfig {
            max_extra_load: -1.0,
            ..HedgeConfig::default()
        }),
        ..Policies::default()
    };
    let protection = policies.protection().expect("valid protection");
    let balance = policies.balance::<u32, ()>();
    let err = policies
        .stack(protection, balance)
        .err()
        .expect("a hedge error");
    assert!(err.setting().starts_with("hedge."), "{}", err.setting());
}

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, Error>>>;

fn echo() -> Echo {
    tower::service_fn(|n| std::future::ready(Ok(n)))
}

#[test]
fn a_call_reports_once_then_answers_without_panicking() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut call = pin!(Call::<Echo, u32>::Waiting {
        call: tower::util::Oneshot::new(echo(), 7),
    });
    match call.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(7)) => {}
        other => panic!("expected the answer once, got {other:?}"),
    }
    match call.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), Kind::InvalidRequest),
        other => panic!("expected an error after the answer, got {other:?}"),
    }

    let mut failed = pin!(Call::<Echo, u32>::Failed {
        error: Some(Error::new(Kind::DeadlineExceeded)),
    });
    match failed.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), Kind::DeadlineExceeded),
        other => panic!("expected the error found before sending, got {other:?}"),
    }
}
