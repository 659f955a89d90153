//! How the store reaches Redis: standalone, Sentinel or Cluster connection set-up, the
//! per-worker connection slots, and the one bounded exchange every command goes through.
//!
//! Connections are made lazily (Redis down at start-up does not stop doorman) and reconnect on
//! their own; every exchange is bounded by [`COMMAND_TIMEOUT`], connecting included, and any
//! Redis error becomes a [`StoreError`], so protected routes fail closed.
//!
//! * **Standalone** (`redis://`, `rediss://`) uses a [`ConnectionManager`] per serving worker
//!   (and one for the main runtime), each driven on its own thread, so a lookup never crosses
//!   threads (one connection per worker, as with the upstream pools). One that timed out is
//!   replaced ([`Backend::timed_out`]).
//! * **Sentinel** resolves the master through the Sentinels and re-resolves after a connection
//!   error or a `READONLY` reply, because a `ConnectionManager` keeps reconnecting to the old
//!   address after a failover. The Sentinels get `sentinel_password`; the master they name gets
//!   `password`, `db` and `tls`.
//! * **Cluster** uses the crate's async cluster connection, which follows slot moves itself:
//!   `MOVED` (refreshing its slot map) and `ASK` (`ASKING` on the importing node), within the
//!   exchange's bound; every command names one key, so no `TRYAGAIN` (multi-key commands in a
//!   slot being migrated) can arise. Reads and writes go to masters: replicas are never read.
//!
//! The session cache's tracking connection is found the same way ([`tracking_source`]), so it
//! always watches the Redis the store talks to.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tracing::{info, warn};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, RedisFuture,
    RedisResult, Value,
};

use crate::config::{ClusterTarget, RedisTarget, SentinelTarget};
use crate::lock::lock;
use crate::session::{tracking, StoreError};
use crate::timer::{self, Kept};

/// Upper bound on one store operation's wait for Redis: connecting (or resolving a Sentinel
/// master) included. An operation that takes longer fails with [`StoreError::Timeout`].
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);
/// Consecutive failures to reach Redis (timeouts, refused or broken connections) after which
/// commands fail at once instead of waiting [`COMMAND_TIMEOUT`] each ([`Breaker`]).
const TRIP_AFTER: u32 = 3;
/// How often, while the breaker is open, a background probe pings Redis.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// What a command answers while the breaker is open.
const FAILING_FAST: &str = "Redis unreachable: failing fast until a probe gets an answer";
/// How long a command answered `LOADING` waits before it is sent again ([`Backend::run`]).
const LOADING_PAUSE: Duration = Duration::from_millis(20);
/// How long one TCP (and TLS) connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its reply on an established connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

thread_local! {
    /// This worker's timers for [`COMMAND_TIMEOUT`] (`crate::timer`): a store call on a
    /// worker borrows one rather than filing a new timer in the wheel and taking it out again.
    static COMMAND_TIMERS: Kept = const { Kept::new() };
}

/// How the store reaches Redis: one of three ways, and the breaker in front of it.
/// Connections are created on first use: that needs a Tokio runtime, which [`Backend::new`]
/// then does not.
pub(super) struct Backend {
    way: Way,
    breaker: Breaker,
    /// This backend, for the breaker's probe task.
    me: Weak<Backend>,
}

/// The circuit breaker in front of Redis (DESIGN.md §14): after [`TRIP_AFTER`] consecutive
/// failures to reach it, every command fails at once — a public route then forwards anonymously
/// without waiting, a protected one answers 503 — until a background probe (a `PING` every
/// [`PROBE_EVERY`]) gets an answer. Errors Redis itself returns (a script error, `READONLY`)
/// are answers, not failures to reach it.
#[derive(Default)]
pub(super) struct Breaker {
    failures: AtomicU32,
    open: AtomicBool,
    /// 1 while open: `doorman_session_store_unreachable`.
    gauge: Gauge,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Redis answered.
    fn reached(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Redis could not be reached; whether this failure opened the breaker.
    fn missed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= TRIP_AFTER
            && self
                .open
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
        self.gauge.set(0);
    }
}

/// The three ways to reach Redis.
enum Way {
    Standalone {
        client: Client,
        /// Slot 0 for the main runtime (readiness, housekeeping, in-process use), then one per
        /// serving worker ([`Backend::slot`]); empty until first use, and again after an
        /// exchange on it timed out ([`Backend::timed_out`]).
        managers: Box<[Mutex<Option<ConnectionManager>>]>,
    },
    Sentinel {
        /// Asks the Sentinels for the master; one resolution at a time.
        resolver: tokio::sync::Mutex<SentinelClient>,
        /// The current master's connection; `None` after an error, so the next use resolves
        /// the master again.
        master: Mutex<Option<ConnectionManager>>,
    },
    Cluster {
        client: ClusterClient,
        connection: OnceLock<ClusterConnection>,
    },
}

