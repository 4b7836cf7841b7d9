//! One backend: its phases over time, its listener (closed while down, bound again on the same
//! address when up), and the handle a test controls it with.

use super::behavior::Behavior;
use super::capacity::{Capacity, Gate, Refusal};
use super::connection::{self, Http};
use super::counters::Counters;
use std::future::pending;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// How long to wait before trying again to listen on a port that someone else took while the
/// backend was down.
const REBIND_RETRY: Duration = Duration::from_millis(20);

/// How long to pause accepting after an error (typically: out of file descriptors), so as not
/// to spin on it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// A backend to start: its [`Behavior`], or a sequence of [`Phase`]s over time.
///
/// Phases switch on tokio's clock, so a test on a paused clock can move through them with
/// `tokio::time::advance` (sockets still need real time to move bytes, though).
///
/// ```
/// use meshless::testing::{Backend, Behavior, Phase};
/// use std::time::Duration;
///
/// // Healthy for good.
/// let steady = Backend::new(Behavior::healthy());
///
/// // Healthy for 2 s, down for 500 ms, then healthy again, and so on.
/// let flapping = Backend::phases([
///     Phase::new(Duration::from_secs(2), Behavior::healthy()),
///     Phase::new(Duration::from_millis(500), Behavior::down()),
/// ])
/// .looping();
/// # let _ = (steady, flapping);
/// ```
#[derive(Clone, Debug)]
pub struct Backend {
    phases: Vec<Phase>,
    looping: bool,
    /// `None`: unbounded, every request served at once.
    capacity: Option<Capacity>,
}

impl Backend {
    /// A backend that behaves as `behavior` until told otherwise.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior};
    ///
    /// let backend = Backend::new(Behavior::healthy().hangs(0.01));
    /// # let _ = backend;
    /// ```
    pub fn new(behavior: Behavior) -> Backend {
        Backend::phases([Phase::open_ended(behavior)])
    }

    /// A backend that goes through `phases` in order, starting when the fleet starts.
    ///
    /// A sequence that does not [loop](Backend::looping) stays in its last phase once there,
    /// whatever that phase's duration. An open-ended phase is never left (but for
    /// [`BackendHandle::set_behavior`]), so phases after it are never reached. A phase of zero
    /// duration is skipped. No phases at all is the same as [`Behavior::healthy`] for good.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Phase};
    /// use std::time::Duration;
    ///
    /// let outage = Backend::phases([
    ///     Phase::new(Duration::from_secs(1), Behavior::healthy()),
    ///     Phase::new(Duration::from_secs(1), Behavior::down()),
    ///     Phase::open_ended(Behavior::healthy()),
    /// ]);
    /// # let _ = outage;
    /// ```
    pub fn phases(phases: impl IntoIterator<Item = Phase>) -> Backend {
        Backend {
            phases: phases.into_iter().collect(),
            looping: false,
            capacity: None,
        }
    }

    /// Serves at most `workers` requests at once, lets at most `queue` more wait for a worker
    /// in a first-in, first-out queue, and [refuses](Backend::refusal) the rest at once (by
    /// default with `503`), so that latency grows with load as a real server's does.
    ///
    /// A request holds its worker for its whole service: from when a worker takes it up until
    /// it is answered or reset, that is for the behavior's [latency](Behavior::latency), and
    /// for ever if it [hangs](Behavior::hangs) (until its client or the backend gives up on
    /// it). Time spent in the queue adds to its latency. A request whose client goes away
    /// leaves the queue or frees its worker. The request body is read, and checked against
    /// [`BODY_LEN`](super::BODY_LEN), before the request joins the queue.
    ///
    /// The capacity belongs to the backend, not to a phase: it holds through every phase and
    /// every [`BackendHandle::set_behavior`], and requests in service or in the queue when the
    /// behavior changes keep their place. A request that waited gets the behavior in force
    /// when a worker takes it up. `workers` is at least 1; `queue` may be 0 (no queue:
    /// a request that finds every worker busy is refused). [`Counters`] count what was served,
    /// queued and refused. Without this call a backend serves every request at once, however
    /// many there are.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Latency};
    /// use std::time::Duration;
    ///
    /// // 4 workers at 20 ms a request: 200 requests per second at most, then a queue of 100.
    /// let server = Backend::new(Behavior::healthy().latency(Latency::fixed(Duration::from_millis(20))))
    ///     .capacity(4, 100);
    /// # let _ = server;
    /// ```
    pub fn capacity(mut self, workers: usize, queue: usize) -> Backend {
        let refusal = self.capacity.map_or_else(Refusal::default, |c| c.refusal);
        self.capacity = Some(Capacity {
            workers,
            queue,
            refusal,
        });
        self
    }

