//! Who may connect and what they may run: the peer's credentials (SO_PEERCRED, read once at
//! accept) against the config's grants, whose ceilings bound each request's effective policy
//! (`Policy::is_subset_of`).

use bunker_api::{ApiError, ErrorCode, PolicyChoice};
use bunker_policy::Policy;

use crate::config::{Config, Grant, Grantee};

/// A connection's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// The policy a request names: inline (loaded against the config's base directory), a policy
/// of the config, or a built-in profile.
pub fn resolve(config: &Config, choice: &PolicyChoice) -> Result<Policy, ApiError> {
    match choice {
        PolicyChoice::Inline(doc) => {
            bunker_policy::load_str(&doc.to_string(), &config.base_dir, "inline policy")
                .map_err(|e| ApiError::from(&e))
        }
        PolicyChoice::Name(name) => config.named_policy(name).ok_or_else(|| {
            let mut known: Vec<&str> = config.policies.keys().map(String::as_str).collect();
            known.extend(["default", "runtime:bun", "runtime:python"]);
            ApiError::new(
                ErrorCode::NotFound,
                format!("no policy named {name:?} (known: {})", known.join(", ")),
            )
        }),
    }
}

fn grants_of<'a>(config: &'a Config, peer: &Peer) -> impl Iterator<Item = &'a Grant> {
    let peer = *peer;
    config
        .grants
        .iter()
        .flatten()
        .filter(move |g| match g.grantee {
            Grantee::Uid(uid) => uid == peer.uid,
            Grantee::Gid(gid) => gid == peer.gid,
        })
}

/// Whether `peer` may connect at all: the daemon's own uid always; without a config nobody
/// else; with one, whoever a grant names.
pub fn may_connect(config: &Config, peer: &Peer, daemon_uid: u32) -> Result<(), ApiError> {
    if peer.uid == daemon_uid || grants_of(config, peer).next().is_some() {
        return Ok(());
    }
    let why = if config.grants.is_none() {
        "only the daemon's own uid may connect (no --config)"
    } else {
        "no grant of the config names it"
    };
    Err(ApiError::new(
        ErrorCode::PolicyNotPermitted,
        format!(
            "uid {} (gid {}) may not use this service: {why}",
            peer.uid, peer.gid
        ),
    ))
}

/// Whether `peer` may run under `policy`: the daemon's own uid may use any; anyone else needs a
/// grant whose ceiling the policy is a subset of. The refusal names what goes beyond the
/// ceiling.
pub fn permit(
    config: &Config,
    peer: &Peer,
    daemon_uid: u32,
    policy: &Policy,
) -> Result<(), ApiError> {
    if peer.uid == daemon_uid {
        return Ok(());
    }
    let mut refusals = Vec::new();
    for grant in grants_of(config, peer) {
        match policy.is_subset_of(&grant.ceiling) {
            Ok(()) => return Ok(()),
            Err(widenings) => refusals.push(format!(
                "beyond ceiling {:?}: {}",
                grant.ceiling_name,
                widenings.join("; ")
            )),
        }
    }
    if refusals.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PolicyNotPermitted,
            format!("uid {} has no grant", peer.uid),
        ));
    }
    Err(ApiError::new(
        ErrorCode::PolicyNotPermitted,
        format!(
            "uid {} (gid {}) may not use this policy: {}",
            peer.uid,
            peer.gid,
            refusals.join(" | ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let text = r#"{"grants": [{"uid": 1000, "ceiling": "default"}]}"#;
        Config::parse(text, Path::new("/tmp/serve.json")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn peer(uid: u32) -> Peer {
        Peer {
            uid,
            gid: uid,
            pid: None,
        }
    }

    #[test]
    fn a_policy_beyond_the_ceiling_is_refused_naming_the_widening() {
        let config = config();
        let wider = resolve(
            &config,
            &PolicyChoice::Inline(serde_json::json!({
                "extends": ["default"], "allow": {"net": ["example.com:443"]}
            })),
        );
        let wider = wider.unwrap_or_else(|e| panic!("{e}"));
        let e = permit(&config, &peer(1000), 0, &wider).err();
        let e = e.unwrap_or_else(|| panic!("permitted"));
        assert_eq!(e.code, ErrorCode::PolicyNotPermitted);
        assert!(e.message.contains("example.com"), "{}", e.message);
        // The control: the ceiling itself is within the ceiling, and the daemon's uid may use
        // anything.
        let same = resolve(&config, &PolicyChoice::Name("default".into()));
        let same = same.unwrap_or_else(|e| panic!("{e}"));
        assert!(permit(&config, &peer(1000), 0, &same).is_ok());
        assert!(permit(&config, &peer(0), 0, &wider).is_ok());
        assert!(permit(&config, &peer(1001), 0, &same).is_err());
    }

    #[test]
    fn only_granted_peers_connect() {
        let config = config();
        assert!(may_connect(&config, &peer(1000), 0).is_ok());
        assert!(may_connect(&config, &peer(1001), 0).is_err());
        let none = Config::without_file("/".into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(may_connect(&none, &peer(0), 0).is_ok());
        let e = may_connect(&none, &peer(65534), 0).err();
        assert!(e.is_some_and(|e| e.message.contains("only the daemon's own uid")));
    }

    #[test]
    fn an_unknown_name_is_not_found() {
        let e = resolve(&config(), &PolicyChoice::Name("nope".into())).err();
        assert_eq!(e.map(|e| e.code), Some(ErrorCode::NotFound));
    }
}
