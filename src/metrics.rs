//! The Prometheus metrics `/metrics` serves (prometheus-client, no global registry).
//!
//! One [`Metrics`] per process, shared by every state a reload builds, so
//! counters survive a reload. Names follow the Prometheus conventions: counters end in
//! `_total`, durations are `_seconds` histograms.
//!
//! | name | type | labels | counts |
//! |---|---|---|---|
//! | `doorman_requests_total` | counter | `route`, `status_class` | responses sent (logged when the body is done) |
//! | `doorman_request_duration_seconds` | histogram | | request head in → response body fully sent |
//! | `doorman_upstream_duration_seconds` | histogram | | request sent upstream → upstream response head (failures too) |
//! | `doorman_session_lookups_total` | counter | `result` | see [`Lookup`] |
//! | `doorman_logins_total` | counter | `result` | see [`Login`] |
//! | `doorman_store_errors_total` | counter | | session store operations on the request path that failed |
//! | `doorman_open_connections` | gauge | | client connections on the public listener now |
//! | `doorman_connection_rests_total` | counter | | idle HTTP/1 client connections whose HTTP state was put away until their next request (`server::deadlines`) |
//! | `doorman_config_reloads_total` | counter | `result` | `success` / `failure` |
//! | `doorman_build_info` | gauge | `version` | always 1 |
//! | `doorman_session_cache_lookups_total` | counter | `result` | `[session] cache = true` only: lookups the local cache answered (`hit`) or passed to Redis (`miss`) |
//! | `doorman_session_cache_entries` | gauge | | `cache = true` only: sessions cached now |
//! | `doorman_session_cache_trusted` | gauge | | `cache = true` only: 1 while Redis tracking is on and healthy (the cache serves), else 0 |
//!
//! `route` is the matched `[[routes]]` entry's pattern as written (`/dashboard`,
//! `/api/*/admin/**`), `default` when no route matched, `doorman` for doorman's own endpoints
//! under `[login] prefix`, and `none` for requests refused before routing (a malformed path).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The route label of doorman's own endpoints.
pub const ROUTE_DOORMAN: &str = "doorman";
/// The route label when no `[[routes]]` entry matched.
pub const ROUTE_DEFAULT: &str = "default";
/// The route label of a request refused before routing (malformed path, CONNECT).
pub const ROUTE_NONE: &str = "none";

/// A route's label in logs and metrics: shared, so a request records its route and counts
/// it without copying the name (two allocations per request otherwise). Compared and hashed
/// by its name.
#[derive(Clone)]
pub struct RouteLabel(Arc<Route>);

struct Route {
    name: Box<str>,
    /// This route's `doorman_requests_total` series, held for the first [`Metrics`] that
    /// counted it (a process has one; tests may have several, and the others count through
    /// the family): counting a response is then an atomic add, not a locked, SipHashed lookup
    /// of the label set in the family's map.
    counted: OnceLock<Counted>,
}

struct Counted {
    /// Which [`Metrics`] the series belong to.
    metrics: usize,
    /// One per status class ([`STATUS_CLASSES`]), made when first counted, as the family would.
    classes: [OnceLock<Counter>; STATUS_CLASSES.len()],
}

impl std::fmt::Debug for RouteLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RouteLabel").field(&self.0.name).finish()
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &RouteLabel) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl RouteLabel {
    /// The label `name`.
    pub fn new(name: &str) -> RouteLabel {
        RouteLabel(Arc::new(Route {
            name: name.into(),
            counted: OnceLock::new(),
        }))
    }

    /// The label of doorman's own endpoints (`doorman`), made once.
    pub fn doorman() -> RouteLabel {
        static LABEL: std::sync::LazyLock<RouteLabel> =
            std::sync::LazyLock::new(|| RouteLabel::new(ROUTE_DOORMAN));
        LABEL.clone()
    }

    /// The label when no route matched (`default`), made once.
    pub fn default_route() -> RouteLabel {
        static LABEL: std::sync::LazyLock<RouteLabel> =
            std::sync::LazyLock::new(|| RouteLabel::new(ROUTE_DEFAULT));
        LABEL.clone()
    }

    /// The label of a request refused before routing (`none`), made once.
    pub fn none() -> RouteLabel {
        static LABEL: std::sync::LazyLock<RouteLabel> =
            std::sync::LazyLock::new(|| RouteLabel::new(ROUTE_NONE));
        LABEL.clone()
    }

    /// The label's text.
    pub fn as_str(&self) -> &str {
        &self.0.name
    }
}

