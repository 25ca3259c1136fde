//! The program's environment: cleared, then only what the policy names.

use std::collections::BTreeMap;
use std::ffi::OsString;

use bunker_policy::Policy;

use crate::egress::{HTTP_PROXY_PORT, SOCKS_PROXY_PORT};

/// Defaults for the variables most programs expect, used only when neither `allow.env` nor
/// `set_env` provides them.
pub const DEFAULTS: [(&str, &str); 4] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/tmp"),
    ("TMPDIR", "/tmp"),
    ("LANG", "C.UTF-8"),
];

/// Builds the program's environment from the caller's `caller` variables:
/// 1. `allow.env` names (minus `deny.env`) with the caller's values;
/// 2. `set_env`, literal values, overriding;
/// 3. the proxy variables when `allow.net` is non-empty (they point at the in-sandbox
///    listeners, and override anything above so traffic cannot bypass the proxy by accident);
/// 4. defaults for PATH, HOME, TMPDIR, LANG when still unset.
pub fn build(
    policy: &Policy,
    caller: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    let caller: BTreeMap<OsString, OsString> = caller.into_iter().collect();
    for name in &policy.allow.env {
        if policy.deny.env.iter().any(|d| d == name) {
            continue;
        }
        if let Some(v) = caller.get(&OsString::from(name)) {
            env.insert(name.into(), v.clone());
        }
    }
    for (k, v) in &policy.set_env {
        env.insert(k.into(), v.into());
    }
    if !policy.allow.net.is_empty() {
        let http = format!("http://127.0.0.1:{HTTP_PROXY_PORT}");
        let socks = format!("socks5h://127.0.0.1:{SOCKS_PROXY_PORT}");
        for (k, v) in [
            ("HTTP_PROXY", &http),
            ("HTTPS_PROXY", &http),
            ("http_proxy", &http),
            ("https_proxy", &http),
            ("ALL_PROXY", &socks),
            ("all_proxy", &socks),
            ("NO_PROXY", &String::new()),
            ("no_proxy", &String::new()),
        ] {
            env.insert(k.into(), v.into());
        }
    }
    for (k, v) in DEFAULTS {
        env.entry(k.into()).or_insert_with(|| v.into());
    }
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::default()
    }

    fn get<'a>(env: &'a [(OsString, OsString)], k: &str) -> Option<&'a str> {
        env.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.to_str())
    }

    #[test]
    fn only_allowed_names_pass_and_deny_wins() {
        let mut p = policy();
        p.allow.env = vec!["FOO".into(), "SECRET".into(), "ABSENT".into()];
        p.deny.env = vec!["SECRET".into()];
        let caller = [("FOO", "1"), ("SECRET", "s"), ("OTHER", "o")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = build(&p, caller);
        assert_eq!(get(&env, "FOO"), Some("1"));
        assert_eq!(get(&env, "SECRET"), None);
        assert_eq!(get(&env, "OTHER"), None);
        assert_eq!(get(&env, "ABSENT"), None);
        assert_eq!(get(&env, "PATH"), Some(DEFAULTS[0].1));
        assert_eq!(get(&env, "HTTP_PROXY"), None);
    }

    #[test]
    fn set_env_overrides_and_proxy_vars_follow_allow_net() {
        let mut p = policy();
        p.allow.env = vec!["HOME".into()];
        p.set_env.insert("HOME".into(), "/home/sandbox".into());
        p.allow.net = vec![bunker_policy::net::NetRule::parse("example.com").unwrap()];
        let env = build(&p, [(OsString::from("HOME"), OsString::from("/root"))]);
        assert_eq!(get(&env, "HOME"), Some("/home/sandbox"));
        assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert_eq!(get(&env, "ALL_PROXY"), Some("socks5h://127.0.0.1:1080"));
        assert_eq!(get(&env, "NO_PROXY"), Some(""));
    }
}
