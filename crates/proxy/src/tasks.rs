//! The tasks of one proxy on a runtime it may share with other proxies (a daemon serves every
//! sandbox's proxy on one runtime). Stopping a proxy stops its own tasks and no other's, and
//! its owner can wait until each of them has ended: a connection task writes its request's
//! final byte counts into the record when it is dropped, so the records are only complete then.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::{watch, Notify};

/// Every task one proxy runs, wherever they were spawned.
pub(crate) struct Tasks {
    state: Arc<State>,
}

struct State {
    stop: watch::Sender<bool>,
    /// Tasks made by [`Tasks::track`] and not yet dropped.
    live: Mutex<usize>,
    /// Woken when `live` reaches zero, for a waiting thread and for waiting async code.
    ended: Condvar,
    ended_async: Notify,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks {
            state: Arc::new(State {
                stop: watch::channel(false).0,
                live: Mutex::new(0),
                ended: Condvar::new(),
                ended_async: Notify::new(),
            }),
        }
    }

    /// `task`, made to end as soon as the proxy is stopped, and counted until it is dropped
    /// (run to its end, stopped, or dropped unrun with its runtime). Spawn the result.
    pub fn track<F>(&self, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        *self.live() += 1;
        let live = Live(Arc::clone(&self.state));
        let mut stop = self.state.stop.subscribe();
        async move {
            tokio::select! {
                _ = task => {}
                // Also ends the task when the sender is gone (cannot happen while `live` holds
                // the state, but never leaves a task waiting for nothing).
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            // The task (and with it every connection and record entry it held) is dropped
            // before it stops being counted.
            drop(live);
        }
    }

    /// Tells every task to end (those made later end at once). Returns without waiting.
    pub fn stop(&self) {
        self.state.stop.send_replace(true);
    }

    /// Blocks the calling thread until every task has ended.
    pub fn wait(&self) {
        let mut live = self.live();
        while *live > 0 {
            live = self
                .state
                .ended
                .wait(live)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits, without blocking a runtime thread, until every task has ended.
    pub async fn wait_async(&self) {
        loop {
            let ended = self.state.ended_async.notified();
            tokio::pin!(ended);
            // Registered before looking, so a last task ending in between still wakes us.
            ended.as_mut().enable();
            if *self.live() == 0 {
                return;
            }
            ended.await;
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, usize> {
        self.state
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts one task until dropped.
struct Live(Arc<State>);

impl Drop for Live {
    fn drop(&mut self) {
        let mut live = self.0.live.lock().unwrap_or_else(PoisonError::into_inner);
        *live = live.saturating_sub(1);
        if *live == 0 {
            self.0.ended.notify_all();
            self.0.ended_async.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn stop_ends_every_task_and_wait_sees_them_gone() {
        let runtime = runtime();
        let tasks = Tasks::new();
        for _ in 0..3 {
            runtime.spawn(tasks.track(std::future::pending()));
        }
        tasks.stop();
        // A task made after the stop ends at once too.
        runtime.spawn(tasks.track(std::future::pending()));
        runtime.block_on(tasks.wait_async());
        assert_eq!(*tasks.live(), 0);
        tasks.wait();
    }

    #[test]
    fn tasks_dropped_with_their_runtime_are_not_waited_for() {
        let tasks = Tasks::new();
        let runtime = runtime();
        runtime.spawn(tasks.track(std::future::pending()));
        // Never spawned: dropped unrun.
        drop(tasks.track(std::future::pending()));
        assert_eq!(*tasks.live(), 1);
        drop(runtime);
        tasks.wait();
        assert_eq!(*tasks.live(), 0);
    }

    #[test]
    fn other_groups_keep_running_when_one_stops() {
        let runtime = runtime();
        let (stopped, running) = (Tasks::new(), Tasks::new());
        runtime.spawn(stopped.track(std::future::pending()));
        runtime.spawn(running.track(std::future::pending()));
        stopped.stop();
        runtime.block_on(stopped.wait_async());
        assert_eq!(*running.live(), 1);
    }
}