impl From<&str> for RouteLabel {
    fn from(name: &str) -> RouteLabel {
        RouteLabel::new(name)
    }
}

impl std::fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0.name, encoder)
    }
}

/// What a session lookup found (`doorman_session_lookups_total{result}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Lookup {
    /// A valid, live session.
    hit,
    /// No usable session cookie: none at all, a malformed value, or two cookies of doorman's
    /// name. The store is not asked.
    miss,
    /// A well-formed session id the store holds no live session for: expired by either clock,
    /// logged out, revoked, or never issued (stores delete expired records as they find them,
    /// so an expired id and an unknown one look alike), or a password session whose user has
    /// left the users file.
    expired,
    /// The store could not answer.
    store_error,
}

impl Lookup {
    /// Every result, for series that exist from the start.
    const ALL: [Lookup; 4] = [Self::hit, Self::miss, Self::expired, Self::store_error];
}

/// Whether the session cache answered a lookup
/// (`doorman_session_cache_lookups_total{result}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CacheResult {
    /// Answered from memory: no Redis round trip.
    hit,
    /// Passed to Redis: not cached, due for a touch, or the cache not trusted.
    miss,
}

/// The label set of the session cache's lookup counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub result: CacheResult,
}

/// How a password login ended (`doorman_logins_total{result}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Login {
    success,
    bad_credentials,
    /// Refused with 429 because of earlier failures.
    throttled,
    /// Refused with 403: a cross-site POST.
    cross_site,
}

impl Login {
    /// Every result, for series that exist from the start.
    const ALL: [Login; 4] = [
        Self::success,
        Self::bad_credentials,
        Self::throttled,
        Self::cross_site,
    ];
}

/// How a forward-auth sub-request was answered (`doorman_forward_auth_total{result}`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ForwardAuth {
    /// 200: the gateway may pass the request (with or without a user).
    allowed,
    /// 401: not logged in.
    unauthenticated,
    /// 302 to the login page (`/forward-auth`, page loads under `redirect`).
    redirect,
    /// 403: not permitted, `deny`, a host outside `allowed_hosts`, or an untrusted peer.
    forbidden,
    /// 400: a required header missing or repeated, or an ambiguous original URI.
    bad_request,
    /// 503: the store could not answer.
    unavailable,
}

impl ForwardAuth {
    /// Every result, for series that exist from the start.
    const ALL: [ForwardAuth; 6] = [
        Self::allowed,
        Self::unauthenticated,
        Self::redirect,
        Self::forbidden,
        Self::bad_request,
        Self::unavailable,
    ];
}

/// `doorman_config_reloads_total{result}`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Reload {
    success,
    failure,
}