impl Backend {
    /// The way to reach `target`; no I/O. Fails only on a malformed URL.
    pub(super) fn new(target: &RedisTarget) -> Result<Arc<Backend>, StoreError> {
        let way = match target {
            RedisTarget::Standalone(url) => Way::Standalone {
                client: Client::open(url.as_str()).map_err(config_error)?,
                managers: (0..=crate::worker::count())
                    .map(|_| Mutex::new(None))
                    .collect(),
            },
            RedisTarget::Sentinel(sentinel) => Way::Sentinel {
                resolver: tokio::sync::Mutex::new(sentinel_client(sentinel)?),
                master: Mutex::new(None),
            },
            RedisTarget::Cluster(cluster) => Way::Cluster {
                client: cluster_client(cluster)?,
                connection: OnceLock::new(),
            },
        };
        Ok(Arc::new_cyclic(|me| Backend {
            way,
            breaker: Breaker::default(),
            me: me.clone(),
        }))
    }

    /// Which of `len` per-thread connections the caller uses: one per serving worker, created
    /// on that worker's runtime by its first use, so a lookup and its reply never change
    /// thread (as the upstream pools, see `crate::worker`); slot 0 for everything else.
    fn slot(len: usize) -> usize {
        match crate::worker::on_worker() {
            Some(index) if len > 1 => 1 + index % (len - 1),
            _ => 0,
        }
    }

