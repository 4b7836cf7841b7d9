//! What is accepted builds and sends: extreme values in files and in code, odd endpoints failing
//! requests cleanly; what the file refuses the builder refuses too.

use super::*;

/// Port 0 can never be connected to: an endpoint `IP:0` is nonsense configuration.
#[test]
fn an_endpoint_with_port_zero_is_refused() {
    let mut accepted = Vec::new();
    for ep in ["127.0.0.1:0", "[::1]:0", "0.0.0.0:0"] {
        let r = catch_unwind(|| Client::builder().endpoints([ep]).build());
        match r {
            Err(_) => accepted.push(format!("PANIC {ep}")),
            Ok(Ok(_)) => accepted.push(format!("builder accepted {ep}")),
            Ok(Err(_)) => {}
        }
    }
    assert!(accepted.is_empty(), "{}", accepted.join("\n"));
}

fn extreme_configs(addr: SocketAddr) -> Vec<String> {
    let ep = format!("endpoints = [\"{addr}\"]\nmetrics = false\n");
    let mut v = vec![
        format!(
            "{ep}[deadline]\ntimeout = \"18446744073709551615.999999999s\"\n[attempt_timeout]\ntimeout = \"18446744073709551615.999999999s\""
        ),
        format!("{ep}connect_timeout = \"18446744073709551615.999999999s\""),
        format!("{ep}connect_timeout = \"1ns\""),
        format!("{ep}[retry]\nmax_retries = 4294967295"),
        format!(
            "{ep}[retry]\nmax_retries = 4294967295\nbackoff = {{ base = \"18446744073709551615s\", cap = \"18446744073709551615s\" }}"
        ),
        format!("{ep}[retry]\nmax_retries = 3\nbackoff = {{ base = \"1ns\", cap = \"1ns\" }}"),
        format!(
            "{ep}[retry]\nmax_retries = 3\nbackoff = {{ kind = \"decorrelated_jitter\", base = \"1ns\", cap = \"18446744073709551615s\" }}"
        ),
        format!("{ep}[budget]\nratio = 0.0\nmin_per_second = 0.0"),
        format!("{ep}[budget]\nratio = 1.0"),
        format!("{ep}[budget]\nttl = \"18446744073709551615s\""),
        format!("{ep}[deadline]\ntimeout = \"1ns\""),
        format!("{ep}[deadline]\nbody_idle_timeout = \"18446744073709551615s\""),
        format!(
            "{ep}[balance]\ndecay = \"18446744073709551615s\"\ndefault_rtt = \"18446744073709551615s\""
        ),
        format!("{ep}[balance]\ndecay = \"1ns\"\ndefault_rtt = \"1ns\""),
        format!(
            "{ep}[balance.outlier]\ninterval = \"18446744073709551615s\"\nbase_ejection_time = \"18446744073709551615s\"\nmax_ejection_time = \"18446744073709551615s\""
        ),
        format!(
            "{ep}[breaker]\nwindow = \"18446744073709551615s\"\nmax_break_duration = \"18446744073709551615s\""
        ),
        format!(
            "{ep}[limit]\nmax_wait = \"18446744073709551615s\"\nalgorithm = {{ fixed = {{ max = 18446744073709551615 }} }}"
        ),
        format!("{ep}[limit]\nalgorithm = {{ fixed = {{ max = 1 }} }}"),
        format!("{ep}[hedge]\nmax_hedges = 4\ndelay = {{ fixed = \"18446744073709551615s\" }}"),
        format!("{ep}[hedge]\nmax_hedges = 4\ndelay = {{ fixed = \"1ns\" }}"),
        format!("{ep}[hedge]\nmax_hedges = 0"),
        format!(
            "{ep}[[routes]]\nmatch = {{}}\nmax_retries = 4294967295\ntimeout = \"18446744073709551615.999999999s\"\nattempt_timeout = \"1ns\""
        ),
        format!("{ep}[[routes]]\nmatch = {{ path_prefix = \"/(.*)+[a-z]{{1,}}\\\\d$^\" }}"),
        format!(
            "{ep}[[routes]]\nmatch = {{ path_prefix = \"/\" }}\nhedge = {{ max_hedges = 4, delay = \"1ns\" }}\nidempotent = true"
        ),
    ];
    let mut many = ep.clone();
    for i in 0..10_000 {
        many.push_str(&format!(
            "[[routes]]\nmatch = {{ path_prefix = \"/r{i}\" }}\nmax_retries = {}\n",
            i % 4
        ));
    }
    many.push_str("[[routes]]\nmatch = {}\nmax_retries = 0\n");
    v.push(many);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_extremes_build_and_send_without_panic() {
    let addr = server().await;
    let mut wrong = Vec::new();
    for text in extreme_configs(addr) {
        let short: String = text.chars().take(160).collect();
        let built = catch_unwind(AssertUnwindSafe(|| Client::from_toml_str(&text)));
        let client = match built {
            Err(_) => {
                wrong.push(format!("PANIC at build: {short:?}"));
                continue;
            }
            Ok(Err(e)) => {
                eprintln!("refused ({e}): {short:?}");
                continue;
            }
            Ok(Ok(c)) => c,
        };
        for path in ["/", "/r9999/x", "/(.*)+[a-z]{1,}\\d$^"] {
            let uri = if path.contains('\\') {
                "/x".to_string()
            } else {
                path.to_string()
            };
            let fut = client.get(uri);
            let retries_before = client.retry_stats().retries();
            let res =
                tokio::spawn(
                    async move { tokio::time::timeout(Duration::from_secs(5), fut).await },
                )
                .await;
            match res {
                Err(join) if join.is_panic() => {
                    wrong.push(format!("PANIC at request {path}: {short:?}"))
                }
                Err(_) => wrong.push(format!("cancelled {short:?}")),
                // A request with no deadline and attempts of a nanosecond retries as long as
                // its budget allows (10 a second lasts forever at its backoff): alive, not
                // hung, as long as it kept retrying.
                Ok(Err(_)) if client.retry_stats().retries() > retries_before + 5 => {
                    eprintln!("still retrying after 5 s at {path}: {short:?}")
                }
                Ok(Err(_)) => wrong.push(format!("hung > 5s at {path}: {short:?}")),
                Ok(Ok(Err(e))) => eprintln!("request error {e} at {path}: {short:?}"),
                Ok(Ok(Ok(r))) => {
                    if r.status() != 200 {
                        wrong.push(format!("status {} at {path}: {short:?}", r.status()));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Endpoints that parse but cannot be reached: a request fails with an error, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_parseable_endpoints_fail_requests_cleanly() {
    for ep in [
        "[::1]:0",
        "127.0.0.1:0",
        "0.0.0.0:1",
        "[::]:1",
        "255.255.255.255:1",
        "224.0.0.1:80",
    ] {
        let Ok(client) = Client::builder()
            .endpoints([ep])
            .metrics(false)
            .deadline(Duration::from_millis(500))
            .build()
        else {
            continue;
        };
        let fut = client.get("/");
        let res =
            tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), fut).await })
                .await;
        match res {
            Err(j) => panic!("{ep}: request panicked: {j}"),
            Ok(Err(_)) => panic!("{ep}: hung past the deadline"),
            Ok(Ok(_)) => {}
        }
    }
}

#[test]
fn builder_setters_extremes_do_not_panic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let cases: Vec<(&str, Build)> = vec![
        (
            "deadline 0",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .deadline(Duration::ZERO)
                    .build()
            }),
        ),
        (
            "attempt 0",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .attempt_timeout(Duration::ZERO)
                    .build()
            }),
        ),
        (
            "connect 0",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .connect_timeout(Duration::ZERO)
                    .build()
            }),
        ),
        (
            "body idle 0",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .body_idle_timeout(Duration::ZERO)
                    .build()
            }),
        ),
        (
            "dns refresh 0",
            Box::new(|| {
                Client::builder()
                    .dns("localhost:80")
                    .dns_refresh(Duration::ZERO)
                    .build()
            }),
        ),
        ("dns empty", Box::new(|| Client::builder().dns("").build())),
        (
            "dns no port",
            Box::new(|| Client::builder().dns("localhost").build()),
        ),
        (
            "dns port 0",
            Box::new(|| Client::builder().dns("localhost:0").build()),
        ),
        (
            "dns userinfo",
            Box::new(|| Client::builder().dns("u:p@localhost:80").build()),
        ),
        (
            "dns unicode",
            Box::new(|| Client::builder().dns("exämple.com:80").build()),
        ),
        (
            "dns and endpoints",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .dns("localhost:80")
                    .build()
            }),
        ),
        (
            "empty endpoints",
            Box::new(|| Client::builder().endpoints(Vec::<String>::new()).build()),
        ),
        (
            "service name empty",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .service_name("")
                    .build()
            }),
        ),
        (
            "all max",
            Box::new(|| {
                Client::builder()
                    .endpoints(["127.0.0.1:1"])
                    .deadline(Duration::MAX)
                    .attempt_timeout(Duration::MAX)
                    .connect_timeout(Duration::MAX)
                    .body_idle_timeout(Duration::MAX)
                    .max_retries(u32::MAX)
                    .build()
            }),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, f) in cases {
        match catch_unwind(AssertUnwindSafe(f)) {
            Err(_) => wrong.push(format!("PANIC {name}")),
            Ok(Ok(_)) => eprintln!("accepted: {name}"),
            Ok(Err(e)) => eprintln!("refused: {name}: {} ({e})", e.path()),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The file refuses `connect_timeout = "0s"` ("0ns would fail every connection"); the builder
/// in code must refuse it too rather than build a client whose every request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_connect_timeout_is_refused_by_the_builder_as_by_the_file() {
    let addr = server().await;
    let file = Client::from_toml_str(&format!(
        "endpoints = [\"{addr}\"]\nconnect_timeout = \"0s\""
    ));
    assert_eq!(
        file.err().map(|e| e.path()).as_deref(),
        Some("connect_timeout")
    );
    let built = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .connect_timeout(Duration::ZERO)
        .build();
    let client = match built {
        Err(e) => {
            assert_eq!(e.path(), "connect_timeout", "{e}");
            return;
        }
        Ok(c) => c,
    };
    let res = tokio::time::timeout(Duration::from_secs(5), client.get("/")).await;
    panic!(
        "builder accepted connect_timeout(Duration::ZERO); a request to a live server gives {:?}",
        res.map(|r| r.map(|r| r.status()))
    );
}

/// Extreme replay limits are accepted; a POST must still go out without a panic or an
/// allocation of the limit's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_replay_limits_then_post() {
    let addr = server().await;
    for extra in [
        "[retry]\nreplay_cap = 18446744073709551615\nreplay_frames = 18446744073709551615",
        "[retry]\nreplay_cap = 0\nreplay_frames = 0",
    ] {
        let text = format!("endpoints = [\"{addr}\"]\nmetrics = false\n{extra}");
        let client = match Client::from_toml_str(&text) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("refused {extra:?}: {e}");
                continue;
            }
        };
        let fut = client.post("/", vec![7u8; 100_000]);
        let r =
            tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), fut).await })
                .await;
        match r {
            Err(j) => panic!("{extra:?}: panicked {j}"),
            Ok(Err(_)) => panic!("{extra:?}: hung"),
            Ok(Ok(res)) => assert_eq!(res.expect("answered").status(), 200, "{extra:?}"),
        }
    }
}