impl Reload {
    /// Every result, for series that exist from the start.
    const ALL: [Reload; 2] = [Self::success, Self::failure];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteLabel,
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabel {
    result: Lookup,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabel {
    result: Login,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardAuthLabel {
    result: ForwardAuth,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OidcLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    result: Reload,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// The series of a counter family over a fixed set of results, made at start (so each exists
/// at 0 before its first event) and held, indexed by the result's discriminant: counting one is
/// an atomic add instead of `Family::get_or_create`'s locked, SipHashed map lookup (about 200
/// instructions, on every request for the session lookup's result).
struct Results<const N: usize>([Counter; N]);

impl<const N: usize> Results<N> {
    /// Make each of `all`'s series in `family`; `all[i]` must have discriminant `i`.
    fn new<R: Copy, L>(
        family: &Family<L, Counter>,
        all: [R; N],
        label: impl Fn(R) -> L,
    ) -> Results<N>
    where
        L: Clone + std::hash::Hash + Eq,
    {
        Results(all.map(|result| family.get_or_create(&label(result)).clone()))
    }

    fn inc(&self, index: usize) {
        if let Some(counter) = self.0.get(index) {
            counter.inc();
        }
    }
}

/// Every metric doorman exports, and the registry that encodes them.
pub struct Metrics {
    /// Tells this instance's series apart in a [`RouteLabel`]'s cache.
    id: usize,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histogram,
    upstream_duration: Histogram,
    session_lookups: Results<{ Lookup::ALL.len() }>,
    logins: Results<{ Login::ALL.len() }>,
    forward_auth: Results<{ ForwardAuth::ALL.len() }>,
    oidc_logins: Family<OidcLabel, Counter>,
    store_errors: Counter,
    open_connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    connection_rests: Counter,
    reloads: Results<{ Reload::ALL.len() }>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Buckets from 1ms to ~33s, doubling.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A new metric of type `M`, registered under `name` with `help`; the registry keeps a clone
/// (the handles share one value).
fn registered<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: Default + Clone + prometheus_client::registry::Metric,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// A new duration histogram in seconds (buckets from [`duration_buckets`]), registered.
fn seconds(registry: &mut Registry, name: &str, help: &str) -> Histogram {
    let histogram = Histogram::new(duration_buckets());
    registry.register_with_unit(name, help, Unit::Seconds, histogram.clone());
    histogram
}

impl Metrics {
    /// A fresh registry with every family registered (and build info set).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("doorman");
        let requests: Family<RequestLabels, Counter> = registered(
            &mut registry,
            "requests",
            "Responses sent, by route pattern and status class",
        );
        let request_duration = seconds(
            &mut registry,
            "request_duration",
            "From the request head to the last byte of the response body",
        );
        let upstream_duration = seconds(
            &mut registry,
            "upstream_duration",
            "From sending a request upstream to its response head (failed attempts included)",
        );
        let session_lookups: Family<LookupLabel, Counter> = registered(
            &mut registry,
            "session_lookups",
            "Session lookups by result (hit, miss, expired, store_error)",
        );
        let logins: Family<LoginLabel, Counter> = registered(
            &mut registry,
            "logins",
            "Password logins by result (success, bad_credentials, throttled, cross_site)",
        );
        let forward_auth: Family<ForwardAuthLabel, Counter> = registered(
            &mut registry,
            "forward_auth",
            "Forward-auth sub-requests by answer (allowed, unauthenticated, redirect, forbidden, \
             bad_request, unavailable)",
        );
        let oidc_logins: Family<OidcLabel, Counter> = registered(
            &mut registry,
            "oidc_logins",
            "OpenID Connect sign-ins by result: success, or why one was refused (provider_error, \
             unknown_state, replayed_state, bad_signature, wrong_nonce, email_not_verified, \
             domain_not_allowed, local_user, ...)",
        );
        let store_errors: Counter<u64, AtomicU64> = registered(
            &mut registry,
            "store_errors",
            "Session store operations on the request path that failed",
        );
        let open_connections: Gauge<i64, std::sync::atomic::AtomicI64> = registered(
            &mut registry,
            "open_connections",
            "Client connections open on the public listener",
        );
        let connection_rests: Counter<u64, AtomicU64> = registered(
            &mut registry,
            "connection_rests",
            "Idle HTTP/1 client connections whose HTTP state was put away until their next request",
        );
        let reloads: Family<ReloadLabel, Counter> = registered(
            &mut registry,
            "config_reloads",
            "Configuration reloads (SIGHUP) by result",
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label names the build",
            build_info,
        );
        // Every result label exists from the start at 0, so a dashboard's rate() has a series
        // before the first event (request routes appear as they are first seen).
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            requests,
            request_duration,
            upstream_duration,
            session_lookups: Results::new(&session_lookups, Lookup::ALL, |result| LookupLabel {
                result,
            }),
            logins: Results::new(&logins, Login::ALL, |result| LoginLabel { result }),
            forward_auth: Results::new(&forward_auth, ForwardAuth::ALL, |result| {
                ForwardAuthLabel { result }
            }),
            oidc_logins,
            store_errors,
            open_connections,
            connection_rests,
            reloads: Results::new(&reloads, Reload::ALL, |result| ReloadLabel { result }),
        }
    }

    /// Export the session cache's figures (`[session] cache = true`).
    pub fn register_session_cache(&mut self, stats: &CacheStats) {
        self.registry.register(
            "session_cache_lookups",
            "Session lookups the local cache answered (hit) or passed to Redis (miss)",
            stats.lookups.clone(),
        );
        self.registry.register(
            "session_cache_entries",
            "Sessions held in the local cache",
            stats.entries.clone(),
        );
        self.registry.register(
            "session_cache_trusted",
            "1 while Redis client tracking is on and healthy, so the cache may serve",
            stats.trusted.clone(),
        );
    }

    /// Export the Redis store's breaker: 1 while Redis is unreachable and lookups fail fast.
    pub fn register_store_unreachable(&mut self, gauge: &Gauge) {
        self.registry.register(
            "session_store_unreachable",
            "1 while Redis cannot be reached and session lookups fail at once, until a probe gets an answer",
            gauge.clone(),
        );
    }

    /// Export the long-lived exchanges' figures (DESIGN.md §11), counted by the store's
    /// registry of them.
    pub fn register_live(&mut self, stats: &LiveStats) {
        self.registry.register(
            "long_lived_open",
            "WebSockets and streams open for a session, followed until it ends",
            stats.open.clone(),
        );
        self.registry.register(
            "long_lived_ended",
            "Long-lived exchanges ended because their session ended, by why it ended",
            stats.ended.clone(),
        );
    }

    /// One response fully sent (or abandoned by the client).
    pub fn request(&self, route: &RouteLabel, status: u16, took: Duration) {
        let class = status_class_index(status);
        let series = || {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.clone(),
                    status_class: STATUS_CLASSES[class],
                })
                .clone()
        };
        let counted = route.0.counted.get_or_init(|| Counted {
            metrics: self.id,
            classes: Default::default(),
        });
        if counted.metrics == self.id {
            counted.classes[class].get_or_init(series).inc();
        } else {
            series().inc();
        }
        self.request_duration.observe(took.as_secs_f64());
    }

    /// One wait for an upstream response head.
    pub fn upstream(&self, took: Duration) {
        self.upstream_duration.observe(took.as_secs_f64());
    }

    pub fn session_lookup(&self, result: Lookup) {
        self.session_lookups.inc(result as usize);
    }

    pub fn login(&self, result: Login) {
        self.logins.inc(result as usize);
    }

    /// Count one forward-auth answer.
    pub fn forward_auth(&self, result: ForwardAuth) {
        self.forward_auth.inc(result as usize);
    }

    /// Count one OpenID Connect sign-in: `"success"` or the reason it was refused.
    pub fn oidc_login(&self, result: &'static str) {
        self.oidc_logins.get_or_create(&OidcLabel { result }).inc();
    }

    /// Count a session store failure on the request path.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    pub fn reload(&self, result: Reload) {
        self.reloads.inc(result as usize);
    }

