//! Writes that wait for a replica (DESIGN.md §13): creating a session, a logout and a revoke
//! are followed by `WAIT 1 100` on the connection, so on the node, that took the write. Redis
//! replication is asynchronous: a master that dies right after acknowledging a write may take it
//! with it, and the replica Sentinel or Cluster promotes then lacks a new session (the user logs
//! in again) or, worse, still has one that was logged out. Waiting, bounded, for one replica to
//! acknowledge makes both rare (not impossible: the wait can time out).
//!
//! * **Same round trip.** The write and its `WAIT` go out as one pipeline on one connection:
//!   a replica that acknowledges at once costs no extra round trip. On Cluster the pipeline is
//!   routed by its first keyed command, so the `WAIT` reaches the node owning the key (a bare
//!   `WAIT` would go to every primary).
//! * **No replica, no wait.** A master without replicas would make every `WAIT 1 100` last its
//!   full 100 ms. So `WAIT` is only sent while replicas are [`Replicas::seen`]; otherwise the
//!   write is pipelined with `ROLE`, which lists the master's replicas at no extra round trip,
//!   and a `WAIT` follows (a second round trip; it covers the write, sent before it on the same
//!   connection) only if there are some. A `WAIT` that gets no acknowledgement clears what was
//!   seen, so the next write asks `ROLE` again: a standalone Redis without replicas costs one
//!   100 ms wait once, then nothing.
//! * **Not an error.** A `WAIT` answered with fewer acknowledgements than asked for leaves a
//!   write that happened: it is logged at debug level, and the request goes on.
//!
//! Lookups never wait: they run as before, one round trip each.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::{Cmd, Pipeline, RedisResult, ScriptInvocation, Value};
use tracing::debug;

use super::topology::Conn;

/// How many replicas a write waits for, and for how long (milliseconds).
const WAIT_FOR: (u32, u32) = (1, 100);

/// Whether the master(s) last had replicas: which of the two pipelines a write sends.
#[derive(Default)]
pub(super) struct Replicas {
    seen: AtomicBool,
}

/// The write a [`Replicas::write`] sends: a command, or a script (loaded again if Redis lost
/// it, as after a restart).
pub(super) enum Write<'a> {
    Command(Cmd),
    Script(ScriptInvocation<'a>),
}

impl Write<'_> {
    fn add_to(&self, pipe: &mut Pipeline) {
        match self {
            Write::Command(cmd) => {
                pipe.add_command(cmd.clone());
            }
            Write::Script(call) => {
                pipe.invoke_script(call);
            }
        }
    }
}

impl Replicas {
    /// Send `write` (on `key`, which routes it on Cluster) and wait as the module docs say;
    /// the write's reply. Errors are the write's own (or the connection's), never a short wait.
    pub(super) async fn write(
        &self,
        mut c: Conn,
        key: &str,
        write: &Write<'_>,
    ) -> RedisResult<Value> {
        let waits = self.seen.load(Ordering::Relaxed);
        let mut pipe = redis::pipe();
        write.add_to(&mut pipe);
        if waits {
            pipe.cmd("WAIT").arg(WAIT_FOR.0).arg(WAIT_FOR.1);
        } else {
            pipe.cmd("ROLE");
        }
        let (reply, tail): (Value, Value) = match pipe.query_async(&mut c).await {
            // A pipeline does not load scripts by itself (after a Redis restart).
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                if let Write::Script(call) = write {
                    call.load_async(&mut c).await?;
                }
                pipe.query_async(&mut c).await?
            }
            answered => answered?,
        };
        let acked = if waits {
            tail
        } else if replica_count(&tail) > 0 {
            self.seen.store(true, Ordering::Relaxed);
            match c.wait_for_replica(key, WAIT_FOR).await {
                Ok(acked) => acked,
                Err(e) => {
                    debug!(error = %e, "WAIT after a session write failed; the write stands");
                    return Ok(reply);
                }
            }
        } else {
            return Ok(reply);
        };
        if !matches!(acked, Value::Int(n) if n >= 1) {
            // Replicas gone, or slow: ask ROLE again on the next write.
            self.seen.store(false, Ordering::Relaxed);
            debug!(
                acked = ?acked,
                "no replica acknowledged a session write within 100 ms; the write stands"
            );
        }
        Ok(reply)
    }
}

/// The number of replicas a `ROLE` reply lists (0 for a replica's or a malformed reply).
fn replica_count(role: &Value) -> usize {
    let Value::Array(items) = role else {
        return 0;
    };
    let is_master = matches!(items.first(), Some(Value::BulkString(r)) if r == b"master")
        || matches!(items.first(), Some(Value::SimpleString(r)) if r == "master");
    match items.get(2) {
        Some(Value::Array(replicas)) if is_master => replicas.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn role_replies_count_replicas_only_on_a_master() {
        let replica = Value::Array(vec![bulk("127.0.0.1"), bulk("6380"), bulk("42")]);
        let master =
            |replicas| Value::Array(vec![bulk("master"), Value::Int(42), Value::Array(replicas)]);
        assert_eq!(replica_count(&master(vec![])), 0);
        assert_eq!(replica_count(&master(vec![replica.clone()])), 1);
        let on_replica = Value::Array(vec![bulk("slave"), bulk("127.0.0.1"), Value::Int(6379)]);
        assert_eq!(replica_count(&on_replica), 0);
        assert_eq!(replica_count(&Value::Nil), 0);
    }
}
