//! `bunker serve`: the sandbox service (docs/protocol.md). A daemon on a Unix socket that
//! runs sandboxes for its clients: framed JSON requests (`bunker_api::protocol`), each
//! connection identified by SO_PEERCRED and held to the ceilings of the config, a bounded
//! number of sandboxes and a bounded queue, and the sandboxes of a connection killed when it
//! goes.
#![forbid(unsafe_code)]

mod auth;
mod config;
mod conn;
mod eval;
mod outbox;
mod pool;
mod sandbox;
mod socket;
mod state;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::Config;

/// How the daemon logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What `bunker serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
    pub log_format: LogFormat,
    /// `--pool NAME[=N]`: warm pools beside (and over) the config's `pools`.
    pub pools: Vec<(String, usize)>,
}

/// The size of a `--pool NAME` given without one.
pub const DEFAULT_POOL_SIZE: usize = 2;

/// A config with the command line's pools added (they win over the file's of the same name).
fn with_cli_pools(mut config: Config, options: &ServeOptions) -> Result<Config, String> {
    for (name, size) in &options.pools {
        config
            .add_pool(name, *size)
            .map_err(|e| format!("--pool {name}={size}: {e}"))?;
    }
    Ok(config)
}

/// Why the daemon could not start (once serving, it only stops on a signal).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(String);

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the daemon until SIGTERM or SIGINT (then drains: no new sandboxes, the running ones
/// finish, exit) — SIGHUP reloads the config.
pub fn serve(options: ServeOptions) -> Result<(), ServeError> {
    init_logging(options.log_format);
    let cwd = std::env::current_dir().map_err(|e| ServeError(format!("current directory: {e}")))?;
    let config = match &options.config {
        Some(path) => Config::load(path).map_err(ServeError)?,
        None => Config::without_file(cwd).map_err(ServeError)?,
    };
    let config = with_cli_pools(config, &options).map_err(ServeError)?;
    let layout = bunker_cgroup::Layout::detect().ok().map(Arc::new);
    clean_stale(layout.as_deref());
    // The fork server first, while this process is single-threaded and holds nothing a sandbox
    // must not reach (not even the socket).
    let spawner = bunker_sandbox::spawner::Spawner::start()
        .map_err(|e| ServeError(format!("cannot start the spawner: {e}")))?;
    let listener = socket::bind(&options.socket, config.socket_group).map_err(ServeError)?;
    let shared = Arc::new(state::Shared::new(
        config,
        options.config.clone(),
        spawner,
        layout,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| ServeError(format!("cannot start the runtime: {e}")))?;
    let served = runtime.block_on(run(listener, shared, &options));
    let _ = std::fs::remove_file(&options.socket);
    served
}

/// Removes what a killed daemon (or CLI) left: sandbox cgroups of dead supervisors and freezer
/// groups of dead daemons.
fn clean_stale(layout: Option<&bunker_cgroup::Layout>) {
    match bunker_cgroup::clean_stale() {
        Ok(report) => {
            if !report.removed.is_empty() {
                tracing::info!(
                    removed = report.removed.len(),
                    killed = report.killed,
                    "removed stale sandbox cgroups"
                );
            }
            for (path, error) in &report.failed {
                tracing::warn!(path = %path.display(), %error, "could not remove a stale cgroup");
            }
        }
        Err(e) => tracing::debug!(error = %e, "no cgroups to clean"),
    }
    if let Some(layout) = layout {
        let report = bunker_cgroup::clean_stale_freezers(layout);
        if !report.removed.is_empty() {
            tracing::info!(
                removed = report.removed.len(),
                "removed stale freezer groups"
            );
        }
    }
}

async fn run(
    listener: std::os::unix::net::UnixListener,
    shared: Arc<state::Shared>,
    options: &ServeOptions,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| ServeError(format!("{}: {e}", options.socket.display())))?;
    let signal_error = |e: std::io::Error| ServeError(format!("signal handler: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let config = shared.config();
    tracing::info!(
        socket = %options.socket.display(),
        max_sandboxes = config.max_sandboxes,
        max_queue = config.max_queue,
        config = %options.config.as_ref().map_or_else(|| "none".to_string(), |p| p.display().to_string()),
        "serving"
    );
    let refiller = tokio::spawn(pool::refill(shared.clone()));
    let mut number = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    number += 1;
                    tokio::spawn(conn::serve(stream, shared.clone(), number));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&shared, options),
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&options.socket);
    shared.start_draining();
    refiller.abort();
    tracing::info!(
        live = shared.busy_count(),
        "draining: no new sandboxes, waiting for the running ones"
    );
    loop {
        let idle = shared.idle.notified();
        if shared.busy_count() == 0 {
            break;
        }
        idle.await;
    }
    // Every sandbox is done; the connections send what they still hold, then close.
    let _ = shared.shutdown.send(true);
    let closing = std::time::Instant::now();
    while shared.connections.load(std::sync::atomic::Ordering::SeqCst) > 0
        && closing.elapsed() < std::time::Duration::from_secs(5)
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn reload(shared: &state::Shared, options: &ServeOptions) {
    let Some(path) = &shared.config_path else {
        tracing::info!("SIGHUP: no config file to reload");
        return;
    };
    match Config::load(path).and_then(|c| with_cli_pools(c, options)) {
        Ok(config) => {
            shared.set_config(config);
            tracing::info!(config = %path.display(), "config reloaded");
        }
        Err(e) => tracing::error!(error = %e, "config not reloaded; the old one stays in force"),
    }
}
