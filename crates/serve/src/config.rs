//! The daemon's configuration file (docs/protocol.md, "Authorization and the config file"):
//! JSON like policies, unknown keys refused, every policy it names loaded up front so a bad
//! one is an error at start (or at SIGHUP, where the old config then stays).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bunker_policy::Policy;
use bunker_sandbox::idmap::IdRange;

use crate::frequent::FrequentRule;
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    max_sandboxes: Option<usize>,
    max_queue: Option<usize>,
    max_frame: Option<usize>,
    frame_timeout_ms: Option<u64>,
    socket_group: Option<String>,
    host_ids: Option<HostIdsDoc>,
    #[serde(default)]
    policies: BTreeMap<String, PathBuf>,
    #[serde(default)]
    grants: Vec<GrantDoc>,
    /// Warm pools: policy name → how many ready sandboxes.
    #[serde(default)]
    pools: BTreeMap<String, usize>,
    /// Pools for policies seen often (off without it).
    frequent: Option<FrequentDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrequentDoc {
    after: usize,
    within_ms: u64,
    max_pools: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostIdsDoc {
    first: u32,
    count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantDoc {
    uid: Option<u32>,
    gid: Option<u32>,
    ceiling: String,
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    Uid(u32),
    Gid(u32),
}

/// A grant: who, and the policy that is their ceiling.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grantee: Grantee,
    pub ceiling_name: String,
    pub ceiling: Policy,
}

/// The configuration in force.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where relative paths (of the config's policies and of inline policies) resolve.
    pub base_dir: PathBuf,
    pub max_sandboxes: usize,
    pub max_queue: usize,
    pub max_frame: usize,
    pub frame_timeout: Duration,
    /// The socket's group (mode 0660) as a gid.
    pub socket_group: Option<u32>,
    /// As root, the host ids the sandboxes are given, one leased per live sandbox.
    pub host_ids: IdRange,
    /// Named policies: the file and the policy loaded from it.
    pub policies: BTreeMap<String, (PathBuf, Policy)>,
    /// `None`: no config file (only the daemon's own uid may connect).
    pub grants: Option<Vec<Grant>>,
    /// Warm pools: policy name (built in or in `policies`) → size.
    pub pools: BTreeMap<String, usize>,
    /// Pools of one for policies seen often (`frequent.rs`); `None`: off.
    pub frequent: Option<FrequentRule>,
    /// The built-in profiles requests have named, each loaded once per config.
    profiles: ProfileCache,
}

/// Built-in profiles by name, loaded on first use. A profile depends on the daemon's HOME and
/// PATH (fixed for its life) and on what is on disk (which `bun` or `python3` PATH finds, which
/// paths exist): like the config's own policy files, disk is read when the config is loaded
/// and again at each reload (SIGHUP), which builds a new config and so an empty cache.
#[derive(Debug, Default)]
struct ProfileCache(Mutex<BTreeMap<String, Policy>>);

impl Clone for ProfileCache {
    fn clone(&self) -> Self {
        ProfileCache(Mutex::new(self.lock().clone()))
    }
}

impl ProfileCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Policy>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The built-in profile `name`, loaded now unless already; `None`: no such profile.
    fn get(&self, name: &str) -> Option<Policy> {
        if let Some(policy) = self.lock().get(name) {
            return Some(policy.clone());
        }
        // Loaded outside the lock: two first requests may both load it, to the same result.
        let policy = bunker_policy::builtin(name).ok()?;
        self.lock().insert(name.to_owned(), policy.clone());
        Some(policy)
    }
}