    /// An idle client connection rested.
    pub fn connection_rested(&self) {
        self.connection_rests.inc();
    }

    /// Rests so far (`server::trim` reads it).
    pub fn connection_rests(&self) -> u64 {
        self.connection_rests.get()
    }

    /// Count a connection as open until the returned guard is dropped.
    pub fn open_connection(&self) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }

    /// The exposition text (OpenMetrics, which Prometheus scrapes natively).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Holds `doorman_open_connections` up by one while it lives.
pub struct OpenConnection(Gauge<i64, std::sync::atomic::AtomicI64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The `status_class` label's values: `2xx`, `4xx`, ...
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `status`'s index in [`STATUS_CLASSES`] (anything outside 100–499 counts as `5xx`).
fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// What `/metrics` shows of the cache ; shared with the registry, and
/// counted by the Redis store's session cache.
#[derive(Clone)]
pub struct CacheStats {
    /// Lookups by whether the cache answered them.
    pub lookups: Family<CacheLabel, Counter>,
    /// The family's two series, held so a lookup counts without the family's lock.
    hits: Counter,
    misses: Counter,
    /// Sessions cached now.
    pub entries: Gauge,
    /// 1 while the cache may serve (tracking on and healthy), else 0.
    pub trusted: Gauge,
}

impl Default for CacheStats {
    fn default() -> Self {
        let lookups = Family::<CacheLabel, Counter>::default();
        let series = |result| lookups.get_or_create(&CacheLabel { result }).clone();
        let (hits, misses) = (series(CacheResult::hit), series(CacheResult::miss));
        CacheStats {
            lookups,
            hits,
            misses,
            entries: Gauge::default(),
            trusted: Gauge::default(),
        }
    }
}

/// What `/metrics` shows of the long-lived exchanges that follow their session (DESIGN.md §11):
/// shared with the registry, counted by the store's `session::live` registry.
#[derive(Clone, Default)]
pub struct LiveStats {
    /// Open now.
    pub open: Gauge,
    /// Ended by their session's end, by reason.
    pub ended: Family<EndedLabel, Counter>,
}

/// Why a long-lived exchange was ended (`logout`, `revoked`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndedLabel {
    /// The reason, as the audit line names it.
    pub reason: &'static str,
}

