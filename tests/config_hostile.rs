//! Hostile configuration: files (TOML, YAML, JSON and random bytes), the gRPC service config
//! import, builders in code and reloads. No input panics; a bad value is refused with an error
//! naming its path (`endpoints[2]`, `retryThrottling.tokenRatio`, `methodConfig[1].name[0]`);
//! nothing that could never apply (a route no request fits, a name given twice) is accepted
//! silently; what is accepted builds a client that sends.
#![cfg(feature = "serde")]

use meshless::http::{Client, ClientBuilder};
use meshless::policy::{ClientConfig, Format, GrpcServiceConfig, parse_duration};
use meshless::retry::RetryConfig;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Builds a client from settings made in code.
type Build = Box<dyn Fn() -> Result<Client, meshless::ConfigError>>;

const EP: &str = "endpoints = [\"127.0.0.1:8080\"]\n";

/// A tiny HTTP/1.1 server answering 200 to everything, closing each connection.
async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            seen.extend_from_slice(&buf[..n]);
                            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

fn cfg(text: &str) -> Result<ClientConfig, meshless::ConfigError> {
    ClientConfig::from_toml_str(text)
}

// ---------------------------------------------------------------------------------------
// (1)+(3) durations

/// A duration that is not a duration must be refused, even where 0 is an allowed value
/// (`retry.max_pushback = "0s"` is allowed, so a parse that yields 0 would pass silently).
#[test]
fn nonsense_durations_are_refused_where_zero_is_allowed() {
    let bad = [
        "+",
        "++1s",
        "1.5.3s",
        "-1s",
        "1e400s",
        "1y",
        "",
        " ",
        "1",
        "s",
        "1ss",
        "1s-",
        "1 s",
        "\u{0661}s",
        "\u{200b}1s",
        "1s\u{0}",
        "NaNs",
        "infs",
        "0x10s",
        "1_000ms",
        "1.",
        ".",
        "1,5s",
        "−1s",
        "1sec",
        "1 ms",
        "1msms",
    ];
    let mut accepted = Vec::new();
    for text in bad {
        let json = format!(
            "{{\"max_pushback\": {}}}",
            serde_json::to_string(text).unwrap()
        );
        let parsed = catch_unwind(|| {
            Format::Json
                .parse::<RetryConfig>(&json)
                .and_then(|c| c.validate().map(|()| c))
        });
        match parsed {
            Err(_) => accepted.push(format!("PANIC {text:?}")),
            Ok(Ok(c)) => accepted.push(format!(
                "{text:?} accepted as max_pushback = {:?}",
                c.max_pushback
            )),
            Ok(Err(e)) => assert_eq!(e.path(), "max_pushback", "{text:?}: {e}"),
        }
        let direct = catch_unwind(|| parse_duration(text));
        if let Ok(Ok(d)) = direct {
            accepted.push(format!("parse_duration({text:?}) = Ok({d:?})"));
        }
    }
    assert!(accepted.is_empty(), "{}", accepted.join("\n"));
}

/// Absurd but in-range durations: accepted exactly or refused, never a panic; values at and
/// just beyond Duration::MAX.
#[test]
fn duration_extremes_never_panic() {
    let cases = [
        ("18446744073709551615.999999999s", true),
        ("18446744073709551616s", false),
        ("18446744073709551616ms", true),
        ("340282366920938463463374607431768211455ns", false),
        ("340282366920938463463374607431768211456ns", false),
        (
            "99999999999999999999999999999999999999999999999999999999h",
            false,
        ),
        ("0.999999999999999999s", true),
        ("0.9999999999999999999s", false),
        ("5124095576030431h", true),
        ("5124095576030432h", false),
        ("1h1h1h1h1h1h1h1h1h1h", true),
    ];
    for (text, ok) in cases {
        let got =
            catch_unwind(|| parse_duration(text)).unwrap_or_else(|_| panic!("panic on {text}"));
        assert_eq!(got.is_ok(), ok, "{text}: {got:?}");
    }
}

// ---------------------------------------------------------------------------------------
// (2) paths of endpoint errors

