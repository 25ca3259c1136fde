//! What the daemon's connections share: the config in force, the sandbox slots and the queue
//! in front of them, and the counters `stats` reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bunker_api::protocol::Stats;
use bunker_api::{ApiError, ErrorCode, RunResult};
use bunker_cgroup::Layout;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use bunker_sandbox::spawner::Spawner;

use crate::config::Config;
use crate::pool::{Held, Pools, Taken, Warm};
use crate::sandbox::{Ids, Launch, Running};

pub struct Shared {
    config: RwLock<Arc<Config>>,
    pub config_path: Option<PathBuf>,
    pub(crate) slots: Arc<Semaphore>,
    pub max_sandboxes: usize,
    pub max_queue: usize,
    pub(crate) queued: AtomicU64,
    live: AtomicU64,
    pub connections: AtomicU64,
    refused_busy: AtomicU64,
    totals: Mutex<BTreeMap<String, u64>>,
    started: std::time::Instant,
    draining: AtomicBool,
    /// Told whenever a sandbox ends or a queued request leaves the queue (the drain waits).
    pub idle: Notify,
    /// Turned true once a drain is over: every connection then flushes and closes.
    pub shutdown: watch::Sender<bool>,
    next_sandbox: AtomicU64,
    pub(crate) spawner: Arc<Spawner>,
    pub(crate) ids: Ids,
    /// The warm pools (`pool.rs`) and the refiller's wake-up.
    pools: Mutex<Pools>,
    pub refill: Notify,
    pub daemon_uid: u32,
    pub layout: Option<Arc<Layout>>,
    /// `bunker X.Y.Z`.
    pub server: String,
}

/// A taken sandbox slot; dropping it frees the slot and counts the sandbox gone.
pub struct Slot {
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
        self.shared.idle.notify_waiters();
        // A pool refills once a run is over, not while it runs: on a small host a build beside
        // a warm run would slow that run down (pool.rs).
        self.shared.refill.notify_one();
    }
}

fn busy(message: String) -> ApiError {
    ApiError::new(ErrorCode::Busy, message)
}

