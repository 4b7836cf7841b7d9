//! A fleet of misbehaving HTTP backends on 127.0.0.1, for tests, labs and load tests.
//!
//! Each backend listens on a port the OS picks and speaks HTTP/1.1 and HTTP/2 (with prior
//! knowledge, as gRPC clients do). It behaves as its [`Behavior`] says, which can change in
//! [`Phase`]s over time or at the test's command, and it counts what it sees.
//!
//! | behavior | what a client sees |
//! |---|---|
//! | [`Behavior::healthy`] | `200`, body `ok` (or [`Behavior::body_size`] bytes) |
//! | [`Behavior::latency`] | the same, later: fixed, or log-normal from a median and a p99 |
//! | [`Behavior::errors`] | the status it was given, with [`Behavior::retry_after`] if set |
//! | [`Behavior::resets`] | a connection error: the backend resets the connection (TCP RST), failing every request in flight on it |
//! | [`Behavior::hangs`] | nothing, ever; the connection stays open |
//! | [`Behavior::down`] | connection refused; open connections are reset. Once up again, the same address accepts again |
//!
//! A backend serves every request at once, however many there are, unless given a finite
//! [capacity](Backend::capacity): a few workers and a bounded queue, beyond which it refuses
//! (with `503`, or as its [`Refusal`] says).
//!
//! A request that sends `x-body-len` ([`BODY_LEN`]) gets `400` if its body arrived with
//! another length, before any fault is drawn; every request with a body gets the length
//! received back in the same header.
//!
//! ```
//! use bytes::Bytes;
//! use http::StatusCode;
//! use http_body_util::Empty;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use meshless::testing::{Backend, Behavior, Fleet};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let fleet = Fleet::builder()
//!         .backend(Backend::new(Behavior::healthy()))
//!         .backend(Backend::new(Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE)))
//!         .start()
//!         .await?;
//!     let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//!     for (i, addr) in fleet.addrs().into_iter().enumerate() {
//!         let res = client.get(format!("http://{addr}/").parse()?).await?;
//!         let expected = if i == 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
//!         assert_eq!(res.status(), expected);
//!     }
//!     assert_eq!(fleet.backend(1).counters().responses_5xx(), 1);
//!     fleet.shutdown().await;
//!     Ok(())
//! }
//! ```

mod backend;
mod behavior;
mod capacity;
mod connection;
mod counters;
mod respond;

pub use self::backend::{Backend, BackendHandle, Phase};
pub use self::behavior::{Behavior, Latency};
pub use self::capacity::Refusal;
pub use self::counters::{Counters, Snapshot};
pub use self::respond::BODY_LEN;

