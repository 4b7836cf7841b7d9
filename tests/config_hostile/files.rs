//! Configuration files: durations that are not durations, endpoints named by their index, typos,
//! duplicates and wrong types at their path, routes no request can fit, YAML alias bombs.

use super::*;

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