    /// How a backend with a [capacity](Backend::capacity) refuses a request that finds its
    /// queue full: `Refusal::Status(503)` by default. Without a capacity there is nothing to
    /// refuse, and this does nothing.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Refusal};
    ///
    /// let backend = Backend::new(Behavior::healthy()).capacity(8, 0).refusal(Refusal::Reset);
    /// # let _ = backend;
    /// ```
    pub fn refusal(mut self, refusal: Refusal) -> Backend {
        if let Some(capacity) = &mut self.capacity {
            capacity.refusal = refusal;
        }
        self
    }

    /// Starts the sequence again after its last phase, for as long as the fleet runs.
    ///
    /// A sequence with an open-ended phase never gets past it, and one that lasts no time at
    /// all does not loop: it stays in its last phase.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Phase};
    /// use std::time::Duration;
    ///
    /// let blinking = Backend::phases([
    ///     Phase::new(Duration::from_millis(900), Behavior::healthy()),
    ///     Phase::new(Duration::from_millis(100), Behavior::healthy().hangs(1.0)),
    /// ])
    /// .looping();
    /// # let _ = blinking;
    /// ```
    pub fn looping(mut self) -> Backend {
        self.looping = true;
        self
    }
}

/// Same as [`Backend::new`].
///
/// ```
/// use meshless::testing::{Backend, Behavior};
///
/// let backend: Backend = Behavior::down().into();
/// # let _ = backend;
/// ```
impl From<Behavior> for Backend {
    fn from(behavior: Behavior) -> Backend {
        Backend::new(behavior)
    }
}

/// One step of a [`Backend`]'s sequence: a behavior, for a while or for good.
///
/// ```
/// use meshless::testing::{Behavior, Phase};
/// use std::time::Duration;
///
/// let blip = Phase::new(Duration::from_millis(200), Behavior::down());
/// let after = Phase::open_ended(Behavior::healthy());
/// # let _ = (blip, after);
/// ```
#[derive(Clone, Debug)]
pub struct Phase {
    behavior: Behavior,
    /// `None`: open-ended.
    duration: Option<Duration>,
}

impl Phase {
    /// `behavior` for `duration`.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Phase};
    /// use std::time::Duration;
    ///
    /// let phase = Phase::new(Duration::from_secs(5), Behavior::healthy());
    /// # let _ = phase;
    /// ```
    pub fn new(duration: Duration, behavior: Behavior) -> Phase {
        Phase {
            behavior,
            duration: Some(duration),
        }
    }

    /// `behavior` until the test says otherwise.
    ///
    /// ```
    /// use meshless::testing::{Behavior, Phase};
    ///
    /// let phase = Phase::open_ended(Behavior::healthy());
    /// # let _ = phase;
    /// ```
    pub fn open_ended(behavior: Behavior) -> Phase {
        Phase {
            behavior,
            duration: None,
        }
    }
}

