//! Which port and which endpoints: several ports, IPv6, several slices, duplicates.

use crate::common::*;

/// One slice with `ports` and one ready address, no port name asked: the set is `expected`.
async fn only_tcp_port(ports: &str, expected: &str) {
    let (_api, tracker) = tracked(
        None,
        list(
            10,
            &[slice_ports("web-a", 9, "IPv4", ports, &[ready("10.0.0.1")])],
        ),
    )
    .await;
    tracker
        .wait_for("the only TCP port", &addrs(&[expected]))
        .await;
}

/// The docs: "the slice's only TCP port when none is given". A Service exposing DNS has a
/// UDP and a TCP port; its only TCP port is unambiguous.
#[tokio::test]
async fn without_a_port_name_the_only_tcp_port_is_used_beside_udp_ones() {
    let ports = r#"[{"name":"dns","protocol":"UDP","port":53},{"name":"dns-tcp","protocol":"TCP","port":5353}]"#;
    only_tcp_port(ports, "10.0.0.1:5353").await;
}

/// Same with SCTP beside it (a port without a protocol is TCP).
#[tokio::test]
async fn without_a_port_name_the_only_tcp_port_is_used_beside_sctp() {
    let ports = r#"[{"name":"sig","protocol":"SCTP","port":3868},{"name":"http","port":8080}]"#;
    only_tcp_port(ports, "10.0.0.1:8080").await;
}

/// Several ports: the named one, and each slice's own number for it (a named targetPort
/// resolves per pod).
#[tokio::test]
async fn the_named_port_among_several_and_per_slice_numbers() {
    let a = r#"[{"name":"metrics","port":9090},{"name":"http","port":8080,"protocol":"TCP"}]"#;
    let b = r#"[{"name":"http","port":8081},{"name":"grpc","port":9000}]"#;
    let (_api, tracker) = tracked(
        Some("http"),
        list(
            10,
            &[
                slice_ports(
                    "web-a",
                    9,
                    "IPv4",
                    a,
                    &[ready("10.0.0.1"), not_ready("10.0.0.2")],
                ),
                slice_ports("web-b", 9, "IPv4", b, &[ready("10.0.0.3")]),
            ],
        ),
    )
    .await;
    tracker
        .wait_for("named port", &addrs(&["10.0.0.1:8080", "10.0.0.3:8081"]))
        .await;
}

/// An IPv6-only Service over several slices, with a not-ready endpoint and an address listed
/// twice.
#[tokio::test]
async fn ipv6_slices_several_and_duplicates() {
    let (api, tracker) = tracked(
        Some("http"),
        list(
            10,
            &[
                slice(
                    "web-a",
                    8,
                    "IPv6",
                    80,
                    &[ready("fd00::1"), not_ready("fd00::2")],
                ),
                slice(
                    "web-b",
                    9,
                    "IPv6",
                    80,
                    &[ready("fd00::3"), ready("fd00::1")],
                ),
            ],
        ),
    )
    .await;
    tracker
        .wait_for("v6", &addrs(&["[fd00::1]:80", "[fd00::3]:80"]))
        .await;
    // fd00::1 leaves web-a; web-b still lists it.
    api.send(&event(
        "MODIFIED",
        &slice("web-a", 11, "IPv6", 80, &[ready("fd00::2")]),
    ));
    tracker
        .wait_for(
            "v6 after",
            &addrs(&["[fd00::1]:80", "[fd00::2]:80", "[fd00::3]:80"]),
        )
        .await;
    api.send(&event("DELETED", &slice("web-b", 12, "IPv6", 80, &[])));
    tracker
        .wait_for("web-b gone", &addrs(&["[fd00::2]:80"]))
        .await;
}

/// An endpoint moves from one slice to another (the controller rebalancing): added to the
/// new one first, then dropped from the old one. It stays throughout, never removed.
#[tokio::test]
async fn an_endpoint_moving_between_slices_is_never_removed() {
    let (api, tracker) = tracked(
        Some("http"),
        list(
            10,
            &[
                slice(
                    "web-a",
                    8,
                    "IPv4",
                    80,
                    &[ready("10.0.0.1"), ready("10.0.0.2")],
                ),
                slice("web-b", 9, "IPv4", 80, &[ready("10.0.0.3")]),
            ],
        ),
    )
    .await;
    let all = addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    tracker.wait_for("initial", &all).await;
    api.send(&event(
        "MODIFIED",
        &slice(
            "web-b",
            11,
            "IPv4",
            80,
            &[ready("10.0.0.3"), ready("10.0.0.2")],
        ),
    ));
    api.send(&event(
        "MODIFIED",
        &slice("web-a", 12, "IPv4", 80, &[ready("10.0.0.1")]),
    ));
    barrier(&api, &tracker, 13, &all).await;
    let changes = tracker.changes.lock().unwrap().clone();
    assert!(
        !changes.contains(&"-10.0.0.2:80".to_string()),
        "{changes:?}"
    );
}

/// Conditions: absent `ready` is ready; `ready:false, serving:true, terminating:true` (a
/// terminating pod still serving) gets nothing new while others exist (documented: no
/// serving fallback yet); unknown fields in the object are ignored.
#[tokio::test]
async fn conditions_and_unknown_fields() {
    let eps = [
        Ep {
            ip: "10.0.0.1",
            ready: None,
            serving: None,
            terminating: None,
        },
        Ep {
            ip: "10.0.0.2",
            ready: Some(false),
            serving: Some(true),
            terminating: Some(true),
        },
        Ep {
            ip: "10.0.0.3",
            ready: Some(true),
            serving: Some(true),
            terminating: None,
        },
    ];
    let mut s = slice("web-a", 8, "IPv4", 80, &eps);
    // A field from a future API version, at the slice's top level and in an endpoint.
    s = s.replacen(
        r#""addressType""#,
        r#""futureField":{"x":[1,2]},"addressType""#,
        1,
    );
    s = s.replacen(r#""addresses""#, r#""zone":"z1","hints":{"forZones":[{"name":"z1"}],"forNodes":[{"name":"n"}]},"newThing":true,"addresses""#, 1);
    let (_api, tracker) = tracked(Some("http"), list(10, &[s])).await;
    tracker
        .wait_for("ready ones", &addrs(&["10.0.0.1:80", "10.0.0.3:80"]))
        .await;
}