fn default_max_sandboxes() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// The configuration without a file: defaults, relative paths against `cwd`, host ids from
    /// `BUNKER_ROOT_IDS` (else the default range) as for `bunker run`.
    pub fn without_file(cwd: PathBuf) -> Result<Config, String> {
        Ok(Config {
            base_dir: cwd,
            max_sandboxes: default_max_sandboxes(),
            max_queue: 64,
            max_frame: bunker_api::protocol::DEFAULT_MAX_FRAME,
            frame_timeout: Duration::from_millis(5000),
            socket_group: None,
            host_ids: IdRange::from_env()?,
            policies: BTreeMap::new(),
            grants: None,
            pools: BTreeMap::new(),
            frequent: None,
            profiles: ProfileCache::default(),
        })
    }

    /// Loads `path`. The error names the file and where in it.
    pub fn load(path: &Path) -> Result<Config, String> {
        let where_ = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{where_}: {e}"))?;
        Config::parse(&text, path)
    }

    /// Parses the text of the config file at `path` (which gives the base directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let where_ = path.display();
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: ConfigDoc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." {
                String::new()
            } else {
                format!("{at}: ")
            };
            format!("{where_}: {at}{}", e.inner())
        })?;
        let absolute = std::path::absolute(path).map_err(|e| format!("{where_}: {e}"))?;
        let base_dir = absolute
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let positive = |value: Option<usize>, key: &str, default: usize| match value {
            Some(0) => Err(format!("{where_}: {key}: must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let mut config =
            Config::without_file(base_dir.clone()).map_err(|e| format!("{where_}: {e}"))?;
        config.max_sandboxes = positive(doc.max_sandboxes, "max_sandboxes", config.max_sandboxes)?;
        config.max_queue = doc.max_queue.unwrap_or(config.max_queue);
        config.max_frame = positive(doc.max_frame, "max_frame", config.max_frame)?;
        if config.max_frame > u32::MAX as usize {
            return Err(format!("{where_}: max_frame: at most {} bytes", u32::MAX));
        }
        if let Some(ms) = doc.frame_timeout_ms {
            if ms == 0 {
                return Err(format!("{where_}: frame_timeout_ms: must be at least 1"));
            }
            config.frame_timeout = Duration::from_millis(ms);
        }
        if let Some(group) = &doc.socket_group {
            config.socket_group =
                Some(group_id(group).map_err(|e| format!("{where_}: socket_group: {e}"))?);
        }
        if let Some(ids) = &doc.host_ids {
            config.host_ids = IdRange::parse(&format!("{}:{}", ids.first, ids.count))
                .map_err(|e| format!("{where_}: host_ids: {e}"))?;
        }
        for (name, file) in &doc.policies {
            if bunker_policy::builtin(name).is_ok() {
                return Err(format!(
                    "{where_}: policies.{name}: the name of a built-in profile"
                ));
            }
            let file = base_dir.join(file);
            let policy = bunker_policy::load_file(&file)
                .map_err(|e| format!("{where_}: policies.{name}: {e}"))?;
            config.policies.insert(name.clone(), (file, policy));
        }
        let mut grants = Vec::new();
        for (i, grant) in doc.grants.iter().enumerate() {
            let grantee = match (grant.uid, grant.gid) {
                (Some(uid), None) => Grantee::Uid(uid),
                (None, Some(gid)) => Grantee::Gid(gid),
                _ => return Err(format!("{where_}: grants[{i}]: exactly one of uid and gid")),
            };
            let ceiling = match config.policies.get(&grant.ceiling) {
                Some((_, policy)) => policy.clone(),
                None => bunker_policy::builtin(&grant.ceiling).map_err(|_| {
                    format!(
                        "{where_}: grants[{i}].ceiling: no policy named {:?} (neither in policies nor built in)",
                        grant.ceiling
                    )
                })?,
            };
            grants.push(Grant {
                grantee,
                ceiling_name: grant.ceiling.clone(),
                ceiling,
            });
        }
        config.grants = Some(grants);
        if let Some(f) = &doc.frequent {
            if f.after < 2 || f.within_ms == 0 {
                return Err(format!(
                    "{where_}: frequent: `after` must be at least 2 and `within_ms` at least 1"
                ));
            }
            if f.max_pools == 0 || f.max_pools > config.max_sandboxes {
                return Err(format!(
                    "{where_}: frequent.max_pools: 1 to max_sandboxes ({}), not {}",
                    config.max_sandboxes, f.max_pools
                ));
            }
            config.frequent = Some(FrequentRule {
                after: f.after,
                within: Duration::from_millis(f.within_ms),
                max_pools: f.max_pools,
            });
        }
        for (name, size) in doc.pools {
            config
                .add_pool(&name, size)
                .map_err(|e| format!("{where_}: pools.{name}: {e}"))?;
        }
        Ok(config)
    }
}

impl Config {
    /// The policy a name stands for: one of `policies`, else a built-in profile (loaded once
    /// per config: see `ProfileCache`).
    pub fn named_policy(&self, name: &str) -> Option<Policy> {
        match self.policies.get(name) {
            Some((_, policy)) => Some(policy.clone()),
            None => self.profiles.get(name),
        }
    }

    /// Adds (or resizes) the warm pool of policy `name`: `size` between 1 and `max_sandboxes`.
    pub fn add_pool(&mut self, name: &str, size: usize) -> Result<(), String> {
        if self.named_policy(name).is_none() {
            return Err(format!(
                "no policy named {name:?} (neither in policies nor built in)"
            ));
        }
        if size == 0 || size > self.max_sandboxes {
            return Err(format!(
                "a pool holds 1 to max_sandboxes ({}) sandboxes, not {size}",
                self.max_sandboxes
            ));
        }
        self.pools.insert(name.to_string(), size);
        Ok(())
    }
}

/// How often the watched files are looked at.
pub const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// What a file's metadata says of its content: a write changes its size or times, a
/// replacement (an editor's rename over it) its inode. `None`: the file is not there.
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// The files a config was loaded from: the config file and every file its policies were built
/// from (`extends` included), each with its stamp when the config was loaded. The daemon looks
/// at them every [`WATCH_PERIOD`] (docs/protocol.md, "Warm pools": staleness): a stat of a few
/// files costs nothing next to a sandbox, needs no descriptor or watch of the kernel's, and
/// sees a file replaced by a rename as well as one written in place, which an inotify watch on
/// the file itself would not.
#[derive(Debug)]
pub struct Watch {
    files: BTreeMap<PathBuf, Stamp>,
}

impl Watch {
    /// The files of `config`, loaded from `path` (no file: nothing to watch).
    pub fn new(config: &Config, path: Option<&Path>) -> Watch {
        let mut files = BTreeMap::new();
        if let Some(path) = path {
            files.insert(path.to_path_buf(), stamp(path));
            for (file, policy) in config.policies.values() {
                files.insert(file.clone(), stamp(file));
                for source in policy.sources.iter().map(Path::new) {
                    if source.is_absolute() {
                        files.insert(source.to_path_buf(), stamp(source));
                    }
                }
            }
        }
        Watch { files }
    }

    /// The files changed since the last look (each change reported once).
    pub fn changed(&mut self) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        for (path, seen) in &mut self.files {
            let now = stamp(path);
            if now != *seen {
                *seen = now;
                changed.push(path.clone());
            }
        }
        changed
    }
}

