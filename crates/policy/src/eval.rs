//! The policy side of `eval` (docs/workers.md): an eval's [`HttpOptions`] mapped onto a policy
//! ([`ApplyHttp`]) and its [`EvalLimits`] narrowing the profile's ([`narrow_limits`]).

use std::time::Duration;

use std::path::PathBuf;

use bunker_api::{Engine, EvalLimits, HttpOptions, PolicyChoice};

use crate::error::{ErrorKind, PolicyError};
use crate::load::{LoadSpec, PolicySource};
use crate::net::NetRule;
use crate::types::{Policy, PolicyDoc};

/// Where errors of an eval's options say they are.
const ORIGIN: &str = "eval request";

/// Console bytes an eval keeps when `limits.console_bytes` is not given.
pub const DEFAULT_CONSOLE_BYTES: u64 = 64 * 1024;

/// What an eval of `engine` loads: `source` (a caller's policy, which may set anything) with the
/// engine's profile (`eval:bun`, `eval:python`) added to its `extends`, or the profile alone.
/// `base` resolves the relative paths of a text source and of the overlay (the caller's cwd).
pub fn eval_load_spec(engine: Engine, source: Option<PolicySource>, base: PathBuf) -> LoadSpec {
    let profile = engine.profile().to_string();
    let source = source.unwrap_or_else(|| PolicySource::Text {
        text: format!("{{\"extends\": [\"{profile}\"]}}"),
        name: profile.clone(),
        base: base.clone(),
    });
    LoadSpec {
        source,
        overlay: PolicyDoc {
            extends: vec![profile],
            ..PolicyDoc::default()
        },
        overlay_base: base,
    }
}

/// The source of an eval's own policy (`spec.policy`): an inline document, its relative paths
/// against `base`; a name, the policy file `file_of` gives for it, else a built-in profile it
/// names. `None`: no policy by that name.
pub fn spec_policy_source(
    choice: &PolicyChoice,
    base: &std::path::Path,
    file_of: impl Fn(&str) -> Option<PathBuf>,
) -> Option<PolicySource> {
    let text = |text: String| PolicySource::Text {
        text,
        name: "spec.policy".into(),
        base: base.to_path_buf(),
    };
    match choice {
        PolicyChoice::Inline(doc) => Some(text(doc.to_string())),
        PolicyChoice::Name(name) => match file_of(name) {
            Some(file) => Some(PolicySource::File(file)),
            None if crate::profiles::NAMES.contains(&name.as_str()) => {
                Some(text(serde_json::json!({ "extends": [name] }).to_string()))
            }
            None => None,
        },
    }
}

/// The eval's own options on top of its loaded policy: `http` ([`ApplyHttp`]), then `limits`
/// ([`narrow_limits`]).
pub fn apply_eval_options(
    policy: &mut Policy,
    http: Option<&HttpOptions>,
    limits: &EvalLimits,
) -> Result<(), PolicyError> {
    if let Some(http) = http {
        http.apply_to(policy)?;
    }
    narrow_limits(policy, limits)
}

/// Maps an eval's `http` options (the first seed's Ruby key names) onto the policy: the one
/// place this mapping lives.
pub trait ApplyHttp {
    /// `allowlist` → `allow.net` (each entry once per `allowed_ports` port, or on any port
    /// when none is given); `denylist` → `deny.net`; `block_private_ips` → the same `http`
    /// key; `max_requests`, `max_request_size` → `http.max_request_bytes`,
    /// `max_response_size` → `http.max_response_bytes`, `request_timeout` (ms) →
    /// `http.request_timeout`, each lowering what the policy has. `allowed_methods` other than
    /// empty is refused: the proxy cannot see the method of a TLS connection.
    fn apply_to(&self, policy: &mut Policy) -> Result<(), PolicyError>;
}

fn invalid(kind: ErrorKind, path: String, message: String) -> PolicyError {
    PolicyError::new(kind, ORIGIN, path, message)
}

fn with_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn lower<T: Ord + Copy>(current: Option<T>, asked: Option<T>) -> Option<T> {
    match (current, asked) {
        (Some(c), Some(a)) => Some(c.min(a)),
        (c, a) => c.or(a),
    }
}