    /// Whether this is a Cluster (where a pipeline must stay within one slot).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.way, Way::Cluster { .. })
    }

    /// Create the connection object now, on the calling runtime (no I/O: it connects on first
    /// use). A failure is left for the first use to report.
    pub(super) fn prepare(&self) {
        match &self.way {
            Way::Standalone { client, managers } => {
                let mut manager = lock(&managers[Backend::slot(managers.len())]);
                if manager.is_none() {
                    *manager =
                        ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                            .ok();
                }
            }
            Way::Cluster { client, connection } => {
                connection.get_or_init(|| {
                    client.get_pending_async_connection_with_config(cluster_config())
                });
            }
            Way::Sentinel { .. } => {}
        }
    }

    /// Run one Redis exchange against a connection, bounded by [`COMMAND_TIMEOUT`] (getting
    /// the connection included), mapping errors and noting broken connections.
    ///
    /// An exchange that fails because its connection broke (a Redis restart: the first
    /// command on each pooled connection meets a closed socket) is run once more, on the fresh
    /// connection the manager makes, within the same bound: so a restart costs no request
    /// (DESIGN.md §14). Only for operations that may run twice: lookups, touches, creation
    /// (keyed by a fresh id) and deletes; a counter uses [`Backend::run_once`].
    ///
    /// A Redis that restarts with data answers `LOADING` until it has read its files back
    /// (milliseconds for a few thousand sessions, seconds for millions): the command did not
    /// run, so it is sent again every [`LOADING_PAUSE`] within the same bound, rather than
    /// answering 503 for sessions that are about to be there (benches/soak.sh saw 16 such
    /// 503s in the 17 ms a restart spent loading).
    pub(super) async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        // One await of `op` in a loop, not two, and the timeout built and awaited in place:
        // every store call's future (so every request's) holds one command's state, once.
        if self.breaker.is_open() {
            return Err(StoreError::Unavailable(FAILING_FAST.into()));
        }
        let exchange = timer::within(&COMMAND_TIMERS, COMMAND_TIMEOUT, async {
            let mut retried = false;
            loop {
                match op(self.connection().await?).await {
                    Err(e) if broken(&e) && !retried => {
                        self.failed(&e);
                        retried = true;
                    }
                    Err(e) if loading(&e) => tokio::time::sleep(LOADING_PAUSE).await,
                    done => return done.map_err(|e| self.error(e)),
                }
            }
        });
        self.settle(exchange.await)
    }

    /// [`Backend::run`] without the retry: for a command that must not run twice (a counter's
    /// increment, whose reply may be what was lost).
    pub(super) async fn run_once<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.breaker.is_open() {
            return Err(StoreError::Unavailable(FAILING_FAST.into()));
        }
        let exchange = timer::within(&COMMAND_TIMERS, COMMAND_TIMEOUT, async {
            op(self.connection().await?)
                .await
                .map_err(|e| self.error(e))
        });
        self.settle(exchange.await)
    }

    /// A bounded exchange's outcome, as the breaker counts it: an answer closes the count, a
    /// timeout adds to it (and drops the connection, [`Backend::timed_out`]).
    fn settle<T>(&self, outcome: Option<Result<T, StoreError>>) -> Result<T, StoreError> {
        match outcome {
            Some(Ok(value)) => {
                self.breaker.reached();
                Ok(value)
            }
            Some(Err(error)) => Err(error),
            None => {
                self.timed_out();
                self.missed();
                Err(StoreError::Timeout)
            }
        }
    }

    /// A failed command's error, noted (see [`Backend::failed`], and the breaker when Redis
    /// could not be reached) and mapped.
    fn error(&self, e: RedisError) -> StoreError {
        self.failed(&e);
        if unreachable(&e) {
            self.missed();
        } else {
            // Redis answered, if with an error.
            self.breaker.reached();
        }
        store_error(e)
    }

    /// Count a failure to reach Redis; the one that opens the breaker starts the probe.
    fn missed(&self) {
        if !self.breaker.missed() {
            return;
        }
        self.breaker.gauge.set(1);
        warn!(
            failures = TRIP_AFTER,
            "Redis unreachable: session lookups fail fast until it answers again"
        );
        let me = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(backend) = me.upgrade() else {
                    return;
                };
                if backend.probe().await {
                    backend.breaker.close();
                    info!("Redis answers again: session lookups resume");
                    return;
                }
            }
        });
    }

    /// One `PING`, past the breaker, bounded: whether Redis answered.
    async fn probe(&self) -> bool {
        let ping = async {
            let mut conn = self.connection().await?;
            redis::cmd("PING").exec_async(&mut conn).await.map_err(|e| {
                // A Sentinel master that moved is resolved again on the next probe.
                self.failed(&e);
                store_error(e)
            })
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, ping).await {
            Ok(answer) => answer.is_ok(),
            Err(_) => {
                self.timed_out();
                false
            }
        }
    }

    /// `1` while the breaker is open, for `/metrics`.
    pub(super) fn unreachable_gauge(&self) -> &Gauge {
        &self.breaker.gauge
    }

    async fn connection(&self) -> Result<Conn, StoreError> {
        match &self.way {
            Way::Standalone { client, managers } => {
                let mut manager = lock(&managers[Backend::slot(managers.len())]);
                if let Some(m) = manager.as_ref() {
                    return Ok(Conn::Manager(m.clone()));
                }
                let fresh =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                        .map_err(store_error)?;
                *manager = Some(fresh.clone());
                Ok(Conn::Manager(fresh))
            }
            Way::Sentinel { resolver, master } => {
                if let Some(m) = lock(master).as_ref() {
                    return Ok(Conn::Manager(m.clone()));
                }
                // Boxed: asking the Sentinels is a 3 KB future, and unboxed every command's
                // future (so every session lookup's) was sized for it, on every topology.
                Box::pin(Self::resolve_master(resolver, master)).await
            }
            Way::Cluster { client, connection } => {
                if let Some(c) = connection.get() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let fresh = client.get_pending_async_connection_with_config(cluster_config());
                Ok(Conn::Cluster(connection.get_or_init(|| fresh).clone()))
            }
        }
    }

    /// The master's connection, found through the Sentinels (one resolution at a time; a
    /// command that waited for another's finds its answer).
    async fn resolve_master(
        resolver: &tokio::sync::Mutex<SentinelClient>,
        master: &Mutex<Option<ConnectionManager>>,
    ) -> Result<Conn, StoreError> {
        let mut sentinels = resolver.lock().await;
        if let Some(m) = lock(master).as_ref() {
            return Ok(Conn::Manager(m.clone()));
        }
        let client = sentinels.async_get_client().await.map_err(store_error)?;
        let fresh = ConnectionManager::new_lazy_with_config(client, manager_config())
            .map_err(store_error)?;
        *lock(master) = Some(fresh.clone());
        Ok(Conn::Manager(fresh))
    }

    /// A command failed: a Sentinel-resolved master is dropped on anything that suggests it
    /// moved (connection trouble, or it became a read-only replica); a standalone connection
    /// that timed out is dropped ([`Backend::timed_out`]).
    fn failed(&self, e: &RedisError) {
        if e.is_timeout() {
            self.timed_out();
        }
        if let Way::Sentinel { master, .. } = &self.way {
            let moved = e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || matches!(
                    e.kind(),
                    redis::ErrorKind::Server(
                        redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
                    )
                );
            if moved {
                *lock(master) = None;
            }
        }
    }

    /// An exchange got no answer in time: its connection is dropped, so the next command
    /// (the breaker's probe, once it is open) connects afresh.
    ///
    /// A connection that went silent — a network cut, a peer gone without a reset — still
    /// holds the bytes sent into it, and the kernel retransmits them on a backoff that doubles
    /// each time (up to two minutes): kept, it would answer again only at the first
    /// retransmission after the network came back, seconds to minutes later, however long ago
    /// a fresh connection could have been made (tests/redis_netfault.rs, all packets lost).
    /// A Redis merely slow costs one reconnect; so does a racing request dropping a connection
    /// made just now. The Cluster connection is left as it is: the crate keeps its per-node
    /// connections itself.
    fn timed_out(&self) {
        match &self.way {
            Way::Sentinel { master, .. } => *lock(master) = None,
            Way::Standalone { managers, .. } => {
                *lock(&managers[Backend::slot(managers.len())]) = None;
            }
            Way::Cluster { .. } => {}
        }
    }
}