/// A running backend, as a test sees it: its address, its counters, its behavior.
///
/// ```
/// use meshless::testing::{Backend, Behavior, Fleet};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
///     let backend = fleet.backend(0);
///     println!("listening on {}", backend.addr());
///     backend.set_behavior(Behavior::down()).await;
///     assert!(tokio::net::TcpStream::connect(backend.addr()).await.is_err());
///     fleet.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct BackendHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl BackendHandle {
    /// The address the backend listens on (and listens on again after being down).
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
    ///     assert!(fleet.backend(0).addr().ip().is_loopback());
    ///     Ok(())
    /// }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend's live counters.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
    ///     assert_eq!(fleet.backend(0).counters().connections(), 0);
    ///     Ok(())
    /// }
    /// ```
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The behavior in force now.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Backend::new(Behavior::down())).start().await?;
    ///     assert!(fleet.backend(0).behavior().is_down());
    ///     Ok(())
    /// }
    /// ```
    pub fn behavior(&self) -> Arc<Behavior> {
        self.shared.behavior()
    }

    /// The index of the phase in force, or `None` once [`set_behavior`](Self::set_behavior)
    /// has taken over from the sequence.
    ///
    /// ```
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
    ///     assert_eq!(fleet.backend(0).phase(), Some(0));
    ///     fleet.backend(0).set_behavior(Behavior::healthy().hangs(1.0)).await;
    ///     assert_eq!(fleet.backend(0).phase(), None);
    ///     Ok(())
    /// }
    /// ```
    pub fn phase(&self) -> Option<usize> {
        *self.shared.lock_phase()
    }

    /// Switches the backend to `behavior` now, ending its sequence of phases.
    ///
    /// Requests that arrive after this call see the new behavior (a request already in
    /// progress keeps the one it started with). When this returns, a backend that went down
    /// refuses connections and has reset the ones it had, and a backend that came back up
    /// accepts connections on its address again; should another socket have taken that port
    /// meanwhile, the backend keeps trying in the background. After the fleet has shut down,
    /// this does nothing.
    ///
    /// ```
    /// use http::StatusCode;
    /// use meshless::testing::{Backend, Behavior, Fleet};
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
    ///     let failing = Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE);
    ///     fleet.backend(0).set_behavior(failing).await;
    ///     // ... every request now gets 503 ...
    ///     fleet.shutdown().await;
    ///     Ok(())
    /// }
    /// ```
    pub async fn set_behavior(&self, behavior: Behavior) {
        {
            let mut phase = self.shared.lock_phase();
            *phase = None;
            self.shared.replace(behavior);
        }
        // The listener belongs to the backend's task: ask it to catch up, and wait until it has.
        let (ack, applied) = oneshot::channel();
        if self.commands.send(Command::Apply(ack)).is_ok() {
            // An error means the fleet shut down meanwhile: there is nothing left to wait for.
            let _ = applied.await;
        }
    }

    pub(crate) fn shut_down(&self) {
        // The task may already be gone; then so is everything it would close.
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// What a backend's task and its connections share with the test.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Read once per request: a read lock and an `Arc` clone, a few atomic operations that
    /// never wait but while a switch writes. (In the throughput test, replacing this with a
    /// lock-free read of a constant made no difference beyond the noise.)
    behavior: RwLock<Arc<Behavior>>,
    pub(crate) counters: Counters,
    /// Workers and queue, for a backend with a capacity.
    pub(crate) gate: Option<Gate>,
    /// The phase in force, or `None` once `set_behavior` took over. Held while `behavior` is
    /// written, so that the sequence and `set_behavior` never undo each other.
    phase: Mutex<Option<usize>>,
}

impl Shared {
    pub(crate) fn behavior(&self) -> Arc<Behavior> {
        // Nothing panics while holding these locks, but a poisoned lock holds a valid value
        // anyway: never fail on it.
        let behavior = self.behavior.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&behavior)
    }

    fn replace(&self, behavior: Behavior) {
        *self
            .behavior
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(behavior);
    }

    fn lock_phase(&self) -> MutexGuard<'_, Option<usize>> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
enum Command {
    /// Make the listener agree with the behavior `set_behavior` just wrote, then answer.
    Apply(oneshot::Sender<()>),
    /// Close the listener, reset every connection, wait until they are closed, and end.
    Shutdown,
}

