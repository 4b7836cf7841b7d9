//! DNS discovery: a host name re-resolved periodically, its addresses applied live.

use super::endpoint::{EndpointService, Endpoints};
use crate::balance::{Balance, Change};
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Resolves `host:port` every `every`, inserting new addresses and removing vanished ones.
pub(crate) fn spawn(
    name: String,
    every: Duration,
    endpoints: Endpoints,
    balance: Balance<SocketAddr, EndpointService>,
) -> tokio::task::JoinHandle<()> {
    let connect = move |addr: SocketAddr| endpoints.endpoint(addr);
    tokio::spawn(follow(name, every, resolve, connect, balance))
}

async fn resolve(name: String) -> io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host(name.as_str()).await?.collect())
}

/// The discovery loop, with the resolver and the endpoint constructor as parameters so that
/// tests can script what DNS answers.
///
/// A failed or empty resolution keeps the last known addresses: DNS trouble must not take down a
/// client whose endpoints are fine. Addresses that stay are left alone, so their measurements
/// and connections survive every refresh.
async fn follow<S, R, Fut, C>(
    name: String,
    every: Duration,
    resolve: R,
    connect: C,
    balance: Balance<SocketAddr, S>,
) where
    R: Fn(String) -> Fut,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>>,
    C: Fn(SocketAddr) -> Option<S>,
{
    let mut known: HashSet<SocketAddr> = HashSet::new();
    loop {
        match resolve(name.clone()).await {
            Ok(addrs) if addrs.is_empty() => {
                tracing::warn!(%name, "DNS returned no address; keeping the last ones");
            }
            Ok(addrs) => {
                let found: HashSet<SocketAddr> = addrs.into_iter().collect();
                let removed = known.difference(&found).map(|a| Change::Remove(*a));
                let added = found
                    .difference(&known)
                    .filter_map(|a| Some(Change::Insert(*a, connect(*a)?)));
                let changes: Vec<_> = removed.chain(added).collect();
                if !changes.is_empty() {
                    tracing::debug!(%name, changes = changes.len(), "DNS endpoints changed");
                    balance.apply(changes);
                }
                known = found;
            }
            Err(e) => {
                tracing::warn!(%name, error = %e, "DNS resolution failed; keeping the last endpoints");
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn keys(balance: &Balance<SocketAddr, ()>) -> Vec<u16> {
        let mut ports: Vec<u16> = balance.endpoints().iter().map(|e| e.key.port()).collect();
        ports.sort();
        ports
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_applied_live_and_failures_keep_the_last_set() {
        // What DNS answers at each refresh: None is a resolution error.
        let script: Vec<Option<Vec<u16>>> = vec![
            Some(vec![1, 2]),
            Some(vec![2, 3]),
            None,
            Some(vec![]),
            Some(vec![3]),
        ];
        let answers = Arc::new(Mutex::new(script.into_iter()));
        let resolve = move |_name: String| {
            let next = answers.lock().unwrap().next().flatten();
            async move {
                match next {
                    Some(ports) => Ok(ports.into_iter().map(addr).collect()),
                    None => Err(io::Error::other("SERVFAIL")),
                }
            }
        };
        let balance: Balance<SocketAddr, ()> = Balance::builder().build();
        let every = Duration::from_secs(5);
        tokio::spawn(follow(
            "svc:80".into(),
            every,
            resolve,
            |_| Some(()),
            balance.clone(),
        ));

        let mut seen = Vec::new();
        for _ in 0..5 {
            tokio::task::yield_now().await;
            seen.push(keys(&balance));
            tokio::time::sleep(every).await;
        }
        assert_eq!(
            seen,
            [vec![1, 2], vec![2, 3], vec![2, 3], vec![2, 3], vec![3]]
        );
    }
}
