//! Warm pools (docs/protocol.md, "Warm pools"): for each pooled policy, sandboxes built ahead
//! of the requests by the spawner (`Spawner::prepare`: namespaces, root, cgroup and limits
//! made, landlock and seccomp compiled, init waiting), each handed to one request whose
//! effective policy fits the pool's, which sends it the program (`Prepared::launch`).
//!
//! The bounds. A ready sandbox holds one of the daemon's `max_sandboxes` slots, so the daemon
//! never has more sandboxes than that. Pools never starve cold requests:
//! - a refill never waits for a slot: it takes a free one, and only while no request waits in
//!   the queue;
//! - a request that finds no free slot first ends one ready sandbox (of the pool with the most
//!   ready) and takes the slot it frees.
//!
//! Refill: one sandbox at a time, started when a run ends (a slot freed), not when a sandbox is
//! taken, so that on a small host no build competes with the warm run it replaces; and every
//! second while a pool is short.
//!
//! Pre-started runtimes: a pool named `eval:bun` / `eval:python` holds workers (eval.rs): its
//! sandboxes are prepared as any pool's, then handed the worker program at once, so that the
//! runtime has started and waits on its channel when an eval takes it. Only evals take them
//! (`take_worker`), only runs take the others (`take`); bounds, refill and rebuild are the same.
//!
//! Single use: a sandbox leaves its pool for one request and is torn down after that run, as a
//! cold one is. The pools are rebuilt on a config reload (their ready sandboxes ended, new ones
//! built from the reloaded policies) and emptied when the daemon drains.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bunker_api::eval::Engine;
use bunker_api::protocol::PoolStats;
use bunker_policy::Policy;
use bunker_sandbox::idmap::{IdLease, IdMode};
use bunker_sandbox::spawn::Prepared;
use tokio::sync::OwnedSemaphorePermit;

use crate::config::Config;
use crate::eval::Worker;
use crate::sandbox::Ids;
use crate::state::Shared;

/// What a pool keeps ready: a prepared sandbox, or (an `eval:` pool) a launched worker.
pub enum Held {
    Prepared(Prepared),
    Worker(Worker),
}

impl Held {
    fn sandbox(&self) -> Option<&bunker_sandbox::spawn::Sandbox> {
        match self {
            Held::Prepared(prepared) => prepared.sandbox(),
            Held::Worker(worker) => worker.sandbox(),
        }
    }
}

/// A ready sandbox and what it holds: its host ids (as root) and its daemon slot.
pub struct Warm {
    pub held: Held,
    pub id_mode: IdMode,
    pub lease: Option<IdLease>,
    pub permit: OwnedSemaphorePermit,
}

/// A ready sandbox taken for a request (its slot now the request's).
pub struct Taken {
    pub prepared: Prepared,
    pub id_mode: IdMode,
    pub lease: Option<IdLease>,
}

impl Warm {
    /// Whether its init still waits (its pidfd is readable once it has exited).
    fn alive(&self) -> bool {
        let Some(sandbox) = self.held.sandbox() else {
            return false;
        };
        let pidfd = std::os::fd::AsFd::as_fd(&sandbox.supervised.pidfd);
        matches!(
            bunker_sys::event::poll(&[pidfd], Some(Duration::ZERO)).as_deref(),
            Ok([ready]) if !ready.readable && !ready.hangup
        )
    }

    /// Ends the sandbox off the runtime (killing and reaping init blocks briefly), then frees
    /// its slot and its ids.
    fn discard(self) {
        tokio::task::spawn_blocking(move || drop(self));
    }
}

struct Pool {
    name: String,
    size: usize,
    policy: Policy,
    /// A pool of pre-started workers of this engine (`eval:ENGINE`).
    engine: Option<Engine>,
    ready: VecDeque<Warm>,
    filling: usize,
    taken: u64,
}

/// Every pool of the config in force.
#[derive(Default)]
pub struct Pools {
    /// Bumped at each rebuild: a fill begun before it is discarded.
    generation: u64,
    pools: Vec<Pool>,
}

/// A fill in progress.
pub struct Fill {
    generation: u64,
    pool: String,
    pub policy: Policy,
    pub engine: Option<Engine>,
    pub permit: OwnedSemaphorePermit,
}

/// Whether a request's effective policy may use a sandbox prepared under `pooled`: equal but
/// where the difference is applied at the launch, after the sandbox was built — a timeout no
/// longer than the pool's (the supervisor's), fewer `allow.env` names (the environment is
/// built at the launch), a `limits.memory` or `limits.pids` no higher than the pool's (written
/// to the sandbox's cgroup at the launch).
pub fn fits(pooled: &Policy, wanted: &Policy) -> bool {
    let mut wanted = wanted.clone();
    // Where the policy came from (a file, inline) is not built into the sandbox.
    wanted.sources.clone_from(&pooled.sources);
    match (pooled.limits.timeout, wanted.limits.timeout) {
        (Some(pool), Some(asked)) if asked <= pool => wanted.limits.timeout = Some(pool),
        (None, Some(_)) => wanted.limits.timeout = None,
        _ => {}
    }
    // The cgroup's limits are lowered at the launch (`Prepared::launch`); a pool without one
    // has no cgroup to hold it.
    for (pool, asked) in [
        (pooled.limits.memory, &mut wanted.limits.memory),
        (pooled.limits.pids, &mut wanted.limits.pids),
    ] {
        if matches!((pool, *asked), (Some(pool), Some(lower)) if lower <= pool) {
            *asked = pool;
        }
    }
    if wanted
        .allow
        .env
        .iter()
        .all(|name| pooled.allow.env.contains(name))
    {
        wanted.allow.env = pooled.allow.env.clone();
    }
    wanted == *pooled
}

