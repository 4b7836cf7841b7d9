//! Bad configuration is a `ConfigError` naming the field, before anything is watched.

use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};

async fn refused(service: KubeService) -> String {
    let setting = match service.discover() {
        Ok(_) => "accepted".to_string(),
        Err(e) => e.setting().to_string(),
    };
    let built = match Client::builder().kubernetes(service).build() {
        Ok(_) => "accepted".to_string(),
        Err(e) => e.setting().to_string(),
    };
    assert_eq!(setting, built, "discover() and build() disagree");
    setting
}

/// A port *number* given where a port *name* is expected ("8080", "0") can never match a
/// port name: Kubernetes port names (IANA_SVC_NAME) must contain at least one letter. The
/// docs promise a `ConfigError` naming `kubernetes.port` for a name that is not a valid
/// Kubernetes name; accepting it leaves the client with no endpoint, forever, silently.
#[tokio::test]
async fn a_port_number_where_a_port_name_is_expected_is_a_config_error() {
    let api = MockApiServer::start().await.expect("mock");
    let kube = api.client().expect("kube");
    let mut verdicts = Vec::new();
    for port in ["8080", "0", "443"] {
        let got = refused(KubeService::new(kube.clone(), "shop", "web").port(port)).await;
        verdicts.push(format!("{port:?} -> {got}"));
    }
    assert_eq!(
        verdicts,
        [
            r#""8080" -> kubernetes.port"#,
            r#""0" -> kubernetes.port"#,
            r#""443" -> kubernetes.port"#
        ]
    );
}

/// IANA_SVC_NAME also forbids two hyphens in a row.
#[tokio::test]
async fn a_port_name_with_consecutive_hyphens_is_a_config_error() {
    let api = MockApiServer::start().await.expect("mock");
    let kube = api.client().expect("kube");
    let got = refused(KubeService::new(kube, "shop", "web").port("http--alt")).await;
    assert_eq!(got, "kubernetes.port");
}

/// A Service name is a DNS-1035 label: it starts with a letter.
#[tokio::test]
async fn a_service_name_starting_with_a_digit_is_a_config_error() {
    let api = MockApiServer::start().await.expect("mock");
    let kube = api.client().expect("kube");
    let got = refused(KubeService::new(kube, "shop", "1web")).await;
    assert_eq!(got, "kubernetes.name");
}

/// The basic refusals the brief asks for (empty name, bad namespace, empty/too long port
/// name) and that valid edge names are accepted.
#[tokio::test]
async fn empty_and_malformed_names_are_refused_and_valid_edge_names_accepted() {
    let api = MockApiServer::start().await.expect("mock");
    let kube = api.client().expect("kube");
    let s = |ns: &str, name: &str| KubeService::new(kube.clone(), ns, name);
    assert_eq!(refused(s("shop", "")).await, "kubernetes.name");
    assert_eq!(refused(s("Shop", "web")).await, "kubernetes.namespace");
    assert_eq!(refused(s("shop/x", "web")).await, "kubernetes.namespace");
    assert_eq!(
        refused(s(&"a".repeat(64), "web")).await,
        "kubernetes.namespace"
    );
    assert_eq!(refused(s("shop", "web").port("")).await, "kubernetes.port");
    assert_eq!(
        refused(s("shop", "web").port("a".repeat(16))).await,
        "kubernetes.port"
    );
    assert_eq!(refused(s("shop", "web ")).await, "kubernetes.name");
    assert_eq!(
        refused(s(&"a".repeat(63), "web").port("a".repeat(15))).await,
        "accepted"
    );
    assert!(api.requests().is_empty(), "{:?}", api.requests());
}