/// Starts a backend on 127.0.0.1 (a port the OS picks): its task, and the handle to it.
pub(crate) fn start(
    backend: Backend,
    http: Arc<Http>,
) -> io::Result<(BackendHandle, JoinHandle<()>)> {
    let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    let gate = backend.capacity.map(Gate::new);
    let schedule = Schedule::start(backend, Instant::now());
    let behavior = schedule.behavior().clone();
    // A backend that starts down never listens: it refuses connections from the first.
    let listener = (!behavior.is_down()).then_some(listener);
    let shared = Arc::new(Shared {
        behavior: RwLock::new(Arc::new(behavior)),
        counters: Counters::default(),
        gate,
        phase: Mutex::new(Some(schedule.index)),
    });
    let (commands, inbox) = mpsc::unbounded_channel();
    let task = Supervisor {
        addr,
        shared: Arc::clone(&shared),
        http,
        listener,
        down: watch::Sender::new(()),
        rebind_at: None,
        schedule,
        commands: inbox,
    };
    let task = tokio::spawn(task.run());
    let handle = BackendHandle {
        addr,
        shared,
        commands,
    };
    Ok((handle, task))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    // std's listener sets SO_REUSEADDR on unix, so the port can be bound again right after
    // the backend was down, whatever state its old connections are in.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// The backend's task: moves through the phases, accepts connections, and keeps the listener
/// open or closed as the behavior says. Requests never go through it.
struct Supervisor {
    addr: SocketAddr,
    shared: Arc<Shared>,
    http: Arc<Http>,
    /// `None` while down (or while the port cannot be had back).
    listener: Option<TcpListener>,
    /// Every connection watches this: a change (going down) or its drop (shutting down, or the
    /// fleet dropped and this task aborted) resets them all.
    down: watch::Sender<()>,
    /// After a failed attempt to listen again: when to try next.
    rebind_at: Option<Instant>,
    schedule: Schedule,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Supervisor {
    async fn run(mut self) {
        let mut applied: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            self.apply().await;
            for ack in applied.drain(..) {
                // The caller may have stopped waiting: nothing to do then.
                let _ = ack.send(());
            }
            let phase_end = self.schedule.ends_at;
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Apply(ack)) => applied.push(ack),
                    Some(Command::Shutdown) | None => return self.stop().await,
                },
                () = sleep_until_some(phase_end) => self.next_phase(),
                () = sleep_until_some(self.rebind_at) => {} // `apply` tries again
                accepted = accept(self.listener.as_ref()) => match accepted {
                    Ok(tcp) => self.serve(tcp),
                    Err(error) => {
                        tracing::debug!(addr = %self.addr, %error, "accept failed");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                },
            }
        }
    }

    /// Opens or closes the listener to agree with the behavior in force.
    async fn apply(&mut self) {
        if self.shared.behavior().is_down() {
            self.rebind_at = None;
            if self.listener.take().is_some() {
                // The listener is closed: the port refuses connections from now on (those
                // waiting in its backlog are refused too). Now reset the open ones, and wait
                // until they are closed, so that once `set_behavior` returns no request can
                // still be answered on one of them.
                self.down.send_replace(());
                self.down.closed().await;
            }
        } else if self.listener.is_none() && self.rebind_at.is_none_or(|at| at <= Instant::now()) {
            match bind(self.addr) {
                Ok(listener) => {
                    self.listener = Some(listener);
                    self.rebind_at = None;
                }
                Err(error) => {
                    tracing::warn!(addr = %self.addr, %error, "cannot listen again; retrying");
                    self.rebind_at = Some(Instant::now() + REBIND_RETRY);
                }
            }
        }
    }

    fn next_phase(&mut self) {
        let mut phase = self.shared.lock_phase();
        if phase.is_none() {
            // `set_behavior` has taken over: the sequence is over.
            self.schedule.ends_at = None;
            return;
        }
        self.schedule.advance();
        *phase = Some(self.schedule.index);
        self.shared.replace(self.schedule.behavior().clone());
    }

    fn serve(&self, tcp: TcpStream) {
        self.shared.counters.connection();
        // Small answers leave at once instead of waiting on Nagle's algorithm. Should this
        // fail, the connection works all the same, only slower.
        let _ = tcp.set_nodelay(true);
        // Not kept: a connection's task ends by itself when the client is done, or when `down`
        // tells it to.
        tokio::spawn(connection::serve(
            tcp,
            Arc::clone(&self.shared),
            Arc::clone(&self.http),
            self.down.subscribe(),
        ));
    }

    async fn stop(mut self) {
        self.listener = None;
        self.down.send_replace(());
        // Every connection holds a receiver until its socket is closed.
        self.down.closed().await;
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(tcp, _peer)| tcp),
        None => pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

/// Where a backend is in its sequence of phases.
struct Schedule {
    /// Never empty.
    phases: Vec<Phase>,
    /// Loops, and some phase lasts (so looping cannot spin).
    looping: bool,
    index: usize,
    /// When the current phase ends: `None` for an open-ended phase, and for the last phase of
    /// a sequence that does not loop.
    ends_at: Option<Instant>,
}

impl Schedule {
    fn start(backend: Backend, now: Instant) -> Schedule {
        let mut phases = backend.phases;
        if phases.is_empty() {
            phases.push(Phase::open_ended(Behavior::healthy()));
        }
        let lasts = phases
            .iter()
            .any(|phase| phase.duration.is_none_or(|d| !d.is_zero()));
        let mut schedule = Schedule {
            phases,
            looping: backend.looping && lasts,
            index: 0,
            ends_at: None,
        };
        schedule.enter(0, now);
        schedule
    }

    fn behavior(&self) -> &Behavior {
        &self.phases[self.index].behavior
    }

    /// Moves to the next phase, from the instant the current one ended (not from now, so
    /// that a late wake-up does not stretch the sequence).
    fn advance(&mut self) {
        if let (Some(end), Some(next)) = (self.ends_at, self.after(self.index)) {
            self.enter(next, end);
        }
    }