impl Shared {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        spawner: Spawner,
        layout: Option<Arc<Layout>>,
    ) -> Shared {
        let (uid, gid) = bunker_sys::process::ids();
        let ids = if bunker_sys::process::euid() == 0 {
            Ids::Leased(config.host_ids)
        } else {
            Ids::Own { uid, gid }
        };
        let mut pools = Pools::default();
        pools.rebuild(&config);
        Shared {
            pools: Mutex::new(pools),
            refill: Notify::new(),
            slots: Arc::new(Semaphore::new(config.max_sandboxes)),
            max_sandboxes: config.max_sandboxes,
            max_queue: config.max_queue,
            config: RwLock::new(Arc::new(config)),
            config_path,
            queued: AtomicU64::new(0),
            live: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused_busy: AtomicU64::new(0),
            totals: Mutex::new(BTreeMap::new()),
            started: std::time::Instant::now(),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            shutdown: watch::channel(false).0,
            next_sandbox: AtomicU64::new(1),
            spawner: Arc::new(spawner),
            ids,
            daemon_uid: bunker_sys::process::euid(),
            layout,
            server: format!("bunker {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new config in force, its pools rebuilt: all of them (SIGHUP), or those whose
    /// policy or size changed (`only_changed`: a watched file changed). Slots and the queue
    /// keep their start-up sizes.
    pub fn set_config(&self, config: Config, only_changed: bool) {
        if only_changed {
            self.pools_lock().rebuild_changed(&config);
        } else {
            self.pools_lock().rebuild(&config);
        }
        self.refill.notify_one();
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
    }

    /// A fresh sandbox id.
    pub fn sandbox_id(&self) -> String {
        format!("s-{}", self.next_sandbox.fetch_add(1, Ordering::Relaxed))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.pools_lock().clear();
        self.refill.notify_one();
        self.idle.notify_waiters();
    }

    /// Sandboxes running or waiting for a slot.
    pub fn busy_count(&self) -> u64 {
        self.live.load(Ordering::SeqCst) + self.queued.load(Ordering::SeqCst)
    }

    /// A live sandbox's slot from its permit: counted live until the slot is dropped.
    fn occupy(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        self.live.fetch_add(1, Ordering::SeqCst);
        Slot {
            shared: self.clone(),
            _permit: permit,
        }
    }

    /// A sandbox slot: at once when one is free, after waiting in the queue when it has room
    /// (first come, first served), otherwise `busy` at once. `cancel` turning true leaves the
    /// queue with `cancelled`.
    pub async fn admit(
        self: &Arc<Self>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Slot, ApiError> {
        if self.is_draining() {
            return Err(busy(
                "the service is stopping (SIGTERM): it takes no new sandboxes".into(),
            ));
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let max_queue = self.max_queue as u64;
                // A ready pooled sandbox gives its slot up to a request that found none
                // (pool.rs: pools never starve cold requests).
                if self.pools_lock().evict_one() {
                    tracing::debug!("a pooled sandbox ended to free a slot");
                }
                let entered = self
                    .queued
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                        (q < max_queue).then_some(q + 1)
                    });
                if entered.is_err() {
                    self.refused_busy.fetch_add(1, Ordering::Relaxed);
                    return Err(busy(format!(
                        "all {} sandbox slots and all {} queue places are taken",
                        self.max_sandboxes, self.max_queue
                    )));
                }
                let waited = tokio::select! {
                    permit = self.slots.clone().acquire_owned() => permit.map_err(|_| {
                        busy("the service is stopping".into())
                    }),
                    _ = cancel.wait_for(|c| *c) => Err(ApiError::new(
                        ErrorCode::Cancelled,
                        "cancelled while queued",
                    )),
                };
                self.queued.fetch_sub(1, Ordering::SeqCst);
                self.idle.notify_waiters();
                waited?
            }
        };
        Ok(self.occupy(permit))
    }

    pub(crate) fn pools_lock(&self) -> std::sync::MutexGuard<'_, Pools> {
        self.pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A ready pooled sandbox whose pool fits `policy`, and the slot it held (the refiller is
    /// told when the run ends, the slot dropped).
    pub fn take_warm(self: &Arc<Self>, policy: &bunker_policy::Policy) -> Option<(Slot, Taken)> {
        if self.is_draining() {
            return None;
        }
        let Warm {
            held: Held::Prepared(prepared),
            id_mode,
            lease,
            permit,
        } = self.pools_lock().take(policy)?
        else {
            return None;
        };
        let slot = self.occupy(permit);
        Some((
            slot,
            Taken {
                prepared,
                id_mode,
                lease,
            },
        ))
    }

    /// A pre-started worker of `engine` whose pool fits `policy`, with the slot it held, its
    /// cgroup's limits lowered to the policy's first (a worker whose cgroup refuses is ended,
    /// and the eval starts one of its own).
    pub fn take_worker(
        self: &Arc<Self>,
        engine: bunker_api::eval::Engine,
        policy: &bunker_policy::Policy,
    ) -> Option<crate::eval::Hired> {
        if self.is_draining() {
            return None;
        }
        let (
            Warm {
                held: Held::Worker(worker),
                lease,
                permit,
                ..
            },
            lower,
        ) = self.pools_lock().take_worker(engine, policy)?
        else {
            return None;
        };
        let slot = self.occupy(permit);
        let lowered = worker
            .sandbox()
            .map(|sandbox| sandbox.supervised.cgroup.lower_limits(&lower));
        if let Some(Err(e)) = lowered {
            tracing::warn!(error = %e, "a pooled worker's cgroup refused the eval's limits; it is ended");
            tokio::task::spawn_blocking(move || drop((worker, slot, lease)));
            return None;
        }
        Some(crate::eval::Hired {
            worker,
            slot,
            lease,
            warm: true,
        })
    }

    /// Builds a sandbox (a slot taken).
    pub async fn launch(&self, launch: Launch) -> Result<Running, ApiError> {
        crate::sandbox::launch(self.spawner.clone(), self.ids, self.layout.clone(), launch).await
    }

    /// Counts a finished run by its status.
    pub fn count_result(&self, result: &RunResult) {
        self.count_status(result.status);
    }

    /// Counts a finished run or eval by its status.
    pub fn count_status(&self, status: bunker_api::Status) {
        let status = serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *self
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(status)
            .or_default() += 1;
    }

    pub fn stats(&self) -> Stats {
        Stats {
            live: self.live.load(Ordering::SeqCst),
            queued: self.queued.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
            max_sandboxes: self.max_sandboxes as u64,
            max_queue: self.max_queue as u64,
            totals: self
                .totals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            refused_busy: self.refused_busy.load(Ordering::Relaxed),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            pools: self.pools_lock().stats(),
        }
    }
}
