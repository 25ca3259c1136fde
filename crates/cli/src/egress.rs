//! Plugs the egress proxy (bunker-proxy) into the sandbox's `Egress` hook, on a runtime of the
//! CLI's own for its one sandbox.

use std::net::{IpAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bunker_policy::Policy;
use bunker_proxy::{ProxyConfig, ProxyHandle, RequestRecord};
use bunker_sandbox::console::{Console, Verbosity};
use bunker_sandbox::egress::Egress;
use bunker_sandbox::HttpRecord;

/// Serves the sandbox's proxy listeners with bunker-proxy.
pub struct ProxyEgress {
    config: Option<ProxyConfig>,
    handle: Option<ProxyHandle>,
    /// Made in [`Egress::start`], which the sandbox calls once init exists: the sandbox is
    /// cloned while the process is single-threaded, and the runtime's worker is a thread.
    /// Declared after `handle`, so a handle dropped unfinished is dropped first.
    runtime: Option<tokio::runtime::Runtime>,
}

impl ProxyEgress {
    /// With `-v`, each decision is said on `console` as the proxy makes it.
    pub fn new(policy: &Policy, resolve: Vec<(String, IpAddr)>, console: &Console) -> ProxyEgress {
        let on_decision = (console.verbosity() >= Verbosity::Verbose).then(|| {
            let console = console.clone();
            Arc::new(move |r: &RequestRecord| console.verbose(&decision_line(r)))
                as bunker_proxy::DecisionHook
        });
        ProxyEgress {
            config: Some(ProxyConfig {
                policy: Arc::new(policy.clone()),
                resolve,
                on_decision,
            }),
            handle: None,
            runtime: None,
        }
    }
}

/// `bunker: net: denied connect 203.0.113.80:443: http.block_private_ips (...)`
fn decision_line(r: &RequestRecord) -> String {
    let verdict = if r.allowed { "allowed" } else { "denied" };
    let host = if r.host.contains(':') {
        format!("[{}]", r.host)
    } else {
        r.host.clone()
    };
    let limit = r
        .limit
        .as_deref()
        .map(|l| format!(" (http.{l})"))
        .unwrap_or_default();
    format!(
        "bunker: net: {verdict} {} {host}:{}: {}{limit}",
        r.kind, r.port, r.rule
    )
}

impl Egress for ProxyEgress {
    fn start(&mut self, http: OwnedFd, socks: OwnedFd) -> Result<(), String> {
        let config = self
            .config
            .take()
            .ok_or_else(|| "the egress proxy was already started".to_string())?;
        // One worker: the proxy of one sandbox needs no more, and it was one thread before.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bunker-proxy")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("egress proxy: starting its runtime: {e}"))?;
        let handle = bunker_proxy::start_on(
            runtime.handle(),
            config,
            TcpListener::from(http),
            TcpListener::from(socks),
        )
        .map_err(|e| e.to_string())?;
        self.handle = Some(handle);
        self.runtime = Some(runtime);
        Ok(())
    }

    fn finish(&mut self) -> Vec<HttpRecord> {
        let Some(handle) = self.handle.take() else {
            return Vec::new();
        };
        // Called on the supervisor's thread, never one of the runtime's: it may block.
        let records = handle.finish();
        // Every task has ended and the records are whole. Not waiting for the runtime's
        // blocking threads: a name lookup stuck in the resolver must not hold up the result.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        records.into_iter().map(HttpRecord::from).collect()
    }
}
