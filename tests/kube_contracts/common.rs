//! Slice and event builders, and a tracker of the discovered set.

use futures_core::Stream;
use meshless::balance::Change;
use meshless::kube::{KubeService, MockApiServer};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a condition may take before the test fails.
pub const BOUND: Duration = Duration::from_secs(15);

#[derive(Clone, Copy)]
pub struct Ep<'a> {
    pub ip: &'a str,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

pub fn ready(ip: &str) -> Ep<'_> {
    Ep {
        ip,
        ready: Some(true),
        serving: Some(true),
        terminating: Some(false),
    }
}

pub fn not_ready(ip: &str) -> Ep<'_> {
    Ep {
        ip,
        ready: Some(false),
        serving: Some(false),
        terminating: Some(false),
    }
}

fn ep_json(e: &Ep) -> String {
    let mut conds = Vec::new();
    if let Some(r) = e.ready {
        conds.push(format!(r#""ready":{r}"#));
    }
    if let Some(s) = e.serving {
        conds.push(format!(r#""serving":{s}"#));
    }
    if let Some(t) = e.terminating {
        conds.push(format!(r#""terminating":{t}"#));
    }
    format!(
        r#"{{"addresses":["{}"],"conditions":{{{}}}}}"#,
        e.ip,
        conds.join(",")
    )
}

/// A slice with raw `ports` JSON.
pub fn slice_ports(name: &str, rv: u32, family: &str, ports: &str, eps: &[Ep]) -> String {
    let endpoints: Vec<String> = eps.iter().map(ep_json).collect();
    format!(
        r#"{{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{{"name":"{name}","namespace":"shop","resourceVersion":"{rv}","labels":{{"kubernetes.io/service-name":"web"}}}},"addressType":"{family}","endpoints":[{}],"ports":{ports}}}"#,
        endpoints.join(",")
    )
}

/// A slice with one TCP port named `http`.
pub fn slice(name: &str, rv: u32, family: &str, port: u16, eps: &[Ep]) -> String {
    slice_ports(
        name,
        rv,
        family,
        &format!(r#"[{{"name":"http","protocol":"TCP","port":{port}}}]"#),
        eps,
    )
}

pub fn event(kind: &str, object: &str) -> String {
    format!(r#"{{"type":"{kind}","object":{object}}}"#)
}

pub fn list(rv: u32, slices: &[String]) -> String {
    format!(
        r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{rv}"}},"items":[{}]}}"#,
        slices.join(",")
    )
}

pub fn addrs(texts: &[&str]) -> BTreeSet<SocketAddr> {
    texts
        .iter()
        .map(|t| t.parse().expect("an address"))
        .collect()
}

/// The set a discovery stream has published so far, kept by a task polling it. An insert of
/// an address already in, or a remove of one not in, is recorded as an anomaly.
#[derive(Clone)]
pub struct Tracker {
    pub set: Arc<Mutex<BTreeSet<SocketAddr>>>,
    pub anomalies: Arc<Mutex<Vec<String>>>,
    pub changes: Arc<Mutex<Vec<String>>>,
}

impl Tracker {
    pub fn start(service: &KubeService) -> Tracker {
        let mut stream = service.discover().expect("valid names");
        let tracker = Tracker {
            set: Arc::default(),
            anomalies: Arc::default(),
            changes: Arc::default(),
        };
        let t = tracker.clone();
        tokio::spawn(async move {
            while let Some(change) =
                std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await
            {
                match change {
                    Ok(Change::Insert(addr, _)) => {
                        t.changes.lock().unwrap().push(format!("+{addr}"));
                        if !t.set.lock().unwrap().insert(addr) {
                            t.anomalies
                                .lock()
                                .unwrap()
                                .push(format!("insert of {addr} twice"));
                        }
                    }
                    Ok(Change::Remove(addr)) => {
                        t.changes.lock().unwrap().push(format!("-{addr}"));
                        if !t.set.lock().unwrap().remove(&addr) {
                            t.anomalies
                                .lock()
                                .unwrap()
                                .push(format!("remove of absent {addr}"));
                        }
                    }
                    Err(never) => match never {},
                }
            }
            t.anomalies.lock().unwrap().push("the stream ended".into());
        });
        tracker
    }

    pub fn now(&self) -> BTreeSet<SocketAddr> {
        self.set.lock().unwrap().clone()
    }

    /// Waits until the set equals `want`, at most [`BOUND`]; the assertion shows both.
    pub async fn wait_for(&self, what: &str, want: &BTreeSet<SocketAddr>) {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let now = self.now();
            if &now == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: the discovered set is {now:?}, expected {want:?} (changes {:?}, anomalies {:?})",
                self.changes.lock().unwrap(),
                self.anomalies.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let anomalies = self.anomalies.lock().unwrap().clone();
        assert!(anomalies.is_empty(), "{what}: {anomalies:?}");
    }
}

/// A mock API server listing `items`, and a tracker of `shop/web` (port `port`) once watching.
pub async fn tracked(port: Option<&str>, items: String) -> (MockApiServer, Tracker) {
    let api = MockApiServer::start().await.expect("mock API server");
    api.set_list(items);
    let mut service = KubeService::new(api.client().expect("kube client"), "shop", "web");
    if let Some(port) = port {
        service = service.port(port);
    }
    let tracker = Tracker::start(&service);
    crate::support::watching(&api, 1).await;
    (api, tracker)
}

/// A marker: a slice of its own whose address shows once every event sent before it was
/// applied (events are applied in order).
pub async fn barrier(
    api: &MockApiServer,
    tracker: &Tracker,
    rv: u32,
    expected_before: &BTreeSet<SocketAddr>,
) {
    let marker = slice("zz-marker", rv, "IPv4", 1, &[ready("10.255.255.254")]);
    assert_eq!(api.send(&event("ADDED", &marker)), 1, "a watch is open");
    let mut with = expected_before.clone();
    with.insert("10.255.255.254:1".parse().unwrap());
    tracker.wait_for("marker", &with).await;
    api.send(&event(
        "DELETED",
        &slice("zz-marker", rv + 1, "IPv4", 1, &[]),
    ));
    tracker.wait_for("marker gone", expected_before).await;
}
