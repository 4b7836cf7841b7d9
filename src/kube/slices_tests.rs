use super::*;
use serde_json::json;

fn slice(name: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "1"},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .expect("an EndpointSlice")
}

fn http(port: u16) -> serde_json::Value {
    json!([{"name": "http", "port": port, "protocol": "TCP"}])
}

fn ep(ip: &str, ready: Option<bool>, terminating: bool) -> serde_json::Value {
    let mut conditions = json!({"terminating": terminating});
    if let Some(ready) = ready {
        conditions["ready"] = json!(ready);
    }
    json!({"addresses": [ip], "conditions": conditions})
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

fn addrs(texts: &[&str]) -> Vec<SocketAddr> {
    texts.iter().map(|t| addr(t)).collect()
}

#[test]
fn ready_endpoints_go_in_and_the_others_stay_out() {
    let mut slices = Slices::new(None);
    let diff = slices.apply(Event::Apply(slice(
        "web-a",
        http(8080),
        json!([
            ep("10.0.0.1", Some(true), false),
            ep("10.0.0.2", None, false),
            ep("10.0.0.3", Some(false), false),
            ep("10.0.0.4", Some(false), true),
            // The API never says both, but terminating wins: nothing new for it.
            ep("10.0.0.6", None, true),
            {"addresses": ["10.0.0.5"]},
        ]),
    )));
    assert_eq!(
        diff.added,
        addrs(&["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.5:8080"])
    );
    assert!(diff.removed.is_empty());
}

#[test]
fn an_address_in_two_slices_counts_once_and_leaves_with_the_last() {
    let mut slices = Slices::new(None);
    let a = |eps| Event::Apply(slice("web-a", http(80), eps));
    let b = |eps| Event::Apply(slice("web-b", http(80), eps));
    let both = json!([ep("10.0.0.1", Some(true), false)]);
    assert_eq!(slices.apply(a(both.clone())).added, addrs(&["10.0.0.1:80"]));
    assert_eq!(slices.apply(b(both)), Diff::default());
    assert_eq!(slices.apply(a(json!([]))), Diff::default());
    let gone = slices.apply(Event::Delete(slice("web-b", http(80), json!([]))));
    assert_eq!(gone.removed, addrs(&["10.0.0.1:80"]));
}

#[test]
fn a_terminating_endpoint_is_removed() {
    let mut slices = Slices::new(None);
    slices.apply(Event::Apply(slice(
        "web-a",
        http(80),
        json!([
            ep("10.0.0.1", Some(true), false),
            ep("10.0.0.2", Some(true), false)
        ]),
    )));
    let diff = slices.apply(Event::Apply(slice(
        "web-a",
        http(80),
        json!([
            ep("10.0.0.1", Some(true), false),
            ep("10.0.0.2", Some(false), true)
        ]),
    )));
    assert_eq!(diff.removed, addrs(&["10.0.0.2:80"]));
    assert!(diff.added.is_empty());
}

#[test]
fn a_relist_changes_only_what_changed_and_only_once_complete() {
    let mut slices = Slices::new(None);
    let ready = |ips: &[&str]| {
        serde_json::Value::Array(ips.iter().map(|ip| ep(ip, Some(true), false)).collect())
    };
    slices.apply(Event::Apply(slice(
        "web-a",
        http(80),
        ready(&["10.0.0.1", "10.0.0.2"]),
    )));
    slices.apply(Event::Apply(slice("web-b", http(80), ready(&["10.0.0.3"]))));
    assert_eq!(slices.apply(Event::Init), Diff::default());
    let listed = slice("web-a", http(80), ready(&["10.0.0.1", "10.0.0.4"]));
    assert_eq!(slices.apply(Event::InitApply(listed)), Diff::default());
    let diff = slices.apply(Event::InitDone);
    // web-b is not listed again: deleted while the watch was down.
    assert_eq!(diff.removed, addrs(&["10.0.0.2:80", "10.0.0.3:80"]));
    assert_eq!(diff.added, addrs(&["10.0.0.4:80"]));
}

#[test]
fn the_port_is_chosen_by_name_or_is_the_only_tcp_one() {
    let two = json!([
        {"name": "metrics", "port": 9090},
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]);
    let eps = json!([ep("10.0.0.1", Some(true), false)]);
    let mut named = Slices::new(Some("http".into()));
    let diff = named.apply(Event::Apply(slice("s", two.clone(), eps.clone())));
    assert_eq!(diff.added, addrs(&["10.0.0.1:8080"]));

    let mut unnamed = Slices::new(None);
    let diff = unnamed.apply(Event::Apply(slice("s", two, eps.clone())));
    assert!(diff.added.is_empty(), "ambiguous: several ports");
    let udp = json!([{"name": "dns", "port": 53, "protocol": "UDP"}]);
    assert!(
        unnamed
            .apply(Event::Apply(slice("s", udp, eps.clone())))
            .added
            .is_empty()
    );
    let all_ports = json!([{"name": ""}]);
    assert!(
        unnamed
            .apply(Event::Apply(slice("s", all_ports, eps)))
            .added
            .is_empty()
    );
}

#[test]
fn fqdn_slices_and_unparsable_addresses_are_skipped() {
    let mut slices = Slices::new(None);
    let mut fqdn = slice("s", http(80), json!([ep("db.example", Some(true), false)]));
    fqdn.address_type = "FQDN".into();
    assert_eq!(slices.apply(Event::Apply(fqdn)), Diff::default());
    let bad = slice("t", http(80), json!([ep("not-an-ip", Some(true), false)]));
    assert_eq!(slices.apply(Event::Apply(bad)), Diff::default());
    let mut v6 = slice("u", http(80), json!([ep("fd00::1", Some(true), false)]));
    v6.address_type = "IPv6".into();
    assert_eq!(
        slices.apply(Event::Apply(v6)).added,
        addrs(&["[fd00::1]:80"])
    );
}

#[test]
fn a_dual_stack_service_counts_each_pod_once_by_its_ipv4_address() {
    let mut slices = Slices::new(None);
    let mut v6 = slice(
        "web-v6",
        http(80),
        json!([ep("fd00::1", Some(true), false)]),
    );
    v6.address_type = "IPv6".into();
    // IPv6 alone: an IPv6-only Service.
    assert_eq!(
        slices.apply(Event::Apply(v6)).added,
        addrs(&["[fd00::1]:80"])
    );
    // Its IPv4 slice arrives: the same pod, counted once, by its IPv4 address.
    let v4 = slice(
        "web-v4",
        http(80),
        json!([ep("10.0.0.1", Some(true), false)]),
    );
    let diff = slices.apply(Event::Apply(v4));
    assert_eq!(diff.added, addrs(&["10.0.0.1:80"]));
    assert_eq!(diff.removed, addrs(&["[fd00::1]:80"]));
}
