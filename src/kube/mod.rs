//! Kubernetes discovery: the endpoints of a Service, from its EndpointSlices, followed live
//! through kube-runtime's [`watcher`](kube::runtime::watcher()) (feature `kube`).
//!
//! [`KubeService`] names the Service (a [`kube::Client`], the namespace, the name and the port
//! name). Hand it to [`ClientBuilder::kubernetes`](crate::http::ClientBuilder::kubernetes) for a
//! [`Client`](crate::http::Client) that follows it, or turn it into a
//! [`tower::discover::Discover`] stream for any balancer with [`KubeService::discover_with`].
//!
//! | what the EndpointSlices say | what the balancer does |
//! |---|---|
//! | an endpoint `ready` (or without `ready`: the API reads that as ready) and not `terminating` | it is an endpoint |
//! | not ready, or terminating | removed: no new request, those in flight finish |
//! | the same address in several slices | one endpoint, until the last slice drops it |
//! | a slice deleted | its endpoints removed (unless another slice lists them) |
//! | a watch restart (410 Gone, a dropped connection): relist | only the difference applied: an address listed before and after keeps its measurements, ejection and connections |
//! | the API server failing | the last endpoints stay; the watch is retried with kube-runtime's default backoff (0.8 s doubling to 30 s) |
//! | a Service scaled to zero | no endpoint: requests fail fast with [`Kind::NoReadyEndpoint`](crate::error::Kind::NoReadyEndpoint) |
//!
//! The port is the slice's port with the name given (the Service's port name, which is the
//! name in its EndpointSlices), or the slice's only TCP port when none is given. FQDN slices
//! are skipped. An endpoint with several addresses (dual stack) is used at its first.
//!
//! The pods' addresses are dialled directly, so the process needs to reach the pod network
//! (it runs in the cluster), and its service account needs `list` and `watch` on
//! `endpointslices` in the `discovery.k8s.io` API group of the namespace.
//!
//! **TLS and the Kubernetes version.** This feature compiles kube without TLS and picks no
//! k8s-openapi version: your own `kube` dependency (whose default features bring rustls) adds
//! TLS for an `https` API server through cargo's feature unification, and your binary's
//! `k8s-openapi` dependency picks the version (`features = ["v1_33"]` or later), as kube asks of
//! every binary. EndpointSlice `discovery.k8s.io/v1` reads the same in every version.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use meshless::http::Client;
//! use meshless::kube::KubeService;
//!
//! let kube = kube::Client::try_default().await?;
//! let client = Client::builder()
//!     .kubernetes(KubeService::new(kube, "shop", "payments").port("http"))
//!     .authority("payments.shop.svc")
//!     .build()?;
//! let res = client.get("/v1/quote").await?;
//! # Ok(()) }
//! ```

mod client;
mod discover;
#[cfg(feature = "testing")]
mod mock;
mod slices;

pub use self::discover::EndpointSliceDiscover;
#[cfg(feature = "testing")]
pub use self::mock::{ApiRequests, MockApiServer};

use self::slices::Slices;
use crate::error::ConfigError;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use std::fmt;
use std::net::SocketAddr;

/// A Kubernetes Service to follow: where its EndpointSlices are and which port to use.
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let api = meshless::kube::MockApiServer::start().await?;
/// // In a cluster: kube::Client::try_default().await?
/// let kube = api.client()?;
/// use meshless::kube::KubeService;
/// let service = KubeService::new(kube, "shop", "payments").port("http");
/// assert!(format!("{service:?}").contains(r#"name: "payments""#));
/// # Ok(()) }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct KubeService {
    client: kube::Client,
    namespace: String,
    name: String,
    port: Option<String>,
}