/// A group name (from /etc/group) or number, as a gid.
fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| format!("no group named {group:?} in /etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/bunker/serve.json"))
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let e = parse(r#"{"max_sandboxs": 3}"#).err().unwrap_or_default();
        assert!(e.starts_with("/etc/bunker/serve.json: "), "{e}");
        assert!(e.contains("max_sandboxs"), "{e}");
        let e = parse(r#"{"grants": [{"uid": 1, "gid": 2, "ceiling": "default"}]}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("grants[0]: exactly one of uid and gid"), "{e}");
        let e = parse(r#"{"grants": [{"uid": 1, "ceiling": "nope"}]}"#)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("grants[0].ceiling: no policy named \"nope\""),
            "{e}"
        );
        let e = parse(r#"{"max_sandboxes": 0}"#).err().unwrap_or_default();
        assert!(e.contains("max_sandboxes: must be at least 1"), "{e}");
    }

    #[test]
    fn a_grant_of_a_builtin_ceiling_loads() {
        let config = parse(r#"{"max_queue": 0, "grants": [{"gid": 100, "ceiling": "default"}]}"#);
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.max_queue, 0);
        assert_eq!(config.base_dir, Path::new("/etc/bunker"));
        let grants = config.grants.unwrap_or_default();
        assert_eq!(grants[0].grantee, Grantee::Gid(100));
    }

    #[test]
    fn a_pool_names_a_known_policy_and_a_size_within_the_slots() {
        let config = parse(r#"{"max_sandboxes": 4, "pools": {"default": 3}}"#).unwrap();
        assert_eq!(config.pools.get("default"), Some(&3));
        let e = parse(r#"{"pools": {"nope": 1}}"#).err().unwrap_or_default();
        assert!(e.contains("pools.nope: no policy named \"nope\""), "{e}");
        let e = parse(r#"{"max_sandboxes": 4, "pools": {"default": 5}}"#)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("pools.default: a pool holds 1 to max_sandboxes (4)"),
            "{e}"
        );
        let e = parse(r#"{"pools": {"default": 0}}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("not 0"), "{e}");
    }

    #[test]
    fn the_documented_example_parses_but_for_its_files() {
        let doc = include_str!("../../../docs/protocol.md");
        let block = doc
            .split("```json\n")
            .find(|b| b.starts_with("{\"max_sandboxes\""))
            .and_then(|b| b.split("```").next())
            .unwrap_or_default();
        let doc: Result<ConfigDoc, _> = serde_json::from_str(block);
        assert!(doc.is_ok(), "{doc:?}: {block}");
    }

    #[test]
    fn a_watch_sees_a_write_a_replacement_and_a_removal_once_each() {
        let dir = std::env::temp_dir().join(format!("bunker-watch-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("p.json");
        std::fs::write(&policy, r#"{"extends": ["default"]}"#).unwrap();
        let path = dir.join("serve.json");
        std::fs::write(&path, r#"{"policies": {"p": "p.json"}}"#).unwrap();
        let config = Config::load(&path).unwrap();
        let mut watch = Watch::new(&config, Some(&path));
        assert!(watch.changed().is_empty());
        std::fs::write(
            &policy,
            r#"{"extends": ["default"], "allow": {"read": ["/"]}}"#,
        )
        .unwrap();
        assert_eq!(watch.changed(), vec![policy.clone()]);
        assert!(watch.changed().is_empty());
        let new = dir.join("new.json");
        std::fs::write(&new, r#"{"extends": ["default"]}"#).unwrap();
        std::fs::rename(&new, &policy).unwrap();
        assert_eq!(watch.changed(), vec![policy.clone()]);
        std::fs::remove_file(&policy).unwrap();
        assert_eq!(watch.changed(), vec![policy]);
        // Without a config file there is nothing to watch.
        assert!(Watch::new(&config, None).changed().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_profile_loads_once_per_config_and_a_reload_loads_it_again() {
        let config = parse("{}").unwrap();
        let builtin = bunker_policy::builtin("default").unwrap();
        // Miss: loaded now, and kept.
        assert_eq!(config.named_policy("default"), Some(builtin.clone()));
        assert!(config.profiles.lock().contains_key("default"));
        // Hit: what the cache holds is what the name gives, without loading it again.
        let mut marked = builtin.clone();
        marked.limits.timeout = Some(Duration::from_millis(1234));
        config
            .profiles
            .lock()
            .insert("default".into(), marked.clone());
        assert_eq!(config.named_policy("default"), Some(marked));
        // Invalidation: a reload (SIGHUP) parses a new config, whose cache starts empty.
        let reloaded = parse("{}").unwrap();
        assert!(reloaded.profiles.lock().is_empty());
        assert_eq!(reloaded.named_policy("default"), Some(builtin));
        // An unknown name is no profile, and nothing is kept for it.
        assert_eq!(config.named_policy("nope"), None);
        assert!(!config.profiles.lock().contains_key("nope"));
    }
}