impl CacheStats {
    /// A lookup the cache answered.
    pub fn hit(&self) {
        self.hits.inc();
    }

    /// A lookup the cache passed on to Redis.
    pub fn miss(&self) {
        self.misses.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_result_s_discriminant_is_its_index_among_all() {
        // `Results` counts `result as usize`: a reordered `ALL` would count under another label.
        assert!(Lookup::ALL
            .iter()
            .enumerate()
            .all(|(i, r)| *r as usize == i));
        assert!(Login::ALL.iter().enumerate().all(|(i, r)| *r as usize == i));
        assert!(ForwardAuth::ALL
            .iter()
            .enumerate()
            .all(|(i, r)| *r as usize == i));
        assert!(Reload::ALL
            .iter()
            .enumerate()
            .all(|(i, r)| *r as usize == i));
        let m = Metrics::new();
        m.session_lookup(Lookup::expired);
        m.forward_auth(ForwardAuth::forbidden);
        m.reload(Reload::failure);
        let text = m.encode().unwrap();
        for line in [
            "doorman_session_lookups_total{result=\"expired\"} 1",
            "doorman_session_lookups_total{result=\"hit\"} 0",
            "doorman_forward_auth_total{result=\"forbidden\"} 1",
            "doorman_config_reloads_total{result=\"failure\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_route_label_counts_in_every_registry_that_counts_it() {
        // The label holds the first registry's series; a second registry (tests run several
        // servers in one process) counts through its own family, and a new label with the same
        // name (a reload) finds the same series.
        let (first, second) = (Metrics::new(), Metrics::new());
        let route = RouteLabel::new("/dashboard");
        for status in [200, 204, 404, 599, 42] {
            first.request(&route, status, Duration::ZERO);
        }
        second.request(&route, 302, Duration::ZERO);
        first.request(&RouteLabel::new("/dashboard"), 200, Duration::ZERO);
        let (first, second) = (first.encode().unwrap(), second.encode().unwrap());
        let series = |class, n| {
            format!("doorman_requests_total{{route=\"/dashboard\",status_class=\"{class}\"}} {n}")
        };
        for line in [series("2xx", 3), series("4xx", 1), series("5xx", 2)] {
            assert!(first.contains(&line), "{line} missing from\n{first}");
        }
        assert!(!first.contains("3xx"), "{first}");
        assert!(second.contains(&series("3xx", 1)), "{second}");
        assert!(!second.contains("2xx"), "{second}");
    }

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.request(
            &RouteLabel::new("/dashboard"),
            200,
            Duration::from_millis(3),
        );
        m.session_lookup(Lookup::hit);
        m.login(Login::bad_credentials);
        m.reload(Reload::success);
        m.store_error();
        m.upstream(Duration::from_millis(1));
        let _open = m.open_connection();
        let text = m.encode().unwrap();
        for line in [
            "doorman_requests_total{route=\"/dashboard\",status_class=\"2xx\"} 1",
            "doorman_request_duration_seconds_count 1",
            "doorman_upstream_duration_seconds_count 1",
            "doorman_session_lookups_total{result=\"hit\"} 1",
            "doorman_logins_total{result=\"bad_credentials\"} 1",
            "doorman_store_errors_total 1",
            "doorman_open_connections 1",
            "doorman_config_reloads_total{result=\"success\"} 1",
            "doorman_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
