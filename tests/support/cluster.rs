//! A real Redis Cluster for the tests: three masters and three replicas, each a
//! `redis-server --cluster-enabled yes` on a free loopback port in a directory of its own,
//! joined by `redis-cli --cluster create … --cluster-replicas 1`, all killed when dropped.
//!
//! The accessors ask the cluster itself (`CLUSTER NODES`, `CLUSTER KEYSLOT`) every time, so they
//! stay right across a [`RedisCluster::reshard`]. A missing `redis-server` or `redis-cli` is a
//! test failure, never a skip.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{query, require_redis_server, RedisServer};

/// How long the cluster may take to agree it is whole after `redis-cli --cluster create`.
const FORMED: Duration = Duration::from_secs(30);

/// Six `redis-server` processes joined into one cluster.
pub struct RedisCluster {
    /// Every node, in the order given to `redis-cli --cluster create` (it makes the first three
    /// masters).
    pub nodes: Vec<RedisServer>,
    /// Every node's `requirepass` (and `masterauth`), if any.
    pub password: Option<String>,
    /// The ports of nodes [`RedisCluster::kill_master`] killed: never asked again.
    dead: Vec<u16>,
}

/// One master as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The node id `redis-cli --cluster reshard` takes.
    pub id: String,
    pub port: u16,
    /// The slot ranges it owns (inclusive), without those being imported or migrated.
    pub slots: Vec<(u16, u16)>,
}

impl Master {
    /// Whether this master serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&slot))
    }

    /// Its slots, lowest first (the order `redis-cli --cluster reshard` moves them in).
    pub fn slot_list(&self) -> Vec<u16> {
        let mut all: Vec<u16> = self.slots.iter().flat_map(|(lo, hi)| *lo..=*hi).collect();
        all.sort_unstable();
        all
    }

    /// How many slots it serves.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|(lo, hi)| usize::from(hi - lo) + 1)
            .sum()
    }
}