impl ApplyHttp for HttpOptions {
    fn apply_to(&self, policy: &mut Policy) -> Result<(), PolicyError> {
        if !self.allowed_methods.is_empty() {
            return Err(invalid(
                ErrorKind::InvalidValue,
                "http.allowed_methods".into(),
                format!(
                    "methods {:?} cannot be enforced: the egress proxy does not see the method of a TLS connection; leave allowed_methods empty",
                    self.allowed_methods
                ),
            ));
        }
        for (i, host) in self.allowlist.iter().enumerate() {
            let texts: Vec<String> = if self.allowed_ports.is_empty() {
                vec![host.clone()]
            } else {
                self.allowed_ports
                    .iter()
                    .map(|p| with_port(host, *p))
                    .collect()
            };
            for text in texts {
                let rule = NetRule::parse(&text).map_err(|m| {
                    invalid(ErrorKind::InvalidNetRule, format!("http.allowlist[{i}]"), m)
                })?;
                policy.allow.net.push(rule);
            }
        }
        for (i, host) in self.denylist.iter().enumerate() {
            let rule = NetRule::parse(host).map_err(|m| {
                invalid(ErrorKind::InvalidNetRule, format!("http.denylist[{i}]"), m)
            })?;
            policy.deny.net.push(rule);
        }
        if let Some(block) = self.block_private_ips {
            policy.http.block_private_ips = block;
        }
        let http = &mut policy.http;
        http.max_requests = lower(http.max_requests, self.max_requests);
        http.max_request_bytes = lower(http.max_request_bytes, self.max_request_size);
        http.max_response_bytes = lower(http.max_response_bytes, self.max_response_size);
        http.request_timeout = lower(
            http.request_timeout,
            self.request_timeout.map(Duration::from_millis),
        );
        Ok(())
    }
}

/// Lowers the policy's limits to an eval's: `timeout_ms` → `limits.timeout`, `memory_bytes` →
/// `limits.memory`, each only ever lower. (`console_bytes` is the worker's cap, not a
/// policy limit.) A zero is refused.
pub fn narrow_limits(policy: &mut Policy, limits: &EvalLimits) -> Result<(), PolicyError> {
    for (name, value) in [
        ("limits.timeout_ms", limits.timeout_ms),
        ("limits.memory_bytes", limits.memory_bytes),
        ("limits.console_bytes", limits.console_bytes),
    ] {
        if value == Some(0) {
            return Err(invalid(
                ErrorKind::InvalidLimit,
                name.into(),
                "expected a positive number, found 0".into(),
            ));
        }
    }
    let l = &mut policy.limits;
    l.timeout = lower(l.timeout, limits.timeout_ms.map(Duration::from_millis));
    l.memory = lower(l.memory, limits.memory_bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_options_map_onto_the_policy() {
        let mut p = Policy::default();
        p.http.max_requests = Some(5);
        let opts = HttpOptions {
            allowlist: vec!["example.com".into(), "::1".into()],
            denylist: vec!["bad.example.com".into()],
            block_private_ips: Some(false),
            allowed_ports: vec![443, 8080],
            max_requests: Some(10),
            max_response_size: Some(1000),
            request_timeout: Some(5000),
            ..HttpOptions::default()
        };
        opts.apply_to(&mut p).unwrap_or_else(|e| panic!("{e}"));
        let rules: Vec<&str> = p.allow.net.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            rules,
            [
                "example.com:443",
                "example.com:8080",
                "[::1]:443",
                "[::1]:8080"
            ]
        );
        assert_eq!(p.deny.net.len(), 1);
        assert!(!p.http.block_private_ips);
        assert_eq!(p.http.max_requests, Some(5), "only ever lowered");
        assert_eq!(p.http.max_response_bytes, Some(1000));
        assert_eq!(p.http.request_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn bad_http_options_say_where() {
        let mut p = Policy::default();
        let bad = HttpOptions {
            allowlist: vec!["ok.com".into(), "http://x".into()],
            ..HttpOptions::default()
        };
        let e = bad.apply_to(&mut p).err().map(|e| e.json_path);
        assert_eq!(e.as_deref(), Some("http.allowlist[1]"));
        let methods = HttpOptions {
            allowed_methods: vec!["GET".into()],
            ..HttpOptions::default()
        };
        assert!(methods.apply_to(&mut p).is_err());
    }

    #[test]
    fn limits_only_narrow() {
        let mut p = Policy::default();
        p.limits.timeout = Some(Duration::from_secs(5));
        p.limits.memory = Some(100);
        let asked = EvalLimits {
            timeout_ms: Some(60_000),
            memory_bytes: Some(50),
            console_bytes: None,
        };
        narrow_limits(&mut p, &asked).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.limits.timeout, Some(Duration::from_secs(5)));
        assert_eq!(p.limits.memory, Some(50));
        let zero = EvalLimits {
            timeout_ms: Some(0),
            ..EvalLimits::default()
        };
        assert!(narrow_limits(&mut p, &zero).is_err());
    }
}
