//! `ClientBuilder::kubernetes`: a client whose endpoints follow a Kubernetes Service.

use super::KubeService;
use crate::http::ClientBuilder;

impl ClientBuilder {
    /// The endpoints are those of a Kubernetes Service, followed live from its EndpointSlices
    /// (feature `kube`): ready pods are endpoints, terminating ones stop getting requests and
    /// finish those they have, and an address that stays through a watch restart keeps its
    /// measurements and connections. See [`crate::kube`] for the whole behavior.
    ///
    /// Instead of [`dns`](Self::dns) (both is a [`ConfigError`](crate::ConfigError));
    /// [`endpoints`](Self::endpoints) may add static ones. [`build`](Self::build) checks the
    /// names (a `ConfigError` naming `kubernetes.namespace`, `kubernetes.name` or
    /// `kubernetes.port`) and needs a tokio runtime. Until the first list arrives there is no
    /// endpoint, and requests wait for one up to the fail-fast timeout.
    ///
    /// Relative URIs go to the endpoint's address as authority unless
    /// [`authority`](Self::authority) names the Service (`payments.shop.svc`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use meshless::kube::KubeService;
    /// let kube = kube::Client::try_default().await?;
    /// let client = meshless::http::Client::builder()
    ///     .kubernetes(KubeService::new(kube, "shop", "payments").port("http"))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn kubernetes(self, service: KubeService) -> Self {
        self.discovery("kubernetes", move |endpoints, balance| {
            let changes =
                service.discover_filtered(Box::new(move |addr| endpoints.endpoint(addr)))?;
            Ok(balance.discover(changes))
        })
    }
}