/// `ClientConfig::validate` says it checks every section; an endpoint that is not `IP:port`
/// should be refused there, at its index in the list.
#[test]
fn a_bad_endpoint_is_refused_by_the_config_check_at_its_index() {
    let mut wrong = Vec::new();
    for bad in [
        "x y",
        "host:99999",
        ":80",
        "http://x",
        "",
        "127.0.0.1",
        "localhost:80",
    ] {
        let text = format!("endpoints = [\"127.0.0.1:80\", {bad:?}]");
        match cfg(&text) {
            Ok(_) => wrong.push(format!("ClientConfig accepted endpoint {bad:?}")),
            Err(e) if e.path() != "endpoints[1]" => {
                wrong.push(format!("{bad:?}: path {:?} ({e})", e.path()))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The whole path a user takes: the second endpoint is bad; the error should name
/// `endpoints[1]`, not the list as a whole.
#[test]
fn building_from_a_file_names_the_bad_endpoint_by_index() {
    let text = "endpoints = [\"127.0.0.1:80\", \"127.0.0.1:81\", \"x y\"]";
    let err = Client::from_toml_str(text).expect_err("refused");
    assert_eq!(err.path(), "endpoints[2]", "{err}");
}

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

// ---------------------------------------------------------------------------------------
// (3) unknown / typo'd / duplicate keys, wrong types, unicode

#[test]
fn typos_duplicates_and_wrong_types_are_refused_with_their_path() {
    let cases: Vec<(Format, String, &str)> = vec![
        (Format::Toml, format!("{EP}[retry]\nmax_retries = 1\nmax_retries = 2"), "*"),
        (Format::Toml, format!("{EP}[retry]\n[retry]"), "*"),
        (Format::Toml, format!("{EP}[budget]\nratio = 0.1\n[budget]\nratio = 0.2"), "*"),
        (Format::Toml, format!("{EP}[rеtry]\nmax_retries = 1"), "*"), // Cyrillic е: TOML refuses bare non-ASCII keys
        (Format::Toml, format!("{EP}[retry]\nMax_Retries = 1"), "retry.Max_Retries"),
        (Format::Toml, format!("{EP}[retry]\n\"max_retries \" = 1"), "retry.max_retries "),
        (Format::Toml, format!("{EP}[budget]\nratio = \"NaN\""), "budget.ratio"),
        (Format::Toml, format!("{EP}[budget]\nratio = -0.0"), "?"),
        (Format::Toml, format!("{EP}service_name = 5"), "service_name"),
        (Format::Toml, format!("{EP}metrics = \"true\""), "metrics"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\" }}\nmax_retries = 1e3"), "routes[0].max_retries"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\", path_prefix2 = \"/b\" }}"), "routes[0].match.path_prefix2"),
        (Format::Toml, format!("{EP}[[routes]]\n[routes.match]\npath_prefix = \"/a\"\nmethod = \"GET\""), "routes[0].match.method"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ methods = [\"GET\", \"GET\"] }}"), "?"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ methods = [\"G\\u0000T\"] }}"), "routes[0].match.methods[0]"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/é\" }}"), "routes[0].match.path_prefix"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a b\" }}"), "routes[0].match.path_prefix"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\\n\" }}"), "routes[0].match.path_prefix"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ service = \"shop.Catalog\\t\" }}"), "routes[0].match.service"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ service = \"shop.Catalog\\n\" }}"), "routes[0].match.service"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ service = \"shop.Cätalog\" }}"), "?"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ service = \"a.S\", method = \"M\\r\" }}"), "routes[0].match.method"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\" }}\nhedge = {{ enabled = true, max_hedges = 0 }}"), "routes[0].hedge.max_hedges"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\" }}\nhedge = {{ delay = \"-1s\" }}"), "routes[0].hedge.delay"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\" }}\nhedge = {{ enabled = \"yes\" }}"), "routes[0].hedge.enabled"),
        (Format::Toml, format!("{EP}[[routes]]\nmatch = {{ path_prefix = \"/a\" }}\nhedge = {{ max_hedges = 2, extra = 1 }}"), "routes[0].hedge.extra"),
        (Format::Toml, format!("{EP}service_name = \"\""), "?"),
        (Format::Toml, format!("{EP}dns = \"x y:80\""), "dns"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nretry:\n  max_retries: 1\n  max_retries: 2\n".into(), "*"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nbudget: { ratio: 0x10 }\n".into(), "budget.ratio"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nretry: { max_retries: 0x10 }\n".into(), "?"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nretry: { max_retries: '3' }\n".into(), "retry.max_retries"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nretry: { max_retries: 3 }\n---\nretry: { max_retries: 9 }\n".into(), "*"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\n<<: { retry: { max_retries: 9 } }\n".into(), "*"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nhedge: off\n".into(), "?"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\nhedge: no\n".into(), "?"),
        (Format::Yaml, "endpoints: ['127.0.0.1:80']\ndeadline: { timeout: 1s }\n".into(), "?"),
        (Format::Yaml, "endpoints: &a ['127.0.0.1:80']\ndns: *a\n".into(), "dns"),
        (Format::Json, r#"{"endpoints": ["127.0.0.1:80"], "budget": {"ratio": 0.1, "ratio": 0.9}}"#.into(), "*"),
        (Format::Json, r#"{"endpoints": ["127.0.0.1:80"], "endpoints": ["127.0.0.1:81"]}"#.into(), "*"),
        (Format::Json, r#"{"endpoints": ["127.0.0.1:80"], "retry": {"max_retries": 18446744073709551616}}"#.into(), "retry.max_retries"),
        (Format::Json, r#"{"endpoints": ["127.0.0.1:80"], "retry": {"max_retries": 1e2}}"#.into(), "retry.max_retries"),
        (Format::Json, r#"{"endpoints": ["127.0.0.1:80"], "budget": {"ratio": -0}}"#.into(), "?"),
        (Format::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"service_name\": \"\\ud800\"}".into(), "*"),
        (Format::Json, "\u{feff}{\"endpoints\": [\"127.0.0.1:80\"]}".into(), "?"),
    ];
    let mut wrong = Vec::new();
    for (format, text, want) in cases {
        let got = catch_unwind(AssertUnwindSafe(|| ClientConfig::parse(format, &text)));
        match (got, want) {
            (Err(_), _) => wrong.push(format!("PANIC {format:?} {text:?}")),
            (Ok(r), "?") => eprintln!("INFO {format:?} {text:?} -> {:?}", r.map(|_| "accepted").map_err(|e| e.to_string())),
            (Ok(Ok(c)), want) => wrong.push(format!(
                "ACCEPTED {format:?} {text:?} (want error at {want}); retries={} ratio={} hedge={:?} dns={:?}",
                c.retry.max_retries, c.budget.ratio, c.hedge.is_some(), c.dns
            )),
            (Ok(Err(_)), "*") => {}
            (Ok(Err(e)), want) if e.path() != want => wrong.push(format!(
                "WRONG PATH {format:?} {text:?}: got {:?} ({e}), want {want}",
                e.path()
            )),
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// (4) accepted extremes then work

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

// ---------------------------------------------------------------------------------------
// (5) reload

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

// ---------------------------------------------------------------------------------------
// (6) gRPC service config

fn grpc(text: &str) -> Result<GrpcServiceConfig, meshless::ConfigError> {
    catch_unwind(|| GrpcServiceConfig::from_json_str(text))
        .unwrap_or_else(|_| panic!("PANIC on {text}"))
}

#[test]
fn grpc_hostile_values() {
    let retry = |fields: &str| {
        format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "a.S"}}], "retryPolicy": {{{fields}}}}}]}}"#
        )
    };
    let rp = |attempts: &str, init: &str, max: &str, codes: &str| {
        retry(&format!(
            r#""maxAttempts": {attempts}, "initialBackoff": {init}, "maxBackoff": {max}, "backoffMultiplier": 2, "retryableStatusCodes": {codes}"#
        ))
    };
    let ok_codes = r#"["UNAVAILABLE"]"#;
    let cases: Vec<(String, &str)> = vec![
        (rp("0", "\"0.1s\"", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.maxAttempts"),
        (rp("4294967296", "\"0.1s\"", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.maxAttempts"),
        (rp("3", "\"1e9s\"", "\"1e9s\"", ok_codes), "methodConfig[0].retryPolicy.initialBackoff"),
        (rp("3", "\"+\"", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.initialBackoff"),
        (rp("3", "0.1", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.initialBackoff"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"["UNAVAILABLE", "OK"]"#), "?"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[0]"#), "?"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[4294967310]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[14.0]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[""]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"["GRPC_UNAVAILABLE"]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[null]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (retry(r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"], "perAttemptRecvTimeout": "0s""#), "methodConfig[0].retryPolicy.perAttemptRecvTimeout"),
        (retry(r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"], "bogus": 1"#), "methodConfig[0].retryPolicy.bogus"),
        (retry(r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2"#), "methodConfig[0].retryPolicy*"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3}}]}"#.into(), "methodConfig[0].hedgingPolicy.hedgingDelay"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 1, "hedgingDelay": "1s"}}]}"#.into(), "methodConfig[0].hedgingPolicy.maxAttempts"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "1s", "nonFatalStatusCodes": ["NOPE"]}}]}"#.into(), "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "1s"}, "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#.into(), "methodConfig[0].hedgingPolicy"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}]}, {"name": [{"service": "a.S"}]}]}"#.into(), "methodConfig[1].name[0]*"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M"}, {"service": "a.S", "method": "M"}]}]}"#.into(), "methodConfig[0].name[1]*"),
        (r#"{"methodConfig": [{"name": [{}]}, {"name": [{}]}]}"#.into(), "methodConfig[1].name[0]*"),
        (r#"{"methodConfig": [{"name": [{"service": "", "method": "M"}]}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{"service": "a b"}], "timeout": "1s"}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{"service": "a/b"}], "timeout": "1s"}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M/N"}], "timeout": "1s"}]}"#.into(), "methodConfig[0].name[0].method"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M", "x": 1}]}]}"#.into(), "methodConfig[0].name[0].x"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "1e400s"}]}"#.into(), "methodConfig[0].timeout"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": 1}]}"#.into(), "methodConfig[0].timeout"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "waitForReady": true}]}"#.into(), "methodConfig[0].waitForReady"),
        (r#"{"methodConfig": {}}"#.into(), "methodConfig"),
        (r#"{"retryThrottling": {"maxTokens": -1, "tokenRatio": 0.1}}"#.into(), "retryThrottling.maxTokens"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 1e309}}"#.into(), "retryThrottling.tokenRatio"),
        (r#"{"retryThrottling": {"maxTokens": 10}}"#.into(), "retryThrottling*"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1, "x": 1}}"#.into(), "retryThrottling.x"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.00001}}"#.into(), "retryThrottling.tokenRatio"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}, "retryThrottling": {"maxTokens": 1, "tokenRatio": 0.1}}"#.into(), "*"),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        match grpc(&text) {
            r if want == "?" => eprintln!(
                "INFO {text} -> {:?}",
                r.map(|g| g
                    .methods
                    .iter()
                    .map(|m| m.retryable_codes.clone())
                    .collect::<Vec<_>>())
            ),
            Ok(parsed) => wrong.push(format!(
                "ACCEPTED {text} (want {want}): budget={:?} policies={:?}",
                parsed.budget.map(|b| b.ratio),
                parsed
                    .methods
                    .iter()
                    .map(|m| (&m.names, m.retry.as_ref().map(|r| r.max_retries)))
                    .collect::<Vec<_>>()
            )),
            Err(e) => {
                let path = e.path();
                let ok = match want.strip_suffix('*') {
                    Some(p) => path.starts_with(p),
                    None => path == want,
                };
                if !ok {
                    wrong.push(format!(
                        "WRONG PATH {text}: got {path:?} ({e}), want {want}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// What the importer accepts must make a valid client config, through both ways of using it
/// (`apply` to a client config, `routes()` on a client): otherwise the error comes later under
/// meshless's names instead of at the service config's field.
#[test]
fn what_grpc_import_accepts_is_a_valid_client_config() {
    let texts = [
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "retryPolicy": {"maxAttempts": 1000, "initialBackoff": "1ns", "maxBackoff": "18446744073709551615s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 1000, "hedgingDelay": "18446744073709551615s"}}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "18446744073709551615.999999999s"}]}"#,
        r#"{"retryThrottling": {"maxTokens": 1000, "tokenRatio": 1e300}}"#,
        r#"{"retryThrottling": {"maxTokens": 0.000001, "tokenRatio": 0.001}}"#,
        r#"{"methodConfig": [{"name": [{"service": ""}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a b"}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M?x"}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S", "method": ""}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"timeout": "1s"}]}"#,
    ];
    let mut wrong = Vec::new();
    for text in texts {
        let Ok(imported) = grpc(text) else { continue };
        let mut config = cfg(EP).unwrap();
        if catch_unwind(AssertUnwindSafe(|| imported.apply("a.S", "M", &mut config))).is_err() {
            wrong.push(format!("PANIC apply {text}"));
            continue;
        }
        if let Err(e) = config.validate() {
            wrong.push(format!(
                "imported {text}\n   but apply() gives an invalid config: {} ({e})",
                e.path()
            ));
        }
        let mut config = cfg(EP).unwrap();
        config.routes = imported.routes();
        if let Err(e) = config.validate() {
            wrong.push(format!(
                "imported {text}\n   but routes() give an invalid config: {} ({e})",
                e.path()
            ));
        }
        if let Ok(c) = ClientBuilder::from_config(&config) {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let _g = rt.enter();
            if catch_unwind(AssertUnwindSafe(|| c.build())).is_err() {
                wrong.push(format!("PANIC build {text}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// gRFC A2: a name with an empty service (or none) is the default entry; `{"service": ""}`
/// must apply to every call that no other entry names (as grpc-go and grpc-core read it).
#[test]
fn grpc_empty_service_string_is_the_default_entry() {
    let g = grpc(r#"{"methodConfig": [{"name": [{"service": ""}], "timeout": "3s"}]}"#)
        .expect("imports");
    let policy = g.policy_for("any.Service", "Any");
    assert!(
        policy.is_some(),
        "{{\"service\": \"\"}} imported but matches no call: {:?}",
        g.methods[0].names
    );
}

// ---------------------------------------------------------------------------------------
// random inputs never panic

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &[
    "endpoints",
    "dns",
    "service_name",
    "metrics",
    "connect_timeout",
    "http2_prior_knowledge",
    "deadline",
    "attempt_timeout",
    "budget",
    "retry",
    "balance",
    "breaker",
    "limit",
    "throttle",
    "hedge",
    "routes",
    "timeout",
    "header",
    "body_idle_timeout",
    "streaming_content_types",
    "deadline_header",
    "ratio",
    "min_per_second",
    "ttl",
    "max_retries",
    "backoff",
    "base",
    "cap",
    "kind",
    "replay_cap",
    "max_pushback",
    "defer_to_caller",
    "outlier",
    "interval",
    "consecutive_failures",
    "success_rate",
    "failure_percentage",
    "latency",
    "max_ejected_share",
    "algorithm",
    "fixed",
    "gradient",
    "aimd",
    "max",
    "min",
    "initial",
    "max_wait",
    "k",
    "window",
    "max_probability",
    "enabled",
    "max_hedges",
    "delay",
    "percentile",
    "min_samples",
    "max_extra_load",
    "match",
    "path_prefix",
    "methods",
    "service",
    "method",
    "idempotent",
    "failure_rate_threshold",
    "half_open_probes",
    "slow_call_duration",
    "threshold",
    "minimum_hosts",
    "stdev_factor",
    "factor",
    "decay",
    "default_rtt",
    "miss_weight",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "1e400",
    "-0.0",
    "0.5",
    "1.0",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "\"\"",
    "\"off\"",
    "\"none\"",
    "\"on\"",
    "\"0s\"",
    "\"1ns\"",
    "\"+\"",
    "\"1.5.3s\"",
    "\"-1s\"",
    "\"1e400s\"",
    "\"1y\"",
    "\"18446744073709551616ms\"",
    "\"18446744073709551615.999999999s\"",
    "\"250ms\"",
    "\"127.0.0.1:80\"",
    "\"[::1]:0\"",
    "\"x y\"",
    "\"/v1\"",
    "\"GET\"",
    "\"ü\"",
    "[]",
    "[\"127.0.0.1:1\"]",
    "[\"GET\", \"get\"]",
    "{}",
    "{ fixed = { max = 0 } }",
    "{ fixed = \"20ms\" }",
    "{ percentile = {} }",
    "\"fixed\"",
    "\"unlimited\"",
    "[[]]",
];

fn random_toml(rng: &mut Rng) -> String {
    let mut s = String::from(EP);
    let n = rng.next() % 8;
    for _ in 0..n {
        match rng.next() % 4 {
            0 => s.push_str(&format!("[{}]\n", rng.pick(KEYS))),
            1 => s.push_str(&format!("[{}.{}]\n", rng.pick(KEYS), rng.pick(KEYS))),
            2 => s.push_str("[[routes]]\n"),
            _ => {}
        }
        for _ in 0..(rng.next() % 4) {
            s.push_str(&format!("{} = {}\n", rng.pick(KEYS), rng.pick(VALUES)));
        }
    }
    s
}

fn random_json(rng: &mut Rng, depth: u32) -> String {
    let vals = [
        "0",
        "1",
        "-1",
        "2",
        "5",
        "1000",
        "1001",
        "4294967296",
        "1e309",
        "0.5",
        "null",
        "true",
        "\"\"",
        "\"0s\"",
        "\"-1s\"",
        "\"1e9s\"",
        "\"0.1s\"",
        "\"1s\"",
        "\"UNAVAILABLE\"",
        "\"nope\"",
        "\"a.S\"",
        "\"M\"",
        "[]",
        "{}",
    ];
    let keys = [
        "methodConfig",
        "name",
        "service",
        "method",
        "timeout",
        "retryPolicy",
        "hedgingPolicy",
        "maxAttempts",
        "initialBackoff",
        "maxBackoff",
        "backoffMultiplier",
        "retryableStatusCodes",
        "perAttemptRecvTimeout",
        "hedgingDelay",
        "nonFatalStatusCodes",
        "retryThrottling",
        "maxTokens",
        "tokenRatio",
        "waitForReady",
        "loadBalancingConfig",
    ];
    if depth == 0 || rng.next() % 3 == 0 {
        return rng.pick(&vals).to_string();
    }
    if rng.next() % 3 == 0 {
        let items: Vec<String> = (0..rng.next() % 3)
            .map(|_| random_json(rng, depth - 1))
            .collect();
        return format!("[{}]", items.join(","));
    }
    let items: Vec<String> = (0..rng.next() % 5)
        .map(|_| format!("\"{}\": {}", rng.pick(&keys), random_json(rng, depth - 1)))
        .collect();
    format!("{{{}}}", items.join(","))
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut panics = Vec::new();
    for i in 0..4000 {
        // random bytes (as lossy UTF-8) through every reader
        let len = (rng.next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for f in [Format::Toml, Format::Yaml, Format::Json] {
            if catch_unwind(|| ClientConfig::parse(f, &text)).is_err() {
                panics.push(format!("{f:?} bytes {bytes:?}"));
            }
        }
        if catch_unwind(|| GrpcServiceConfig::from_json_str(&text)).is_err() {
            panics.push(format!("grpc bytes {bytes:?}"));
        }
        if catch_unwind(|| parse_duration(&text)).is_err() {
            panics.push(format!("duration {text:?}"));
        }
        // random structured TOML
        let toml = random_toml(&mut rng);
        match catch_unwind(|| ClientConfig::from_toml_str(&toml)) {
            Err(_) => panics.push(format!("toml {toml:?}")),
            Ok(Ok(c)) => {
                // what is accepted round-trips, and builds
                let written = c.to_toml_string();
                match ClientConfig::from_toml_str(&written) {
                    Ok(again) if again == c => {}
                    other => panics.push(format!(
                        "round trip of accepted {toml:?} -> {written:?} -> {:?}",
                        other.map(|_| "different")
                    )),
                }
                if i % 8 == 0 {
                    let rt = tokio::runtime::Runtime::new().unwrap();
                    let _g = rt.enter();
                    if catch_unwind(AssertUnwindSafe(|| {
                        ClientBuilder::from_config(&c).and_then(|b| b.build())
                    }))
                    .is_err()
                    {
                        panics.push(format!("build panic {toml:?}"));
                    }
                }
            }
            Ok(Err(e)) => {
                let _ = e.to_string();
            }
        }
        let json = random_json(&mut rng, 5);
        if catch_unwind(|| GrpcServiceConfig::from_json_str(&json)).is_err() {
            panics.push(format!("grpc json {json}"));
        }
        let json = format!("{{\"methodConfig\": [{}]}}", random_json(&mut rng, 4));
        if let Ok(Ok(g)) = catch_unwind(|| GrpcServiceConfig::from_json_str(&json)) {
            let mut c = cfg(EP).unwrap();
            if catch_unwind(AssertUnwindSafe(|| {
                g.apply("a.S", "M", &mut c);
                let _ = g.routes();
                for m in &g.methods {
                    let _ = m.classifier();
                }
            }))
            .is_err()
            {
                panics.push(format!("grpc use {json}"));
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} problem(s):\n{}",
        panics.len(),
        panics
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A route no request could ever fit is refused at its field: a request's path and a gRPC
/// name are visible ASCII (spaces, control and non-ASCII characters percent-encoded).
#[test]
fn a_route_no_request_can_fit_is_refused_at_its_field() {
    let cases = [
        ("path_prefix = \"/é\"", "routes[0].match.path_prefix"),
        ("path_prefix = \"/a b\"", "routes[0].match.path_prefix"),
        ("path_prefix = \"/a\\n\"", "routes[0].match.path_prefix"),
        ("service = \"shop.Catalog\\t\"", "routes[0].match.service"),
        ("service = \"shop.Catalog\\n\"", "routes[0].match.service"),
        (
            "service = \"a.S\", method = \"M\\r\"",
            "routes[0].match.method",
        ),
    ];
    for (matcher, path) in cases {
        let text = format!("{EP}[[routes]]\nmatch = {{ {matcher} }}\ntimeout = \"1s\"\n");
        let err = cfg(&text).expect_err(matcher);
        assert_eq!(err.path(), path, "{matcher}: {err}");
    }
    for fine in [
        "path_prefix = \"/%C3%A9\"",
        "path_prefix = \"/a%20b\"",
        "service = \"a.S\", method = \"M\"",
    ] {
        let text = format!("{EP}[[routes]]\nmatch = {{ {fine} }}\ntimeout = \"1s\"\n");
        assert!(cfg(&text).is_ok(), "{fine}");
    }
}

/// gRFC A6 refuses tokenRatio 0 and so does the importer; a small positive tokenRatio, which
/// meshless's four decimal places would make 0, is refused at its field rather than becoming
/// the refused value silently.
#[test]
fn a_token_ratio_too_small_to_keep_is_refused_at_its_field() {
    let err = grpc(r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.00004}}"#)
        .expect_err("a ratio that rounds to nothing");
    assert_eq!(err.path(), "retryThrottling.tokenRatio", "{err}");
    let g = grpc(r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.0001}}"#)
        .expect("the smallest ratio kept");
    assert!(g.budget.expect("a budget").ratio > 0.0);
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

/// A YAML alias bomb: an error (or a value) quickly, no hang, no abort.
#[test]
fn yaml_alias_bomb_is_refused_quickly() {
    let mut text = String::from("endpoints: ['127.0.0.1:80']\nx0: &a0 [\"1s\"]\n");
    for i in 1..30 {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let t = std::time::Instant::now();
    let r = catch_unwind(|| ClientConfig::from_yaml_str(&text));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(r, Ok(Err(_))), "{:?}", r.map(|r| r.map(|_| ())));
    let mut text = String::from("endpoints: &e ['127.0.0.1:80']\n");
    text.push_str("routes: &r0 [{match: {}}]\n");
    let r = catch_unwind(|| ClientConfig::from_yaml_str(&text));
    assert!(r.is_ok());
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