impl KubeService {
    /// The Service `name` in `namespace`, read through `client`. Its slice's only TCP port is
    /// used unless [`port`](Self::port) names one.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let api = meshless::kube::MockApiServer::start().await?;
    /// // In a cluster: kube::Client::try_default().await?
    /// let kube = api.client()?;
    /// let service = meshless::kube::KubeService::new(kube, "default", "web");
    /// assert!(service.discover().is_ok());
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        KubeService {
            client,
            namespace: namespace.into(),
            name: name.into(),
            port: None,
        }
    }

    /// Uses the port with this name (the name of the Service's port, as its EndpointSlices
    /// carry it); needed when the Service has several ports.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let api = meshless::kube::MockApiServer::start().await?;
    /// // In a cluster: kube::Client::try_default().await?
    /// let kube = api.client()?;
    /// let service = meshless::kube::KubeService::new(kube, "default", "web").port("http");
    /// let bad = meshless::kube::KubeService::new(api.client()?, "default", "web").port("HTTP");
    /// assert_eq!(bad.discover().unwrap_err().setting(), "kubernetes.port");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn port(mut self, name: impl Into<String>) -> Self {
        self.port = Some(name.into());
        self
    }

    /// The Service's endpoints as a discovery stream whose service is the address itself:
    /// for a balancer that opens its own connections, or to watch the changes.
    ///
    /// Fails with a [`ConfigError`] naming `kubernetes.namespace`, `kubernetes.name` or
    /// `kubernetes.port` when one is not a valid Kubernetes name. Needs a tokio runtime when
    /// polled.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let api = meshless::kube::MockApiServer::start().await?;
    /// # api.set_list(r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"web-1","resourceVersion":"1"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"name":"http","port":8080}]}]}"#);
    /// // In a cluster: kube::Client::try_default().await?
    /// let kube = api.client()?;
    /// use futures_core::Stream;
    /// use meshless::balance::Change;
    /// use std::pin::Pin;
    ///
    /// let mut changes = meshless::kube::KubeService::new(kube, "shop", "web").discover()?;
    /// let first = std::future::poll_fn(|cx| Pin::new(&mut changes).poll_next(cx)).await;
    /// match first {
    ///     Some(Ok(Change::Insert(addr, _))) => assert_eq!(addr.to_string(), "10.0.0.1:8080"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn discover(&self) -> Result<EndpointSliceDiscover<SocketAddr>, ConfigError> {
        self.discover_with(|addr| addr)
    }

    /// The Service's endpoints as a [`tower::discover::Discover`] stream, `make` opening the
    /// service of each new address. Feed it to [`Balance::discover`](crate::balance::Balance::discover)
    /// or any balancer that takes a `Discover`. See [`EndpointSliceDiscover`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let api = meshless::kube::MockApiServer::start().await?;
    /// # api.set_list(r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"web-1","resourceVersion":"1"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"name":"http","port":8080}]}]}"#);
    /// // In a cluster: kube::Client::try_default().await?
    /// let kube = api.client()?;
    /// use meshless::balance::Balance;
    /// use tower::service_fn;
    ///
    /// let changes = meshless::kube::KubeService::new(kube, "shop", "web").discover_with(|addr| {
    ///     // Any service per endpoint: a hyper-util client dialling `addr`, say.
    ///     service_fn(move |_req: http::Request<()>| async move {
    ///         Ok::<_, std::io::Error>(http::Response::new(format!("from {addr}")))
    ///     })
    /// })?;
    /// let balance = Balance::builder().build();
    /// let _task = balance.discover(changes);
    /// while balance.is_empty() {
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// }
    /// assert_eq!(balance.endpoints()[0].key.to_string(), "10.0.0.1:8080");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn discover_with<S, F>(&self, mut make: F) -> Result<EndpointSliceDiscover<S>, ConfigError>
    where
        F: FnMut(SocketAddr) -> S + Send + 'static,
    {
        self.discover_filtered(Box::new(move |addr| Some(make(addr))))
    }

    pub(crate) fn discover_filtered<S>(
        &self,
        make: discover::MakeService<S>,
    ) -> Result<EndpointSliceDiscover<S>, ConfigError> {
        self.validate()?;
        let api = kube::Api::<EndpointSlice>::namespaced(self.client.clone(), &self.namespace);
        // The label the EndpointSlice controller puts on every slice of the Service.
        let selector = format!("kubernetes.io/service-name={}", self.name);
        let service = format!("{}/{}", self.namespace, self.name);
        let config = watcher::Config::default().labels(&selector);
        let logged_as = service.clone();
        // A new watcher lists afresh: what a `410 Gone` at the start of a watch asks for.
        let watch: discover::Watch = Box::new(move || {
            let events = discover::SkipUndecodable::new(
                Box::pin(watcher(api.clone(), config.clone())),
                logged_as.clone(),
            );
            Box::pin(events.default_backoff())
        });
        Ok(EndpointSliceDiscover::new(
            watch,
            Slices::new(self.port.clone()),
            make,
            service,
        ))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // The checks keep the label selector to the one label: a name cannot smuggle `,` or `=`.
        check_name("kubernetes.namespace", &self.namespace, 63)?;
        check_name("kubernetes.name", &self.name, 63)?;
        // A Service's name is a DNS-1035 label: it starts with a letter.
        if !self.name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(ConfigError::new(
                "kubernetes.name",
                format!(
                    "{:?} is not a Service name (it must start with a letter)",
                    self.name
                ),
            ));
        }
        if let Some(port) = &self.port {
            check_port_name(port)?;
        }
        Ok(())
    }
}

/// A DNS label as Kubernetes names are: lowercase letters, digits and `-`, not at either end.
fn check_name(setting: &'static str, name: &str, max: usize) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    match valid {
        true => Ok(()),
        false => Err(ConfigError::new(
            setting,
            format!(
                "{name:?} is not a Kubernetes name (1 to {max} lowercase letters, digits or '-', not at either end)"
            ),
        )),
    }
}

/// A port's name as Kubernetes takes it (IANA service name): a name of up to 15 characters
/// with at least one letter and no `--`. A number is no port name: no slice would ever match
/// it, and the client would wait for endpoints forever.
fn check_port_name(port: &str) -> Result<(), ConfigError> {
    check_name("kubernetes.port", port, 15)?;
    if !port.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(ConfigError::new(
            "kubernetes.port",
            format!("{port:?} is a number, not a port name (names have a letter: \"http\")"),
        ));
    }
    if port.contains("--") {
        return Err(ConfigError::new(
            "kubernetes.port",
            format!("{port:?} is not a port name ('-' may not follow '-')"),
        ));
    }
    Ok(())
}

impl fmt::Debug for KubeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // kube's client has no Debug of its own.
        f.debug_struct("KubeService")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}
