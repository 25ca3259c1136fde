//! Plugs the egress proxy (bunker-proxy) into the sandbox's `Egress` hook.

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
        let handle = bunker_proxy::start(config, TcpListener::from(http), TcpListener::from(socks))
            .map_err(|e| e.to_string())?;
        self.handle = Some(handle);
        Ok(())
    }

    fn finish(&mut self) -> Vec<HttpRecord> {
        let Some(handle) = self.handle.take() else {
            return Vec::new();
        };
        handle
            .finish()
            .into_iter()
            .map(|r| HttpRecord {
                kind: r.kind,
                host: r.host,
                port: r.port,
                address: r.address,
                allowed: r.allowed,
                rule: r.rule,
                bytes_sent: r.bytes_sent,
                bytes_received: r.bytes_received,
                duration_ms: r.duration_ms,
                limit: r.limit,
            })
            .collect()
    }
}
