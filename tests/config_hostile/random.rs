//! Random bytes, and random TOML and JSON built from the real keys, never panic the parsers.

use super::*;

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
