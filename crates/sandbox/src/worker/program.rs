//! How an engine's worker starts: the runtime with the worker library's source as its program
//! (workers/bun/worker.js, workers/python/worker.py, compiled into bunker), so nothing of it
//! needs to be readable inside the sandbox.

use std::ffi::OsString;

use bunker_api::Engine;

/// The Bun worker library (workers/bun/worker.js).
pub const BUN_WORKER: &str = include_str!("../../../../workers/bun/worker.js");
/// The Python worker library (workers/python/worker.py).
pub const PYTHON_WORKER: &str = include_str!("../../../../workers/python/worker.py");

/// The worker library's source for `engine`.
pub fn source(engine: Engine) -> &'static str {
    match engine {
        Engine::Bun => BUN_WORKER,
        Engine::Python => PYTHON_WORKER,
    }
}

/// The argv that starts `engine`'s worker (looked up on the sandbox's PATH): `bun -e SRC`,
/// `python3 -I -c SRC` (isolated: no user site, no PYTHON* variables). The worker expects its
/// channel as fds 3 and 4.
pub fn argv(engine: Engine) -> Vec<OsString> {
    let args: [&str; 4] = match engine {
        Engine::Bun => ["bun", "--no-install", "-e", BUN_WORKER],
        Engine::Python => ["python3", "-I", "-c", PYTHON_WORKER],
    };
    args.into_iter().map(OsString::from).collect()
}
