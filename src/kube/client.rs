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
    /// [`endpoints`](Self::endpoints) may add static ones (an address the Service lists too is
    /// one endpoint, which goes when the Service drops it). [`build`](Self::build) checks the
    /// names (a `ConfigError` naming `kubernetes.namespace`, `kubernetes.name` or
    /// `kubernetes.port`) and needs a tokio runtime. Until the first list arrives there is no
    /// endpoint, and requests wait for one up to the fail-fast timeout.
    ///
    /// Relative URIs go to the endpoint's address as authority unless
    /// [`authority`](Self::authority) names the Service (`payments.shop.svc`).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let api = meshless::kube::MockApiServer::start().await?;
    /// # api.set_list(r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"web-1","resourceVersion":"1"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"name":"http","port":8080}]}]}"#);
    /// // In a cluster: kube::Client::try_default().await?
    /// let kube = api.client()?;
    /// use meshless::kube::KubeService;
    ///
    /// let client = meshless::http::Client::builder()
    ///     .kubernetes(KubeService::new(kube, "shop", "web").port("http"))
    ///     .authority("web.shop.svc")
    ///     .build()?;
    /// while client.endpoints().is_empty() {
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// }
    /// assert_eq!(client.endpoints()[0].key.to_string(), "10.0.0.1:8080");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn kubernetes(self, service: KubeService) -> Self {
        self.discovery("kubernetes", move |endpoints, balance| {
            let changes =
                service.discover_filtered(Box::new(move |addr| endpoints.endpoint(addr)))?;
            Ok(balance.discover(changes))
        })
    }
}