/// Whether a command failed because Redis could not be reached (rather than because it
/// answered with an error): what the breaker counts.
fn unreachable(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Whether Redis refused a command because it is still loading its data after a start
/// (`LOADING`): the command did not run, and will once the data is back.
fn loading(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
    )
}

/// Whether a command failed because its connection broke (rather than because Redis refused
/// it): worth one more try on a fresh connection.
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped()
}

/// Where the session cache's tracking connection goes for `target`: the store's own Redis,
/// found the same way. Cluster is refused: the tracking would need a connection per master that
/// follows resharding, which this build does not do.
pub(super) fn tracking_source(target: &RedisTarget) -> Result<tracking::Source, StoreError> {
    match target {
        RedisTarget::Standalone(url) => Ok(tracking::Source::Standalone(
            Client::open(url.as_str()).map_err(config_error)?,
        )),
        RedisTarget::Sentinel(sentinel) => {
            Ok(tracking::Source::Sentinel(sentinel_client(sentinel)?))
        }
        RedisTarget::Cluster(_) => Err(StoreError::Unavailable(
            "the session cache does not support Redis Cluster".into(),
        )),
    }
}

/// A connection of either kind, so the store's commands are written once.
#[derive(Clone)]
pub(super) enum Conn {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// `WAIT n ms` on the node that owns `key`, whose connection took the write before it:
    /// on Cluster routed to the key's master explicitly (the crate sends a bare `WAIT` to every
    /// primary). See `replicas`.
    pub(super) async fn wait_for_replica(
        &mut self,
        key: &str,
        (replicas, millis): (u32, u32),
    ) -> RedisResult<Value> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis);
        match self {
            Conn::Manager(c) => wait.query_async(c).await,
            Conn::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                c.route_command(
                    wait,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A client that finds the master through the Sentinels: `sentinel_password` for the
/// Sentinels, and `password`, `db` and `tls` for the master it finds (and the replicas the
/// crate's role check may meet on the way).
fn sentinel_client(target: &SentinelTarget) -> Result<SentinelClient, StoreError> {
    let mut sentinels = Vec::with_capacity(target.nodes.len());
    for node in &target.nodes {
        let mut info = node.as_str().into_connection_info().map_err(config_error)?;
        if let Some(password) = &target.sentinel_password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        sentinels.push(info);
    }
    let mut data = RedisConnectionInfo::default().set_db(target.db);
    if let Some(password) = &target.password {
        data = data.set_password(password);
    }
    let mut node_info = SentinelNodeConnectionInfo::default().set_redis_connection_info(data);
    if target.tls {
        node_info = node_info.set_tls_mode(redis::TlsMode::Secure);
    }
    SentinelClient::build(
        sentinels,
        &target.master,
        Some(node_info),
        SentinelServerType::Master,
    )
    .map_err(config_error)
}

/// The Cluster client: the seeds, with the table form's `password` for every node (the list
/// form's credentials are in the URLs, the same in each: the config checked).
fn cluster_client(target: &ClusterTarget) -> Result<ClusterClient, StoreError> {
    let mut builder = ClusterClient::builder(target.nodes.clone());
    if let Some(password) = &target.password {
        builder = builder.password(password);
    }
    builder.build().map_err(config_error)
}

fn config_error(e: RedisError) -> StoreError {
    StoreError::Unavailable(format!("invalid Redis address: {e}"))
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn cluster_config() -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
}

fn manager_config() -> ConnectionManagerConfig {
    // Few, quick retries inside the manager: a request is better served by failing within
    // COMMAND_TIMEOUT than by waiting out a long backoff; the next request reconnects again.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}
