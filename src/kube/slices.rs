//! The ready addresses of one Service, kept from the EndpointSlice events of kube-runtime's
//! watcher, and the changes that each event makes to them.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::runtime::watcher::Event;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

/// What an event changed: addresses that left the Service, then addresses that joined it,
/// each sorted so that the balancer sees the same order on every run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) removed: Vec<SocketAddr>,
    pub(crate) added: Vec<SocketAddr>,
}

/// The Service's EndpointSlices as last seen, reduced to their ready addresses.
#[derive(Debug)]
pub(crate) struct Slices {
    /// The port to use, by name; `None` takes a slice's only port.
    port: Option<String>,
    /// Ready addresses by slice name: slices of one namespace, so the name is unique.
    by_slice: HashMap<String, Vec<SocketAddr>>,
    /// The slices of a relist in progress (between `Init` and `InitDone`): they replace
    /// `by_slice` whole when it completes, so that a slice the relist no longer lists goes.
    relist: Option<HashMap<String, Vec<SocketAddr>>>,
    /// The addresses handed out: the union of `by_slice`, each once however many slices list it.
    published: BTreeSet<SocketAddr>,
}

impl Slices {
    pub(crate) fn new(port: Option<String>) -> Self {
        Slices {
            port,
            by_slice: HashMap::new(),
            relist: None,
            published: BTreeSet::new(),
        }
    }

    /// Takes one watcher event; returns what it changed in the published set.
    pub(crate) fn apply(&mut self, event: Event<EndpointSlice>) -> Diff {
        match event {
            Event::Apply(slice) => {
                let addrs = self.ready(&slice);
                self.by_slice.insert(slice_name(&slice), addrs);
            }
            Event::Delete(slice) => {
                self.by_slice.remove(&slice_name(&slice));
            }
            Event::Init => {
                self.relist = Some(HashMap::new());
                // Nothing changes until the relist is complete: until then the last set is
                // the best one there is.
                return Diff::default();
            }
            Event::InitApply(slice) => {
                let addrs = self.ready(&slice);
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(slice_name(&slice), addrs);
                return Diff::default();
            }
            Event::InitDone => {
                self.by_slice = self.relist.take().unwrap_or_default();
            }
        }
        self.publish()
    }

    /// Recomputes the union and diffs it against what was handed out. Addresses that stay are
    /// in neither list, so the balancer keeps their measurements and connections.
    fn publish(&mut self) -> Diff {
        let all: BTreeSet<SocketAddr> = self.by_slice.values().flatten().copied().collect();
        // A dual-stack Service lists each pod once per address family, in slices of their
        // own: one family only, or every pod would weigh double (and the other family may not
        // be routable from here). IPv4 when the Service has any; IPv6 for an IPv6-only one.
        let now: BTreeSet<SocketAddr> = if all.iter().any(SocketAddr::is_ipv4) {
            all.into_iter().filter(SocketAddr::is_ipv4).collect()
        } else {
            all
        };
        let diff = Diff {
            removed: self.published.difference(&now).copied().collect(),
            added: now.difference(&self.published).copied().collect(),
        };
        self.published = now;
        diff
    }

    /// The slice's endpoints that take new requests, at the chosen port.
    fn ready(&self, slice: &EndpointSlice) -> Vec<SocketAddr> {
        let name = slice_name(slice);
        // FQDN slices name hosts, not addresses: following them would mean resolving names,
        // which `ClientBuilder::dns` does for a name that is known up front.
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            tracing::debug!(slice = %name, address_type = %slice.address_type, "EndpointSlice skipped: not IP addresses");
            return Vec::new();
        }
        let Some(port) = self.port_of(slice.ports.as_deref().unwrap_or_default()) else {
            tracing::warn!(slice = %name, port = ?self.port, "EndpointSlice skipped: no such TCP port (name the port when the Service has several)");
            return Vec::new();
        };
        let mut addrs: Vec<SocketAddr> = slice
            .endpoints
            .iter()
            .filter(|e| takes_requests(e))
            // The addresses of one endpoint are the same pod (dual stack at most): the API
            // lets consumers use the first only, and counting more would weigh the pod double.
            .filter_map(|e| e.addresses.first()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    fn port_of(&self, ports: &[EndpointPort]) -> Option<u16> {
        // The API leaves `protocol` out for TCP.
        let tcp = |p: &&EndpointPort| p.protocol.as_deref().unwrap_or("TCP") == "TCP";
        let port = match &self.port {
            Some(wanted) => ports
                .iter()
                .filter(tcp)
                .find(|p| p.name.as_deref() == Some(wanted.as_str()))?,
            // The only TCP port, UDP or SCTP ones beside it (DNS serves both on port 53).
            None => {
                let mut tcp_ports = ports.iter().filter(tcp);
                match (tcp_ports.next(), tcp_ports.next()) {
                    (Some(only), None) => only,
                    _ => return None,
                }
            }
        };
        // An absent port means "all ports" in the API: nothing to dial.
        u16::try_from(port.port?).ok().filter(|p| *p != 0)
    }
}

/// Ready, and not terminating: a terminating endpoint finishes what it has but gets nothing
/// new. The API says an absent `ready` is to be read as ready.
fn takes_requests(endpoint: &Endpoint) -> bool {
    let conditions = endpoint.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    ready && !terminating
}

fn slice_name(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

#[cfg(test)]
#[path = "slices_tests.rs"]
mod tests;