impl Pools {
    /// The pools `config` names, replacing the current ones (whose ready sandboxes end).
    pub fn rebuild(&mut self, config: &Config) {
        self.generation += 1;
        for pool in self.pools.drain(..) {
            pool.ready.into_iter().for_each(Warm::discard);
        }
        self.pools = config
            .pools
            .iter()
            .filter_map(|(name, &size)| {
                Some(Pool {
                    name: name.clone(),
                    size,
                    policy: config.named_policy(name)?,
                    engine: Engine::ALL.into_iter().find(|e| e.profile() == name),
                    ready: VecDeque::new(),
                    filling: 0,
                    taken: 0,
                })
            })
            .collect();
    }

    /// Ends every ready sandbox and keeps no pool (the drain).
    pub fn clear(&mut self) {
        self.generation += 1;
        for pool in self.pools.drain(..) {
            pool.ready.into_iter().for_each(Warm::discard);
        }
    }

    /// A ready sandbox for `policy`, when a pool's fits it. One whose init died while it
    /// waited (killed from outside) is ended and the next one tried.
    pub fn take(&mut self, policy: &Policy) -> Option<Warm> {
        self.take_from(None, policy)
    }

    /// A pre-started worker of `engine` for an eval under `policy`, as [`Pools::take`], and
    /// the cgroup limits to lower before its hand-over: only those below the pool's (a write
    /// of the same value would only cost the eval time).
    pub fn take_worker(
        &mut self,
        engine: Engine,
        policy: &Policy,
    ) -> Option<(Warm, bunker_policy::Limits)> {
        let warm = self.take_from(Some(engine), policy)?;
        let pooled = self
            .pools
            .iter()
            .find(|p| p.engine == Some(engine) && fits(&p.policy, policy))
            .map(|p| &p.policy.limits);
        let mut lower = policy.limits.clone();
        if let Some(pooled) = pooled {
            if lower.memory == pooled.memory {
                lower.memory = None;
            }
            if lower.pids == pooled.pids {
                lower.pids = None;
            }
        }
        Some((warm, lower))
    }

    fn take_from(&mut self, engine: Option<Engine>, policy: &Policy) -> Option<Warm> {
        let pool = self
            .pools
            .iter_mut()
            .find(|p| p.engine == engine && !p.ready.is_empty() && fits(&p.policy, policy))?;
        while let Some(warm) = pool.ready.pop_front() {
            if warm.alive() {
                pool.taken += 1;
                return Some(warm);
            }
            warm.discard();
        }
        None
    }

    /// Ends one ready sandbox, of the pool with the most ready, for a request that found no
    /// free slot: its slot goes to that request. False when none is ready.
    pub fn evict_one(&mut self) -> bool {
        let fullest = self
            .pools
            .iter_mut()
            .filter(|p| !p.ready.is_empty())
            .max_by_key(|p| p.ready.len());
        match fullest.and_then(|p| p.ready.pop_back()) {
            Some(warm) => {
                warm.discard();
                true
            }
            None => false,
        }
    }

    /// The next fill due: a pool short of its size, and a free slot for it.
    fn next_fill(&mut self, take_slot: impl Fn() -> Option<OwnedSemaphorePermit>) -> Option<Fill> {
        let generation = self.generation;
        let pool = self
            .pools
            .iter_mut()
            .filter(|p| p.ready.len() + p.filling < p.size)
            .min_by_key(|p| p.ready.len() + p.filling)?;
        let permit = take_slot()?;
        pool.filling += 1;
        Some(Fill {
            generation,
            pool: pool.name.clone(),
            policy: pool.policy.clone(),
            engine: pool.engine,
            permit,
        })
    }

    /// A fill's end: its sandbox joins the pool (or is ended, the pool being gone since).
    fn finish(&mut self, generation: u64, pool: &str, warm: Option<Warm>) {
        let current = generation == self.generation;
        let pool = self.pools.iter_mut().find(|p| p.name == pool);
        match (current, pool) {
            (true, Some(pool)) => {
                pool.filling = pool.filling.saturating_sub(1);
                if let Some(warm) = warm {
                    pool.ready.push_back(warm);
                }
            }
            _ => warm.into_iter().for_each(Warm::discard),
        }
    }