    /// Enters phase `index` at `start`, skipping phases of zero duration.
    fn enter(&mut self, mut index: usize, start: Instant) {
        loop {
            let next = self.after(index);
            match (self.phases[index].duration, next) {
                (Some(duration), Some(next)) if duration.is_zero() => index = next,
                // A duration too long for the clock never ends.
                (Some(duration), Some(_)) => {
                    self.index = index;
                    self.ends_at = start.checked_add(duration);
                    return;
                }
                // Open-ended, or last of a sequence that does not loop: it stays.
                _ => {
                    self.index = index;
                    self.ends_at = None;
                    return;
                }
            }
        }
    }

    fn after(&self, index: usize) -> Option<usize> {
        if index + 1 < self.phases.len() {
            Some(index + 1)
        } else if self.looping {
            Some(0)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Fleet;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn visit(backend: Backend, steps: usize) -> Vec<(usize, Option<Duration>)> {
        let t0 = Instant::now();
        let mut schedule = Schedule::start(backend, t0);
        let mut seen = vec![(schedule.index, schedule.ends_at.map(|t| t - t0))];
        for _ in 0..steps {
            schedule.advance();
            seen.push((schedule.index, schedule.ends_at.map(|t| t - t0)));
        }
        seen
    }

    #[test]
    fn phases_follow_each_other_without_drift() {
        let backend = Backend::phases([
            Phase::new(ms(10), Behavior::healthy()),
            Phase::new(ms(20), Behavior::down()),
            Phase::new(ms(30), Behavior::healthy()),
        ]);
        assert_eq!(
            visit(backend.clone(), 3),
            [(0, Some(ms(10))), (1, Some(ms(30))), (2, None), (2, None)]
        );
        assert_eq!(
            visit(backend.looping(), 4),
            [
                (0, Some(ms(10))),
                (1, Some(ms(30))),
                (2, Some(ms(60))),
                (0, Some(ms(70))),
                (1, Some(ms(90)))
            ]
        );
    }

    #[test]
    fn zero_phases_are_skipped_and_cannot_spin() {
        let zero = || Phase::new(Duration::ZERO, Behavior::down());
        let backend = Backend::phases([zero(), Phase::new(ms(5), Behavior::healthy()), zero()]);
        assert_eq!(visit(backend.clone(), 1), [(1, Some(ms(5))), (2, None)]);
        assert_eq!(
            visit(backend.looping(), 2),
            [(1, Some(ms(5))), (1, Some(ms(10))), (1, Some(ms(15)))]
        );
        // Nothing lasts: no loop, the last phase stays.
        assert_eq!(
            visit(Backend::phases([zero(), zero()]).looping(), 1),
            [(1, None), (1, None)]
        );
        // No phases: healthy for good.
        let schedule = Schedule::start(Backend::phases([]), Instant::now());
        assert!(!schedule.behavior().is_down());
        assert_eq!(schedule.ends_at, None);
    }

    #[test]
    fn an_open_ended_phase_is_never_left() {
        let backend = Backend::phases([
            Phase::open_ended(Behavior::healthy()),
            Phase::new(ms(5), Behavior::down()),
        ])
        .looping();
        assert_eq!(visit(backend, 2), [(0, None), (0, None), (0, None)]);
    }

    #[tokio::test]
    async fn hung_requests_do_not_outlive_a_shutdown() {
        hung_requests_do_not_outlive(async |fleet: Fleet| fleet.shutdown().await).await;
    }

    #[tokio::test]
    async fn hung_requests_do_not_outlive_a_dropped_fleet() {
        hung_requests_do_not_outlive(async |fleet: Fleet| drop(fleet)).await;
    }

    async fn hung_requests_do_not_outlive(stop: impl AsyncFnOnce(Fleet)) {
        let fleet = Fleet::builder()
            .backend(Behavior::healthy().hangs(1.0))
            .start()
            .await
            .unwrap();
        let shared = Arc::clone(&fleet.backend(0).shared);
        let uri: http::Uri = format!("http://{}/", fleet.backend(0).addr())
            .parse()
            .unwrap();
        let h1 = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Empty<Bytes>>();
        let hung = [tokio::spawn(h1.get(uri.clone())), tokio::spawn(h2.get(uri))];
        while shared.counters.hangs() < 2 {
            tokio::time::sleep(ms(5)).await;
        }

        stop(fleet).await;
        for request in hung {
            assert!(request.await.unwrap().is_err());
        }
        // Every connection's task, and every request (HTTP/2 serves each in a task of its
        // own), has let go of the backend.
        for _ in 0..200 {
            if Arc::strong_count(&shared) == 1 {
                return;
            }
            tokio::time::sleep(ms(5)).await;
        }
        panic!(
            "{} references to the backend remain",
            Arc::strong_count(&shared) - 1
        );
    }
}