use self::connection::Http;
use hyper_util::rt::TokioExecutor;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Running backends. Dropping the fleet stops them all (see [`Fleet::shutdown`] to wait until
/// they have).
///
/// ```
/// use meshless::testing::{Backend, Behavior, Fleet};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fleet = Fleet::builder()
///         .backends(vec![Backend::new(Behavior::healthy()); 3])
///         .start()
///         .await?;
///     assert_eq!(fleet.addrs().len(), 3);
///     fleet.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Fleet {
    backends: Vec<BackendHandle>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// A fleet to fill with backends, then start.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// let builder = Fleet::builder().backend(Backend::new(Behavior::healthy()));
    /// # let _ = builder;
    /// ```
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// The backends' addresses, in the order they were added.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
    ///     let uris: Vec<String> = fleet.addrs().iter().map(|a| format!("http://{a}/")).collect();
    ///     assert_eq!(uris.len(), 1);
    ///     Ok(())
    /// }
    /// ```
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(BackendHandle::addr).collect()
    }

    /// The `index`th backend, in the order they were added.
    ///
    /// # Panics
    ///
    /// If there is no such backend, as slice indexing does; [`Fleet::backends`] with `get`
    /// does not.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
    ///     assert_eq!(fleet.backend(0).counters().requests(), 0);
    ///     Ok(())
    /// }
    /// ```
    pub fn backend(&self, index: usize) -> &BackendHandle {
        &self.backends[index]
    }

    /// Every backend, in the order they were added.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
    ///     assert!(fleet.backends().get(1).is_none());
    ///     Ok(())
    /// }
    /// ```
    pub fn backends(&self) -> &[BackendHandle] {
        &self.backends
    }

    /// How many backends the fleet has.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
    ///     assert_eq!(fleet.len(), 1);
    ///     Ok(())
    /// }
    /// ```
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether the fleet has no backend at all.
    ///
    /// ```
    /// use meshless::testing::Fleet;
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().start().await?;
    ///     assert!(fleet.is_empty());
    ///     Ok(())
    /// }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The counters of every backend, added up.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).backend(Behavior::down()).start().await?;
    ///     assert_eq!(fleet.totals().requests, 0);
    ///     Ok(())
    /// }
    /// ```
    pub fn totals(&self) -> Snapshot {
        self.backends
            .iter()
            .map(|backend| backend.counters().snapshot())
            .sum()
    }

    /// Stops every backend and waits until it has: when this returns, every port refuses
    /// connections and every connection has been reset. (Dropping the fleet stops them too,
    /// without waiting.)
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
    ///     let addr = fleet.backend(0).addr();
    ///     fleet.shutdown().await;
    ///     assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    ///     Ok(())
    /// }
    /// ```
    pub async fn shutdown(mut self) {
        for backend in &self.backends {
            backend.shut_down();
        }
        for task in std::mem::take(&mut self.tasks) {
            // A task that panicked (it should not) has stopped all the same.
            let _ = task.await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Aborting a backend's task closes its listener and drops the sender its connections
        // watch, which resets them all.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The backends of a fleet to start.
///
/// ```
/// use meshless::testing::{Backend, Behavior, Fleet};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fleet = Fleet::builder()
///         .backend(Backend::new(Behavior::healthy()))
///         .backend(Behavior::healthy().hangs(1.0)) // a `Behavior` is a backend too
///         .start()
///         .await?;
///     assert_eq!(fleet.len(), 2);
///     Ok(())
/// }
/// ```
#[derive(Debug, Default)]
pub struct FleetBuilder {
    backends: Vec<Backend>,
}

impl FleetBuilder {
    /// Adds a backend.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// let builder = Fleet::builder().backend(Backend::new(Behavior::healthy()));
    /// # let _ = builder;
    /// ```
    pub fn backend(mut self, backend: impl Into<Backend>) -> FleetBuilder {
        self.backends.push(backend.into());
        self
    }

    /// Adds several backends.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// let five = Fleet::builder().backends(vec![Backend::new(Behavior::healthy()); 5]);
    /// # let _ = five;
    /// ```
    pub fn backends(mut self, backends: impl IntoIterator<Item = Backend>) -> FleetBuilder {
        self.backends.extend(backends);
        self
    }

    /// Starts every backend, on 127.0.0.1 with a port the OS picks, and their sequences of
    /// phases with them. Must run on a tokio runtime (with the time and IO drivers enabled).
    ///
    /// When this returns, every backend that is up accepts connections, and every backend
    /// that starts down refuses them. Fails if a port cannot be had; the backends already
    /// started are stopped.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
    ///     tokio::net::TcpStream::connect(fleet.backend(0).addr()).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn start(self) -> io::Result<Fleet> {
        let http = Arc::new(Http::new(TokioExecutor::new()));
        let mut fleet = Fleet {
            backends: Vec::with_capacity(self.backends.len()),
            tasks: Vec::with_capacity(self.backends.len()),
        };
        for backend in self.backends {
            // On error, dropping `fleet` stops the backends started so far.
            let (handle, task) = backend::start(backend, Arc::clone(&http))?;
            fleet.backends.push(handle);
            fleet.tasks.push(task);
        }
        Ok(fleet)
    }
}
