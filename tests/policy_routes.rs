//! Routes in configuration files: `[[routes]]` in TOML, and the same shape in YAML and JSON,
//! read into the data the builder takes, checked with errors at their path in the file.
#![cfg(feature = "serde")]

use http::StatusCode;
use meshless::http::Client;
use meshless::policy::{ClientConfig, GrpcServiceConfig};
use meshless::route::{Route, RouteHedge};
use meshless::testing::{Behavior, Fleet};
use std::time::Duration;

const TOML: &str = r#"
endpoints = ["127.0.0.1:8080"]

[[routes]]
name = "reports"
match = { path_prefix = "/v1/reports" }
timeout = "30s"
max_retries = 0

[[routes]]
match = { methods = ["POST"], path_prefix = "/v1/orders" }
idempotent = true
hedge = { max_hedges = 1, delay = "20ms" }

[[routes]]
match = { service = "shop.Catalog", method = "Search" }
attempt_timeout = "0.25s"
hedge = "off"
"#;

fn expected() -> Vec<Route> {
    vec![
        Route::path_prefix("/v1/reports")
            .name("reports")
            .timeout(Duration::from_secs(30))
            .max_retries(0),
        Route::path_prefix("/v1/orders")
            .method(http::Method::POST)
            .idempotent(true)
            .hedge(
                RouteHedge::on()
                    .max_hedges(1)
                    .delay(Duration::from_millis(20)),
            ),
        Route::grpc_method("shop.Catalog", "Search")
            .attempt_timeout(Duration::from_millis(250))
            .hedge(RouteHedge::off()),
    ]
}

#[test]
fn toml_yaml_and_json_give_the_same_routes() {
    let toml = ClientConfig::from_toml_str(TOML).expect("valid TOML");
    assert_eq!(toml.routes, expected());
    let yaml = ClientConfig::from_yaml_str(
        r#"
endpoints: ["127.0.0.1:8080"]
routes:
  - name: reports
    match: { path_prefix: /v1/reports }
    timeout: 30s
    max_retries: 0
  - match: { methods: [POST], path_prefix: /v1/orders }
    idempotent: true
    hedge: { max_hedges: 1, delay: 20ms }
  - match: { service: shop.Catalog, method: Search }
    attempt_timeout: 0.25s
    hedge: off
"#,
    )
    .expect("valid YAML");
    assert_eq!(yaml.routes, expected());
    let json = ClientConfig::from_json_str(
        r#"{"endpoints": ["127.0.0.1:8080"], "routes": [
          {"name": "reports", "match": {"path_prefix": "/v1/reports"}, "timeout": "30s", "max_retries": 0},
          {"match": {"methods": ["POST"], "path_prefix": "/v1/orders"}, "idempotent": true,
           "hedge": {"max_hedges": 1, "delay": "20ms"}},
          {"match": {"service": "shop.Catalog", "method": "Search"}, "attempt_timeout": "0.25s", "hedge": "off"}
        ]}"#,
    )
    .expect("valid JSON");
    assert_eq!(json.routes, expected());
}

#[test]
fn routes_written_out_read_back_the_same() {
    let config = ClientConfig::from_toml_str(TOML).expect("valid TOML");
    let text = config.to_toml_string();
    let again = ClientConfig::from_toml_str(&text).expect("its own output reads back");
    assert_eq!(again, config, "{text}");
}

#[test]
fn bad_routes_in_a_file_are_placed_at_their_path() {
    let cases = [
        (
            "[[routes]]\nmatch = { path_prefix = '/a' }\n[[routes]]\nmatch = { path_prefix = 'b' }",
            "routes[1].match.path_prefix",
        ),
        (
            "[[routes]]\nmatch = { pathprefix = '/a' }",
            "routes[0].match.pathprefix",
        ),
        ("[[routes]]\ntimeout = '0s'", "routes[0].timeout"),
        ("[[routes]]\ntimeout = 5", "routes[0].timeout"),
        (
            "[[routes]]\nhedge = { max_hedges = 7 }",
            "routes[0].hedge.max_hedges",
        ),
        ("[[routes]]\nhedge = 'sometimes'", "routes[0].hedge"),
        (
            "[[routes]]\nmatch = { method = 'GET' }",
            "routes[0].match.method",
        ),
        (
            "[[routes]]\nmatch = { methods = ['GET', 'B AD'] }",
            "routes[0].match.methods[1]",
        ),
    ];
    for (routes, path) in cases {
        let text = format!("endpoints = ['127.0.0.1:1']\n{routes}");
        let err = ClientConfig::from_toml_str(&text).expect_err(routes);
        assert_eq!(err.path(), path, "{routes}: {err}");
    }
}

#[tokio::test]
async fn a_client_from_a_file_with_routes_runs_them() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE))
        .start()
        .await
        .expect("the fleet starts");
    let text = format!(
        "endpoints = ['{}']\nmetrics = false\n[retry]\nmax_retries = 2\nbackoff = {{ base = '1ms', cap = '1ms' }}\n\
         [balance.outlier]\nconsecutive_failures = 'off'\n\
         [[routes]]\nmatch = {{ path_prefix = '/once' }}\nmax_retries = 0\n",
        fleet.addrs()[0]
    );
    let path = std::env::temp_dir().join(format!("meshless-routes-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("written");
    let client = Client::from_file(&path).expect("a client");
    std::fs::remove_file(&path).expect("removed");
    client.get("/once").await.expect("answered");
    assert_eq!(fleet.totals().requests, 1);
    client.get("/other").await.expect("answered");
    assert_eq!(fleet.totals().requests, 4);
}

#[test]
fn a_grpc_service_config_becomes_routes_in_grpc_s_order() {
    let grpc = GrpcServiceConfig::from_json_str(
        r#"{"methodConfig": [
          {"name": [{}], "timeout": "1s"},
          {"name": [{"service": "a.S"}], "timeout": "2s",
           "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
             "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}},
          {"name": [{"service": "a.S", "method": "Fast"}],
           "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.01s"}}
        ]}"#,
    )
    .expect("a valid service config");
    let routes = grpc.routes();
    assert_eq!(routes.len(), 3);
    assert_eq!(
        routes[0],
        Route::grpc_method("a.S", "Fast")
            .max_retries(0)
            .idempotent(true)
            .hedge(
                RouteHedge::on()
                    .max_hedges(2)
                    .delay(Duration::from_millis(10))
            )
    );
    assert_eq!(
        routes[1],
        Route::grpc_service("a.S")
            .timeout(Duration::from_secs(2))
            .max_retries(2)
            .idempotent(true)
    );
    assert_eq!(routes[2], Route::any().timeout(Duration::from_secs(1)));
    let mut config = ClientConfig::default();
    config.endpoints = vec!["127.0.0.1:1".into()];
    config.routes = routes;
    config.validate().expect("the routes are valid");
}
