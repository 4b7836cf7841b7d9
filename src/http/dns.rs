//! DNS discovery: a host name re-resolved periodically, its addresses applied live.

use super::endpoint::{EndpointService, Hyper};
use crate::balance::{Balance, Change};
use http::uri::Authority;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Resolves `host:port` every `every`, inserting new addresses and removing vanished ones. A
/// failed or empty resolution keeps the last known addresses: DNS trouble must not take down a
/// client whose endpoints are fine.
pub(crate) fn spawn(
    name: String,
    every: Duration,
    client: Hyper,
    balance: Balance<SocketAddr, EndpointService>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => {
                    let found: HashSet<SocketAddr> = addrs.collect();
                    if found.is_empty() {
                        tracing::warn!(%name, "DNS returned no address; keeping the last ones");
                    } else {
                        let changes = diff(&known, &found, &client);
                        if !changes.is_empty() {
                            tracing::debug!(%name, changes = changes.len(), "DNS endpoints changed");
                            balance.apply(changes);
                        }
                        known = found;
                    }
                }
                Err(e) => {
                    tracing::warn!(%name, error = %e, "DNS resolution failed; keeping the last endpoints")
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

fn diff(
    known: &HashSet<SocketAddr>,
    found: &HashSet<SocketAddr>,
    client: &Hyper,
) -> Vec<Change<SocketAddr, EndpointService>> {
    let removed = known.difference(found).map(|a| Change::Remove(*a));
    let added = found.difference(known).filter_map(|addr| {
        let authority: Authority = addr.to_string().parse().ok()?;
        Some(Change::Insert(
            *addr,
            EndpointService::new(client.clone(), authority),
        ))
    });
    removed.chain(added).collect()
}
