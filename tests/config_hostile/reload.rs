//! Reloads: a refusal names the setting and changes nothing; extremes reload and send.

use super::*;

#[tokio::test]
async fn reload_refusals_name_the_setting_and_change_nothing() {
    let top = format!("{EP}metrics = false\n");
    let tail = "[retry]\nmax_retries = 1\n";
    let base = format!("{top}{tail}");
    let client = Client::from_toml_str(&base).unwrap();
    let routes_before = client.routes();
    let at_top = |extra: &str| format!("{top}{extra}\n{tail}");
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("127.0.0.1:8080", "127.0.0.1:8081"),
            "endpoints[0]",
        ),
        (
            base.replace(
                "endpoints = [\"127.0.0.1:8080\"]",
                "endpoints = [\"127.0.0.1:8080\", \"127.0.0.1:8081\"]",
            ),
            "endpoints",
        ),
        (at_top("service_name = \"other\""), "service_name"),
        (at_top("dns = \"localhost:80\""), "dns"),
        (
            at_top("metrics = true").replace("metrics = false\n", ""),
            "metrics",
        ),
        (format!("{base}[budget]\nratio = 0.5"), "budget.ratio"),
        (
            format!("{base}[breaker]\nminimum_calls = 7"),
            "breaker.minimum_calls",
        ),
        (
            format!("{base}[throttle]\nenabled = true"),
            "throttle.enabled",
        ),
        (
            format!("{base}[balance.outlier]\nconsecutive_failures = 9"),
            "balance.outlier.consecutive_failures",
        ),
        (at_top("connect_timeout = \"2s\""), "connect_timeout"),
        (
            at_top("http2_prior_knowledge = true"),
            "http2_prior_knowledge",
        ),
        (
            format!("{base}[hedge]\nmax_extra_load = 0.5"),
            "hedge.max_extra_load",
        ),
        (
            format!("{base}[deadline]\nbody_idle_timeout = \"5s\""),
            "deadline.body_idle_timeout",
        ),
        (
            format!("{base}backoff = {{ base = \"1s\", cap = \"2s\" }}"),
            "retry.backoff.base",
        ),
        (
            format!("{base}[deadline]\ntimeout = \"0s\""),
            "deadline.timeout",
        ),
        (
            format!("{base}[[routes]]\nmatch = {{ path_prefix = \"v1\" }}"),
            "routes[0].match.path_prefix",
        ),
        (at_top("bogus = 1"), "bogus"),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let config = match ClientConfig::from_toml_str(&text) {
            Err(e) => {
                if e.path() != want {
                    wrong.push(format!(
                        "parse of {text:?}: path {:?}, want {want} ({e})",
                        e.path()
                    ));
                }
                continue;
            }
            Ok(c) => c,
        };
        match catch_unwind(AssertUnwindSafe(|| client.reload(&config))) {
            Err(_) => wrong.push(format!("PANIC reload {text:?}")),
            Ok(Ok(())) => wrong.push(format!("reload accepted {text:?} (want refusal at {want})")),
            Ok(Err(e)) if e.path() != want => wrong.push(format!(
                "reload {text:?}: path {:?} want {want} ({e})",
                e.path()
            )),
            Ok(Err(_)) => {}
        }
        assert_eq!(client.routes(), routes_before);
    }
    // After every refusal, the original still reloads (nothing was half-applied).
    client
        .reload(&ClientConfig::from_toml_str(&base).unwrap())
        .expect("same config reloads");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A reload of 10,000 routes with extreme values, then a request: no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_extremes_then_send() {
    let addr = server().await;
    let base = format!("endpoints = [\"{addr}\"]\nmetrics = false\n");
    let client = Client::from_toml_str(&base).unwrap();
    let mut text = format!(
        "{base}[retry]\nmax_retries = 4294967295\n[deadline]\ntimeout = \"18446744073709551615.999999999s\"\n[hedge]\nmax_hedges = 4\ndelay = {{ fixed = \"1ns\" }}\n"
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[routes]]\nmatch = {{ path_prefix = \"/r{i}\" }}\nattempt_timeout = \"1ns\"\n"
        ));
    }
    let config = ClientConfig::from_toml_str(&text).unwrap();
    client.reload(&config).expect("reloadable");
    let fut = client.get("/");
    let r =
        tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), fut).await }).await;
    match r {
        Err(j) => panic!("panicked: {j}"),
        Ok(Err(_)) => panic!("hung"),
        Ok(Ok(res)) => assert_eq!(res.expect("answered").status(), 200),
    }
}