impl RedisCluster {
    /// Start six nodes and join them: three masters with one replica each; returns once every
    /// node reports `cluster_state:ok`, knows all six nodes, every replica's link to its
    /// master is up, and every master has its replica online.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with_password(None)
    }

    /// [`RedisCluster::start`], every node with `requirepass` and `masterauth` `password`, and a
    /// node timeout of 5 s: long enough that a busy two-core machine never fails a node over by
    /// mistake (a reshard under load), short enough to notice a dead one.
    pub fn start_with_password(password: Option<&str>) -> RedisCluster {
        RedisCluster::start_with(password, 5000)
    }

    /// [`RedisCluster::start_with_password`] with `cluster-node-timeout` `node_timeout_ms`: how
    /// long a node may be silent before the others count it failed and its replica takes over.
    pub fn start_with(password: Option<&str>, node_timeout_ms: u32) -> RedisCluster {
        require_redis_server();
        require_redis_cli();
        let node_timeout = node_timeout_ms.to_string();
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-announce-ip",
            "127.0.0.1",
            "--cluster-node-timeout",
            &node_timeout,
        ];
        if let Some(password) = password {
            args.extend(["--requirepass", password, "--masterauth", password]);
        }
        let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_with(&args)).collect();
        let cluster = RedisCluster {
            nodes,
            password: password.map(str::to_string),
            dead: Vec::new(),
        };
        let mut create = cluster.cli();
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_formed();
        cluster
    }

    fn wait_until_formed(&self) {
        let deadline = Instant::now() + FORMED;
        for node in &self.nodes {
            loop {
                let mut conn = self.connect(node.port);
                let info: String = query(&mut conn, &["CLUSTER", "INFO"]);
                let replication: String = query(&mut conn, &["INFO", "replication"]);
                let whole = info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:6")
                    && info.contains("cluster_slots_assigned:16384");
                // A master counts once its replica is attached and online: a node that is to
                // become a replica still says `role:master` (no replicas) until it is told, so
                // `role:master` alone let a test start before a master had its replica, and a
                // session written then skipped its `WAIT` (doorman asks `ROLE` first).
                let synced = replication.contains("master_link_status:up")
                    || (replication.contains("role:master")
                        && replication.contains("connected_slaves:1")
                        && replication.contains("state=online"));
                if whole && synced {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not form within {FORMED:?}: node {}:\n{info}\n{replication}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis://127.0.0.1:PORT` of every node: the seeds.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `kill -9` the master on `port` (its replica is promoted after the node timeout).
    pub fn kill_master(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        node.kill();
        self.dead.push(port);
    }

    /// The port of the first node still alive: the one the accessors ask.
    fn witness(&self) -> u16 {
        self.nodes
            .iter()
            .map(|n| n.port)
            .find(|p| !self.dead.contains(p))
            .expect("a live node")
    }

    /// The masters, as the first live node sees them now (a master counted failed is left out).
    pub fn masters(&self) -> Vec<Master> {
        let nodes: String = query(&mut self.connect(self.witness()), &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = || fields[2].split(',');
                if fields.len() < 8
                    || !flags().any(|f| f == "master")
                    || flags().any(|f| f == "fail")
                {
                    return None;
                }
                let port = fields[1]
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let slots = fields[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                        None => s.parse().ok().map(|one| (one, one)),
                    })
                    .collect();
                Some(Master {
                    id: fields[0].to_string(),
                    port,
                    slots,
                })
            })
            .collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        let slot: i64 = query(
            &mut self.connect(self.witness()),
            &["CLUSTER", "KEYSLOT", key],
        );
        u16::try_from(slot).expect("slot")
    }

    /// The master that serves `key`'s slot now.
    pub fn owner(&self, key: &str) -> Master {
        let slot = self.slot(key);
        self.masters()
            .into_iter()
            .find(|m| m.owns(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// A plain connection to the node on `port`, authenticated if the cluster has a password
    /// (to inspect what doorman wrote; no cluster redirections).
    pub fn connect(&self, port: u16) -> ::redis::Connection {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        let mut conn = node.client();
        if let Some(password) = &self.password {
            let () = query(&mut conn, &["AUTH", password]);
        }
        conn
    }

    /// A connection to the master that serves `key`.
    pub fn client_for(&self, key: &str) -> ::redis::Connection {
        self.connect(self.owner(key).port)
    }

    /// `redis-cli`, with the cluster's password in its environment (not on its command line).
    fn cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        if let Some(password) = &self.password {
            cli.env("REDISCLI_AUTH", password);
        }
        cli
    }

    /// The keys matching `pattern` on every master, with the port of the master holding each.
    pub fn keys(&self, pattern: &str) -> Vec<(u16, String)> {
        self.masters()
            .iter()
            .flat_map(|m| {
                let keys: Vec<String> = query(&mut self.connect(m.port), &["KEYS", pattern]);
                keys.into_iter().map(move |k| (m.port, k))
            })
            .collect()
    }

    /// `redis-cli --cluster reshard`: move `slots` slots from master `from` to master `to`,
    /// blocking until it is done. Panics if it fails.
    pub fn reshard(&self, from: &Master, to: &Master, slots: usize) {
        let out = self
            .cli()
            .args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", to.port))
            .args(["--cluster-from", &from.id, "--cluster-to", &to.id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// How many `MOVED` and `ASK` replies the masters have sent so far (`INFO errorstats`):
    /// evidence that a test really exercised redirections.
    pub fn redirections(&self) -> (u64, u64) {
        let (mut moved, mut ask) = (0, 0);
        for node in self.nodes.iter().filter(|n| !self.dead.contains(&n.port)) {
            let stats: String = query(&mut self.connect(node.port), &["INFO", "errorstats"]);
            moved += errorstat(&stats, "MOVED");
            ask += errorstat(&stats, "ASK");
        }
        (moved, ask)
    }
}

/// The hash slot of `key` as Redis Cluster computes it: CRC16 (XMODEM) of the key, or of its
/// hash tag (what is between the first `{` and the next `}`, if not empty), modulo 16384.
/// Computed here so a test can make keys for a chosen slot without asking the cluster each
/// time (tests compare it with `CLUSTER KEYSLOT`).
pub fn key_slot(key: &str) -> u16 {
    let key = key.as_bytes();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let tag = &key[open + 1..];
            let len = tag.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &tag[..len])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// `count` of `errorstat_{name}:count=N` in `INFO errorstats`.
fn errorstat(stats: &str, name: &str) -> u64 {
    let prefix = format!("errorstat_{name}:count=");
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Panic with a clear message when `redis-cli` is missing (Debian's redis-tools, which
/// redis-server depends on).
pub fn require_redis_cli() {
    let found = super::installed("redis-cli");
    assert!(
        found,
        "redis-cli is not installed: the cluster tests need it (Debian: apt-get install redis-tools, or run .ci/run)"
    );
}