/// reqwest builder: the bad base URL is named by its index in the list.
#[test]
fn reqwest_bad_endpoint_is_named_by_index() {
    let mut wrong = Vec::new();
    for bad in [
        "not a url",
        "http://",
        "ftp://x",
        "http://x y",
        "",
        "http://[::1",
        "http://a:99999",
    ] {
        let r = catch_unwind(|| {
            meshless::reqwest::Client::builder(reqwest::Client::new())
                .endpoints(["http://127.0.0.1:1", bad])
                .build()
        });
        match r {
            Err(_) => wrong.push(format!("PANIC {bad:?}")),
            Ok(Ok(_)) => wrong.push(format!("accepted {bad:?}")),
            Ok(Err(e)) if e.path() != "endpoints[1]" => {
                wrong.push(format!("{bad:?}: path {:?} ({e})", e.path()))
            }
            Ok(Err(_)) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn config_legit_values_still_accepted() {
    use meshless::policy::{ClientConfig, GrpcServiceConfig};
    let mut out = Vec::new();
    for ep in [
        "[::1]:80",
        " 127.0.0.1:80 ",
        "[::ffff:127.0.0.1]:8080",
        "127.0.0.1:65535",
    ] {
        let b = Client::builder()
            .endpoints([ep])
            .build()
            .map(|_| ())
            .map_err(|e| e.to_string());
        let mut c = ClientConfig::default();
        c.endpoints = vec![ep.into()];
        let v = c.validate().map_err(|e| e.to_string());
        out.push(format!("{ep:?}: builder {b:?} validate {v:?}"));
    }
    for json in [
        r#"{"methodConfig": [{"name": [{"service": "grpc.health.v1.Health"}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a_b.C-D", "method": "Do_It"}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "", "method": ""}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "1s"}, {"name": [{"service": "a.S", "method": "M"}], "timeout": "2s"}]}"#,
        r#"{"methodConfig": [{"name": [{}], "timeout": "1s"}], "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.0001}}"#,
    ] {
        out.push(format!(
            "{json}: {:?}",
            GrpcServiceConfig::from_json_str(json)
                .map(|_| ())
                .map_err(|e| (e.path(), e.to_string()))
        ));
    }
    for toml in [
        "endpoints = ['127.0.0.1:1']\n[[routes]]\nmatch = { path_prefix = '/' }\n",
        "endpoints = ['127.0.0.1:1']\n[[routes]]\nmatch = { path_prefix = '/a%20b' }\n",
        "endpoints = ['127.0.0.1:1']\n[[routes]]\nmatch = { service = 'grpc.health.v1.Health', method = 'Check' }\n",
        "endpoints = ['[::1]:1']\ndeadline = { timeout = '+5s' }\n",
    ] {
        out.push(format!(
            "{toml:?}: {:?}",
            ClientConfig::from_toml_str(toml)
                .and_then(|c| c.validate().map(|_| c))
                .map(|_| ())
                .map_err(|e| (e.path(), e.to_string()))
        ));
    }
    for l in &out {
        eprintln!("{l}");
    }
    assert!(out.iter().all(|l| !l.contains("Err")), "{out:#?}");
}

#[tokio::test]
async fn reload_with_spaced_endpoints() {
    use meshless::policy::ClientConfig;
    let text = "endpoints = [' 127.0.0.1:1 ']";
    let client = Client::from_toml_str(text).unwrap();
    let mut config = ClientConfig::from_toml_str(text).unwrap();
    config.retry.max_retries = 0;
    let r = client.reload(&config);
    eprintln!("{r:?}");
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn config_refusal_paths() {
    use meshless::policy::ClientConfig;
    let mut c = ClientConfig::default();
    c.endpoints = vec!["127.0.0.1:80".into(), "127.0.0.1:0".into()];
    let e = c.validate().unwrap_err();
    eprintln!("{} / {}", e.path(), e);
    assert_eq!(e.path(), "endpoints[1]");
    let e = ClientConfig::from_toml_str("endpoints = ['127.0.0.1:1', 'x']")
        .and_then(|c| c.validate())
        .unwrap_err();
    eprintln!("{} / {}", e.path(), e);
    assert_eq!(e.path(), "endpoints[1]");
    let e = Client::builder()
        .endpoints(["127.0.0.1:1", "127.0.0.1:2", "nope"])
        .build()
        .unwrap_err();
    eprintln!("{} / {}", e.path(), e);
    assert_eq!(e.path(), "endpoints[2]");
}