    pub fn stats(&self) -> std::collections::BTreeMap<String, PoolStats> {
        self.pools
            .iter()
            .map(|p| {
                let usage: Vec<Option<u64>> = p
                    .ready
                    .iter()
                    .map(|w| {
                        w.held
                            .sandbox()
                            .and_then(|s| s.supervised.cgroup.memory_usage())
                    })
                    .collect();
                let idle_memory_bytes = (!usage.is_empty() && usage.iter().all(Option::is_some))
                    .then(|| usage.iter().flatten().sum());
                let stats = PoolStats {
                    size: p.size as u64,
                    ready: p.ready.len() as u64,
                    taken: p.taken,
                    idle_memory_bytes,
                };
                (p.name.clone(), stats)
            })
            .collect()
    }
}

/// How long the refiller waits after a failed fill (or, idle, between looks).
const REFILL_PAUSE: Duration = Duration::from_secs(1);

/// Keeps the pools filled, one sandbox at a time (the spawner builds one at a time anyway),
/// until the daemon drains.
pub async fn refill(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let woken = shared.refill.notified();
        while let Some(fill) = shared.next_fill() {
            let (id_mode, lease) = match shared.ids {
                Ids::Leased(range) => match IdLease::acquire(range) {
                    Ok(lease) => (lease.id_mode(), Some(lease)),
                    Err(e) => {
                        tracing::warn!(pool = %fill.pool, error = %e, "no host ids for a pooled sandbox");
                        shared.finish_fill(fill.generation, &fill.pool, None);
                        break;
                    }
                },
                Ids::Own { uid, gid } => (IdMode::Rootless { uid, gid }, None),
            };
            let prepared = shared.spawner.prepare(fill.policy.clone(), id_mode).await;
            let held = match (prepared, fill.engine) {
                (Ok(prepared), None) => Ok(Held::Prepared(prepared)),
                (Ok(prepared), Some(engine)) => {
                    let policy = fill.policy.clone();
                    tokio::task::spawn_blocking(move || {
                        crate::eval::start_worker(prepared, &policy, engine)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(bunker_api::ApiError::new(
                            bunker_api::ErrorCode::InternalError,
                            format!("launch task: {e}"),
                        ))
                    })
                    .map(Held::Worker)
                }
                (Err(e), _) => Err(e),
            };
            match held {
                Ok(held) => {
                    let warm = Warm {
                        held,
                        id_mode,
                        lease,
                        permit: fill.permit,
                    };
                    shared.finish_fill(fill.generation, &fill.pool, Some(warm));
                }
                Err(e) => {
                    let error = e.message;
                    tracing::warn!(pool = %fill.pool, %error, "could not prepare a pooled sandbox");
                    shared.finish_fill(fill.generation, &fill.pool, None);
                    break;
                }
            }
        }
        if shared.is_draining() {
            return;
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(REFILL_PAUSE) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

impl Shared {
    fn next_fill(&self) -> Option<Fill> {
        if self.is_draining() || self.queued.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.pools_lock()
            .next_fill(|| self.slots.clone().try_acquire_owned().ok())
    }

    fn finish_fill(&self, generation: u64, pool: &str, warm: Option<Warm>) {
        self.pools_lock().finish(generation, pool, warm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_launch_applies_may_differ_from_the_pool() {
        let mut pooled = bunker_policy::builtin("default").unwrap();
        pooled.limits.timeout = Some(Duration::from_secs(10));
        pooled.allow.env = vec!["HOME".into(), "LANG".into()];
        pooled.limits.memory = Some(64 << 20);
        pooled.limits.pids = Some(64);
        assert!(fits(&pooled, &pooled));
        let mut shorter = pooled.clone();
        shorter.limits.timeout = Some(Duration::from_millis(1));
        assert!(fits(&pooled, &shorter));
        let mut fewer_env = pooled.clone();
        fewer_env.allow.env.pop();
        assert!(fits(&pooled, &fewer_env));
        let mut inline = pooled.clone();
        inline.sources = vec!["inline".into()];
        assert!(fits(&pooled, &inline));
        // Anything built into the sandbox must be equal.
        let mut more_memory = pooled.clone();
        more_memory.limits.memory = Some(1 << 40);
        assert!(!fits(&pooled, &more_memory));
        let mut more_env = pooled.clone();
        more_env.allow.env.push("SECRET".into());
        assert!(!fits(&pooled, &more_env));
        let mut lower_limits = pooled.clone();
        lower_limits.limits.memory = Some(32 << 20);
        lower_limits.limits.pids = Some(8);
        assert!(fits(&pooled, &lower_limits));
        let mut higher_pids = pooled.clone();
        higher_pids.limits.pids = Some(65);
        assert!(!fits(&pooled, &higher_pids));
        let mut without_memory = pooled.clone();
        without_memory.limits.memory = None;
        assert!(!fits(&pooled, &without_memory));
        let mut longer = pooled.clone();
        longer.limits.timeout = Some(Duration::from_secs(11));
        assert!(!fits(&pooled, &longer));
        let mut unbounded = pooled.clone();
        unbounded.limits.timeout = None;
        assert!(!fits(&pooled, &unbounded));
    }
}
