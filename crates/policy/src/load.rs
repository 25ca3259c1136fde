//! Loading: parse a document, load its `extends` depth-first, validate, and merge.
//!
//! Merge rules (docs/policy.md states them for users): the documents named in `extends` are
//! loaded first, in order, each with its own `extends` before it; the document itself goes on
//! top. Lists (allow and deny alike) concatenate with duplicates removed, so a deny anywhere
//! survives; scalars (limits, http, kernel, js) are taken from the outermost document that sets
//! them; `set_env` maps merge with the outer value winning; `limits.best_effort` lists union, except
//! that a layer setting a limit drops an inherited best-effort mark for it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{raised_kind, ErrorKind, PolicyError, Problem};
use crate::net::NetRule;
use crate::path::{self, Access, PathPattern};
use crate::profiles;
use crate::types::*;
use crate::units::{format_number, quote, ByteSize, Span};

/// Where a policy comes from, and the command-line flags to put on top.
#[derive(Debug, Clone, Default)]
pub struct LoadSpec {
    /// The policy document.
    pub source: PolicySource,
    /// A document merged on top of the file (the CLI's flags: `--allow-read`, `--memory`, ...).
    /// Its errors name the file `command line`.
    pub overlay: PolicyDoc,
    /// The directory relative paths in `overlay` are resolved against (the caller's cwd).
    pub overlay_base: PathBuf,
}

/// The policy document a [`LoadSpec`] loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PolicySource {
    /// `{"extends": ["default"]}`.
    #[default]
    Default,
    /// A policy file; its relative paths resolve against its directory.
    File(PathBuf),
    /// A document given as text (`--policy -`, `--policy-json`): it has no directory of its own,
    /// so its relative paths and `extends` resolve against `base` (the caller's cwd).
    Text {
        text: String,
        /// What errors call it, e.g. `stdin`.
        name: String,
        base: PathBuf,
    },
}

/// Where an `allow` path of the effective policy was written: the first document, in merge
/// order, that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOrigin {
    pub access: Access,
    /// As in the effective policy (absolute, normalized).
    pub path: PathBuf,
    /// The document, named as in errors.
    pub file: String,
    /// `allow.write[0]`.
    pub json_path: String,
    /// Written by a built-in profile (which grants only what exists), not by the user.
    pub builtin: bool,
}

/// What loading reads from the host besides policy files: HOME for `~` paths and PATH for the
/// runtime profiles. [`HostEnv::from_process`] is what [`load`] uses; tests pass their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEnv {
    /// The caller's home directory (`None` or empty: `~` is an error).
    pub home: Option<PathBuf>,
    /// The caller's PATH, searched for `bun` and `python3`.
    pub path: Option<OsString>,
}

impl HostEnv {
    /// HOME and PATH of this process.
    pub fn from_process() -> HostEnv {
        HostEnv {
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            path: std::env::var_os("PATH"),
        }
    }
}

/// The name errors give to the overlay document.
pub const OVERLAY_ORIGIN: &str = "command line";

/// Loads `spec.file` (or the `default` profile), then merges `spec.overlay` on top.
pub fn load(spec: &LoadSpec) -> Result<Policy, PolicyError> {
    load_with(spec, &HostEnv::from_process())
}

/// [`load`] with an explicit host environment.
pub fn load_with(spec: &LoadSpec, env: &HostEnv) -> Result<Policy, PolicyError> {
    load_with_origins(spec, env).map(|(policy, _)| policy)
}

/// [`load_with`], also saying where each `allow` path was written (for checks that look at the
/// host, which loading itself does not).
pub fn load_with_origins(
    spec: &LoadSpec,
    env: &HostEnv,
) -> Result<(Policy, Vec<GrantOrigin>), PolicyError> {
    let mut loader = Loader::new(env);
    let mut layer = match &spec.source {
        PolicySource::File(file) => loader.load_file(file, &file.display().to_string())?,
        PolicySource::Default => loader.load_profile("default")?,
        PolicySource::Text { text, name, base } => loader.load_text(text, name, base)?,
    };
    if spec.overlay != PolicyDoc::default() {
        let overlay = loader.load_doc(&spec.overlay, OVERLAY_ORIGIN, &spec.overlay_base, false)?;
        layer.merge(overlay);
    }
    let origins = std::mem::take(&mut layer.origins);
    Ok((layer.finish(), origins))
}

/// Loads one policy file (errors name it as given).
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    load_file_with(path, &HostEnv::from_process())
}

/// [`load_file`] with an explicit host environment.
pub fn load_file_with(path: &Path, env: &HostEnv) -> Result<Policy, PolicyError> {
    Loader::new(env)
        .load_file(path, &path.display().to_string())
        .map(Layer::finish)
}

/// Loads a policy from text. Relative paths and `extends` resolve against `base_dir`; errors
/// name `origin_name`.
pub fn load_str(text: &str, base_dir: &Path, origin_name: &str) -> Result<Policy, PolicyError> {
    load_str_with(text, base_dir, origin_name, &HostEnv::from_process())
}

/// [`load_str`] with an explicit host environment.
pub fn load_str_with(
    text: &str,
    base_dir: &Path,
    origin_name: &str,
    env: &HostEnv,
) -> Result<Policy, PolicyError> {
    Loader::new(env)
        .load_text(text, origin_name, base_dir)
        .map(Layer::finish)
}

/// A built-in profile (`default`, `runtime:bun`, `runtime:python`) as an effective policy.
pub fn builtin(name: &str) -> Result<Policy, PolicyError> {
    builtin_with(name, &HostEnv::from_process())
}

/// [`builtin`] with an explicit host environment.
pub fn builtin_with(name: &str, env: &HostEnv) -> Result<Policy, PolicyError> {
    Loader::new(env).load_profile(name).map(Layer::finish)
}

/// The JSON Schema of the policy document (what `bunker schema` prints and docs/policy.schema.json
/// holds).
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(PolicyDoc);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}

/// Parses a document, with the JSON path of the first error.
pub fn parse_doc(text: &str, origin: &str) -> Result<PolicyDoc, PolicyError> {
    // A first pass catches syntax errors and lists where objects belong (serde would quietly
    // read `[]` as an empty struct); the second keeps the JSON path of data errors.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| serde_error(origin, String::new(), e))?;
    check_objects(&value, origin)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: PolicyDoc = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| serde_error(origin, e.path().to_string(), e.into_inner()))?;
    de.end()
        .map_err(|e| serde_error(origin, String::new(), e))?;
    Ok(doc)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn check_objects(value: &serde_json::Value, origin: &str) -> Result<(), PolicyError> {
    let Some(top) = value.as_object() else {
        return Err(PolicyError::new(
            ErrorKind::InvalidValue,
            origin,
            "",
            format!(
                "expected a policy object like {{\"allow\": {{...}}}}, found {}",
                json_kind(value)
            ),
        ));
    };
    for key in ["allow", "deny", "limits", "http", "kernel", "js", "set_env"] {
        if let Some(v) = top.get(key) {
            if !v.is_object() {
                return Err(PolicyError::new(
                    ErrorKind::InvalidValue,
                    origin,
                    key,
                    format!("expected an object, found {}", json_kind(v)),
                ));
            }
        }
    }
    Ok(())
}

fn serde_error(origin: &str, path: String, err: serde_json::Error) -> PolicyError {
    use serde_json::error::Category;
    let full = err.to_string();
    let location = format!(" at line {} column {}", err.line(), err.column());
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            let message = if err.line() == 0 {
                full
            } else {
                format!("invalid JSON: {full}")
            };
            PolicyError::new(ErrorKind::Syntax, origin, "", message)
        }
        Category::Data => {
            let message = full.strip_suffix(&location).unwrap_or(&full);
            // Ours carry their kind; of serde's own, only its unknown-field error has one
            // (`deny_unknown_fields`), told by its fixed wording.
            let (kind, message) =
                match (raised_kind(message), message.strip_prefix("unknown field")) {
                    (Some(kind), _) => (kind, message.to_string()),
                    (None, Some(rest)) => (ErrorKind::UnknownKey, format!("unknown key{rest}")),
                    (None, None) => (ErrorKind::InvalidValue, message.to_string()),
                };
            let path = if path == "." { String::new() } else { path };
            PolicyError::new(kind, origin, path, message)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layers: one loaded document, converted but with scalars still optional so that merging can
// tell "not set" from "set to the default".
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Layer {
    allow: Grants,
    deny: Denials,
    memory: Option<u64>,
    pids: Option<u64>,
    cpu: Option<f64>,
    timeout: Option<Duration>,
    cpu_time: Option<Duration>,
    output: Option<u64>,
    file_size: Option<u64>,
    open_files: Option<u64>,
    stack: Option<u64>,
    tmp_size: Option<u64>,
    best_effort: Vec<LimitName>,
    kill_on_output_overflow: Option<bool>,
    http: HttpLayer,
    namespaces: Option<Vec<Namespace>>,
    seccomp: Option<SeccompProfile>,
    landlock: Option<Enforcement>,
    audit: Option<AuditMode>,
    hostname: Option<String>,
    tty: Option<bool>,
    eval: Option<bool>,
    max_stack_depth: Option<u64>,
    max_string_length: Option<u64>,
    set_env: BTreeMap<String, String>,
    sources: Vec<String>,
    origins: Vec<GrantOrigin>,
}

#[derive(Debug, Clone, Default)]
struct HttpLayer {
    max_requests: Option<u64>,
    request_timeout: Option<Duration>,
    max_request_bytes: Option<u64>,
    max_response_bytes: Option<u64>,
    max_total_bytes: Option<u64>,
    block_private_ips: Option<bool>,
}

fn append_unique<T: PartialEq>(base: &mut Vec<T>, more: Vec<T>) {
    for item in more {
        if !base.contains(&item) {
            base.push(item);
        }
    }
}

/// Net rules are duplicates when they match the same thing, whatever the spelling.
fn append_unique_net(base: &mut Vec<NetRule>, more: Vec<NetRule>) {
    for rule in more {
        if !base
            .iter()
            .any(|r| r.host == rule.host && r.port == rule.port)
        {
            base.push(rule);
        }
    }
}

impl Layer {
    /// Puts `outer` on top of `self`.
    fn merge(&mut self, outer: Layer) {
        append_unique_net(&mut self.allow.net, outer.allow.net);
        append_unique(&mut self.allow.read, outer.allow.read);
        append_unique(&mut self.allow.write, outer.allow.write);
        append_unique(&mut self.allow.exec, outer.allow.exec);
        append_unique(&mut self.allow.env, outer.allow.env);
        append_unique_net(&mut self.deny.net, outer.deny.net);
        append_unique(&mut self.deny.read, outer.deny.read);
        append_unique(&mut self.deny.write, outer.deny.write);
        append_unique(&mut self.deny.exec, outer.deny.exec);
        append_unique(&mut self.deny.env, outer.deny.env);
        append_unique(&mut self.deny.best_effort, outer.deny.best_effort);
        macro_rules! outer_wins {
            ($($field:ident).+) => { $( if outer.$field.is_some() { self.$field = outer.$field; } )+ };
        }
        outer_wins!(memory);
        outer_wins!(pids);
        outer_wins!(cpu);
        outer_wins!(timeout);
        outer_wins!(cpu_time);
        outer_wins!(output);
        outer_wins!(file_size);
        outer_wins!(open_files);
        outer_wins!(stack);
        outer_wins!(tmp_size);
        outer_wins!(kill_on_output_overflow);
        outer_wins!(namespaces);
        outer_wins!(seccomp);
        outer_wins!(landlock);
        outer_wins!(audit);
        outer_wins!(hostname);
        outer_wins!(tty);
        outer_wins!(eval);
        outer_wins!(max_stack_depth);
        outer_wins!(max_string_length);
        let h = outer.http;
        macro_rules! http_wins {
            ($($field:ident),+) => { $( if h.$field.is_some() { self.http.$field = h.$field; } )+ };
        }
        http_wins!(
            max_requests,
            request_timeout,
            max_request_bytes,
            max_response_bytes,
            max_total_bytes,
            block_private_ips
        );
        // A best-effort mark belongs to the limit value of the layer that wrote it: a layer that
        // sets the limit itself asks for it to hold, unless it marks it best-effort again.
        let set_by_outer = [
            (LimitName::Memory, outer.memory.is_some()),
            (LimitName::Pids, outer.pids.is_some()),
            (LimitName::Cpu, outer.cpu.is_some()),
            (LimitName::CpuTime, outer.cpu_time.is_some()),
        ];
        self.best_effort
            .retain(|name| !set_by_outer.iter().any(|(n, set)| n == name && *set));
        append_unique(&mut self.best_effort, outer.best_effort);
        self.set_env.extend(outer.set_env);
        self.sources.extend(outer.sources);
        for origin in outer.origins {
            if !self
                .origins
                .iter()
                .any(|o| o.access == origin.access && o.path == origin.path)
            {
                self.origins.push(origin);
            }
        }
    }

    /// Applies defaults.
    fn finish(self) -> Policy {
        let mut best_effort = self.best_effort;
        best_effort.sort();
        let http_defaults = HttpLimits::default();
        let kernel_defaults = KernelOptions::default();
        let js_defaults = JsOptions::default();
        Policy {
            allow: self.allow,
            deny: self.deny,
            limits: Limits {
                memory: self.memory,
                pids: self.pids,
                cpu: self.cpu,
                timeout: self.timeout,
                cpu_time: self.cpu_time,
                output: self.output.unwrap_or(DEFAULT_OUTPUT_LIMIT),
                file_size: self.file_size,
                open_files: self.open_files,
                stack: self.stack,
                tmp_size: self.tmp_size.unwrap_or(DEFAULT_TMP_SIZE),
                best_effort,
                kill_on_output_overflow: self.kill_on_output_overflow.unwrap_or(false),
            },
            http: HttpLimits {
                max_requests: self.http.max_requests,
                request_timeout: self.http.request_timeout,
                max_request_bytes: self.http.max_request_bytes,
                max_response_bytes: self.http.max_response_bytes,
                max_total_bytes: self.http.max_total_bytes,
                block_private_ips: self
                    .http
                    .block_private_ips
                    .unwrap_or(http_defaults.block_private_ips),
            },
            kernel: KernelOptions {
                namespaces: self.namespaces.unwrap_or(kernel_defaults.namespaces),
                seccomp: self.seccomp.unwrap_or(kernel_defaults.seccomp),
                landlock: self.landlock.unwrap_or(kernel_defaults.landlock),
                audit: self.audit.unwrap_or(kernel_defaults.audit),
                hostname: self.hostname.unwrap_or(kernel_defaults.hostname),
                tty: self.tty.unwrap_or(kernel_defaults.tty),
            },
            js: JsOptions {
                eval: self.eval.unwrap_or(js_defaults.eval),
                max_stack_depth: self.max_stack_depth.or(js_defaults.max_stack_depth),
                max_string_length: self.max_string_length.or(js_defaults.max_string_length),
            },
            set_env: self.set_env,
            sources: self.sources,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loader.
// ---------------------------------------------------------------------------------------------

struct Frame {
    /// Identity for cycle detection: `file:<canonical path>` or `profile:<name>`.
    key: String,
    /// Name for messages.
    name: String,
}

struct Loader<'a> {
    env: &'a HostEnv,
    /// The chain of documents being loaded, outermost first.
    stack: Vec<Frame>,
}

/// Whether an `extends` entry names a file (otherwise a built-in profile).
fn is_file_reference(entry: &str) -> bool {
    entry.contains('/') || entry.ends_with(".json") || entry.starts_with('~') || entry == "."
}

impl<'a> Loader<'a> {
    fn new(env: &'a HostEnv) -> Self {
        Loader {
            env,
            stack: Vec::new(),
        }
    }

    fn home(&self) -> Option<&Path> {
        self.env
            .home
            .as_deref()
            .filter(|h| !h.as_os_str().is_empty())
    }

    fn file_key(path: &Path) -> String {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path::normalize(path));
        format!("file:{}", canonical.display())
    }

    /// The cycle error, when `key` is already being loaded.
    fn check_cycle(
        &self,
        key: &str,
        name: &str,
        from: &str,
        json_path: &str,
    ) -> Result<(), PolicyError> {
        if let Some(pos) = self.stack.iter().position(|f| f.key == key) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(|f| f.name.as_str()).collect();
            chain.push(name);
            return Err(PolicyError::new(
                ErrorKind::ExtendsCycle,
                from,
                json_path,
                format!("extends cycle: {}", chain.join(" → ")),
            ));
        }
        Ok(())
    }

    fn load_file(&mut self, file: &Path, name: &str) -> Result<Layer, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            PolicyError::new(
                ErrorKind::Io,
                name,
                "",
                format!("cannot read the policy file: {e}"),
            )
        })?;
        self.load_file_text(file, name, &text)
    }

    fn load_file_text(
        &mut self,
        file: &Path,
        name: &str,
        text: &str,
    ) -> Result<Layer, PolicyError> {
        let doc = parse_doc(text, name)?;
        let absolute = if file.is_absolute() {
            file.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(file))
                .unwrap_or_else(|_| file.to_path_buf())
        };
        let base = absolute
            .parent()
            .map(path::normalize)
            .unwrap_or_else(|| PathBuf::from("/"));
        self.stack.push(Frame {
            key: Self::file_key(&absolute),
            name: name.to_string(),
        });
        let layer = self.load_doc(&doc, name, &base, false);
        self.stack.pop();
        layer
    }

    /// A document given as text, with no directory of its own: relative paths against `base`.
    fn load_text(&mut self, text: &str, name: &str, base: &Path) -> Result<Layer, PolicyError> {
        let doc = parse_doc(text, name)?;
        self.stack.push(Frame {
            key: format!("text:{name}"),
            name: name.to_string(),
        });
        let layer = self.load_doc(&doc, name, base, false);
        self.stack.pop();
        layer
    }

    fn load_profile(&mut self, name: &str) -> Result<Layer, PolicyError> {
        let doc = profiles::profile_doc(name, self.env)?.ok_or_else(|| {
            PolicyError::new(
                ErrorKind::UnknownProfile,
                name,
                "",
                unknown_profile_message(name),
            )
        })?;
        self.stack.push(Frame {
            key: format!("profile:{name}"),
            name: name.to_string(),
        });
        let layer = self.load_doc(&doc, name, Path::new("/"), true);
        self.stack.pop();
        layer
    }

    /// Loads `doc` (named `origin`, relative paths against `base`; `builtin` for a profile) with
    /// its `extends` below it.
    fn load_doc(
        &mut self,
        doc: &PolicyDoc,
        origin: &str,
        base: &Path,
        builtin: bool,
    ) -> Result<Layer, PolicyError> {
        let mut layer = Layer::default();
        for (i, entry) in doc.extends.iter().enumerate() {
            let json_path = format!("extends[{i}]");
            if entry.is_empty() {
                return Err(empty(origin, &json_path));
            }
            let inner = if is_file_reference(entry) {
                let file = path::resolve(entry, base, self.home())
                    .map_err(|m| path_error(origin, &json_path, m))?;
                let name = file.display().to_string();
                self.check_cycle(&Self::file_key(&file), &name, origin, &json_path)?;
                // A file that cannot be read is named with the key that referenced it.
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    PolicyError::new(
                        ErrorKind::Io,
                        origin,
                        &json_path,
                        format!("cannot read the extended policy file {}: {e}", quote(&name)),
                    )
                })?;
                self.load_file_text(&file, &name, &text)?
            } else {
                if !profiles::NAMES.contains(&entry.as_str()) {
                    return Err(PolicyError::new(
                        ErrorKind::UnknownProfile,
                        origin,
                        json_path,
                        unknown_profile_message(entry),
                    ));
                }
                self.check_cycle(&format!("profile:{entry}"), entry, origin, &json_path)?;
                self.load_profile(entry)?
            };
            layer.merge(inner);
        }
        let own = Lowering {
            origin,
            base,
            home: self.home(),
            builtin,
        }
        .lower(doc)?;
        layer.merge(own);
        Ok(layer)
    }
}

fn unknown_profile_message(name: &str) -> String {
    format!(
        "unknown profile {}: the built-in profiles are {}; a policy file needs a \"/\" or a \".json\" ending, like \"./{name}.json\"",
        quote(name),
        profiles::NAMES.join(", ")
    )
}

fn empty(origin: &str, json_path: &str) -> PolicyError {
    PolicyError::new(
        ErrorKind::EmptyString,
        origin,
        json_path,
        "expected a non-empty string, found \"\"",
    )
}

fn path_error(origin: &str, json_path: &str, problem: Problem) -> PolicyError {
    PolicyError::new(problem.kind, origin, json_path, problem.message)
}

fn greater_than_zero(origin: &str, json_path: &str, found: String) -> PolicyError {
    PolicyError::new(
        ErrorKind::InvalidLimit,
        origin,
        json_path,
        format!("must be greater than zero, found {found}"),
    )
}

/// Converts and validates one document (not its `extends`).
struct Lowering<'a> {
    origin: &'a str,
    base: &'a Path,
    home: Option<&'a Path>,
    builtin: bool,
}

impl Lowering<'_> {
    fn err(&self, kind: ErrorKind, json_path: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::new(kind, self.origin, json_path, message)
    }

    fn allow_paths(&self, list: &[String], name: &str) -> Result<Vec<PathBuf>, PolicyError> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let json_path = format!("allow.{name}[{i}]");
            if text.is_empty() {
                return Err(empty(self.origin, &json_path));
            }
            let p = path::parse_allow(text, name, self.base, self.home)
                .map_err(|m| path_error(self.origin, &json_path, m))?;
            append_unique(&mut out, vec![p]);
        }
        Ok(out)
    }

    fn deny_paths(&self, list: &[String], name: &str) -> Result<Vec<PathPattern>, PolicyError> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let json_path = format!("deny.{name}[{i}]");
            if text.is_empty() {
                return Err(empty(self.origin, &json_path));
            }
            let p = path::parse_deny(text, self.base, self.home)
                .map_err(|m| path_error(self.origin, &json_path, m))?;
            append_unique(&mut out, vec![p]);
        }
        Ok(out)
    }

    /// `deny.best_effort`: each entry must be one of this document's deny path entries (so a
    /// typo cannot silently mark nothing).
    fn best_effort_denials(
        &self,
        doc: &PolicyDoc,
        deny: &Denials,
    ) -> Result<Vec<PathPattern>, PolicyError> {
        let mut out = Vec::new();
        for (i, text) in doc.deny.best_effort.iter().enumerate() {
            let json_path = format!("deny.best_effort[{i}]");
            if text.is_empty() {
                return Err(empty(self.origin, &json_path));
            }
            let p = path::parse_deny(text, self.base, self.home)
                .map_err(|m| path_error(self.origin, &json_path, m))?;
            if !deny
                .read
                .iter()
                .chain(&deny.write)
                .chain(&deny.exec)
                .any(|d| *d == p)
            {
                return Err(self.err(
                    ErrorKind::InvalidValue,
                    &json_path,
                    format!(
                        "{} is not an entry of deny.read, deny.write or deny.exec in this document; \
                         write it exactly as it is written there",
                        quote(text)
                    ),
                ));
            }
            append_unique(&mut out, vec![p]);
        }
        Ok(out)
    }

    fn net(&self, list: &[String], side: &str) -> Result<Vec<NetRule>, PolicyError> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let json_path = format!("{side}.net[{i}]");
            if text.is_empty() {
                return Err(empty(self.origin, &json_path));
            }
            let rule = NetRule::parse(text)
                .map_err(|m| self.err(ErrorKind::InvalidNetRule, &json_path, m))?;
            append_unique_net(&mut out, vec![rule]);
        }
        Ok(out)
    }

    fn env_name(&self, name: &str, json_path: &str) -> Result<(), PolicyError> {
        if name.is_empty() {
            return Err(empty(self.origin, json_path));
        }
        if name.contains(['=', '\0']) {
            return Err(self.err(
                ErrorKind::InvalidEnvName,
                json_path,
                format!(
                    "expected an environment variable name (no \"=\" or NUL), found {}",
                    quote(name)
                ),
            ));
        }
        Ok(())
    }

    fn env(&self, list: &[String], side: &str) -> Result<Vec<String>, PolicyError> {
        let mut out = Vec::new();
        for (i, name) in list.iter().enumerate() {
            self.env_name(name, &format!("{side}.env[{i}]"))?;
            append_unique(&mut out, vec![name.clone()]);
        }
        Ok(out)
    }

    fn size(&self, value: &Option<ByteSize>, json_path: &str) -> Result<Option<u64>, PolicyError> {
        let Some(value) = value else { return Ok(None) };
        let bytes = value
            .bytes()
            .map_err(|p| self.err(p.kind, json_path, p.message))?;
        if bytes == 0 {
            let found = match value {
                ByteSize::Bytes(n) => n.to_string(),
                ByteSize::Text(t) => quote(t),
            };
            return Err(greater_than_zero(self.origin, json_path, found));
        }
        Ok(Some(bytes))
    }

    fn span(&self, value: &Option<Span>, json_path: &str) -> Result<Option<Duration>, PolicyError> {
        let Some(value) = value else { return Ok(None) };
        if let Span::Seconds(secs) = value {
            if *secs <= 0.0 {
                return Err(greater_than_zero(
                    self.origin,
                    json_path,
                    format_number(*secs),
                ));
            }
        }
        let d = value
            .duration()
            .map_err(|p| self.err(p.kind, json_path, p.message))?;
        if d.is_zero() {
            let found = match value {
                Span::Seconds(s) => format_number(*s),
                Span::Text(t) => quote(t),
            };
            return Err(greater_than_zero(self.origin, json_path, found));
        }
        Ok(Some(d))
    }

    fn count(&self, value: Option<u64>, json_path: &str) -> Result<Option<u64>, PolicyError> {
        match value {
            Some(0) => Err(greater_than_zero(self.origin, json_path, "0".to_string())),
            other => Ok(other),
        }
    }

    fn lower(&self, doc: &PolicyDoc) -> Result<Layer, PolicyError> {
        if doc.schema.as_deref() == Some("") {
            return Err(empty(self.origin, "$schema"));
        }
        let allow = Grants {
            net: self.net(&doc.allow.net, "allow")?,
            read: self.allow_paths(&doc.allow.read, "read")?,
            write: self.allow_paths(&doc.allow.write, "write")?,
            exec: self.allow_paths(&doc.allow.exec, "exec")?,
            env: self.env(&doc.allow.env, "allow")?,
        };
        let deny = Denials {
            net: self.net(&doc.deny.net, "deny")?,
            read: self.deny_paths(&doc.deny.read, "read")?,
            write: self.deny_paths(&doc.deny.write, "write")?,
            exec: self.deny_paths(&doc.deny.exec, "exec")?,
            env: self.env(&doc.deny.env, "deny")?,
            best_effort: Vec::new(),
        };
        let deny = Denials {
            best_effort: self.best_effort_denials(doc, &deny)?,
            ..deny
        };
        self.contradictions(doc, &allow, &deny)?;
        let origins = self.origins(doc);

        let l = &doc.limits;
        if let Some(cpu) = l.cpu {
            if cpu.is_nan() || cpu <= 0.0 {
                return Err(greater_than_zero(
                    self.origin,
                    "limits.cpu",
                    format_number(cpu),
                ));
            }
        }
        let h = &doc.http;
        let http = HttpLayer {
            max_requests: self.count(h.max_requests, "http.max_requests")?,
            request_timeout: self.span(&h.request_timeout, "http.request_timeout")?,
            max_request_bytes: self.size(&h.max_request_bytes, "http.max_request_bytes")?,
            max_response_bytes: self.size(&h.max_response_bytes, "http.max_response_bytes")?,
            max_total_bytes: self.size(&h.max_total_bytes, "http.max_total_bytes")?,
            block_private_ips: h.block_private_ips,
        };
        let k = &doc.kernel;
        if let Some(hostname) = &k.hostname {
            self.hostname(hostname)?;
        }
        self.refuse_unenforced(doc)?;
        let namespaces = k.namespaces.as_ref().map(|list| {
            let mut list = list.clone();
            list.sort();
            list.dedup();
            list
        });
        for (key, value) in &doc.set_env {
            let json_path = format!("set_env.{key}");
            self.env_name(key, &json_path)?;
            if value.is_empty() {
                return Err(empty(self.origin, &json_path));
            }
            if value.contains('\0') {
                return Err(self.err(
                    ErrorKind::InvalidValue,
                    &json_path,
                    "a value cannot contain a NUL byte",
                ));
            }
        }
        let mut best_effort = Vec::new();
        append_unique(&mut best_effort, l.best_effort.clone());
        Ok(Layer {
            allow,
            deny,
            memory: self.size(&l.memory, "limits.memory")?,
            pids: self.count(l.pids, "limits.pids")?,
            cpu: l.cpu,
            timeout: self.span(&l.timeout, "limits.timeout")?,
            cpu_time: self.span(&l.cpu_time, "limits.cpu_time")?,
            output: self.size(&l.output, "limits.output")?,
            file_size: self.size(&l.file_size, "limits.file_size")?,
            open_files: self.count(l.open_files, "limits.open_files")?,
            stack: self.size(&l.stack, "limits.stack")?,
            tmp_size: self.size(&l.tmp_size, "limits.tmp_size")?,
            best_effort,
            kill_on_output_overflow: l.kill_on_output_overflow,
            http,
            namespaces,
            seccomp: k.seccomp,
            landlock: k.landlock,
            audit: k.audit,
            hostname: k.hostname.clone(),
            tty: k.tty,
            eval: doc.js.eval,
            max_stack_depth: self.count(doc.js.max_stack_depth, "js.max_stack_depth")?,
            max_string_length: self.count(doc.js.max_string_length, "js.max_string_length")?,
            set_env: doc.set_env.clone(),
            sources: vec![self.origin.to_string()],
            origins,
        })
    }

    /// Where each `allow` path of `doc` is written (the lists were validated already).
    fn origins(&self, doc: &PolicyDoc) -> Vec<GrantOrigin> {
        let mut out = Vec::new();
        for (access, list) in [
            (Access::Read, &doc.allow.read),
            (Access::Write, &doc.allow.write),
            (Access::Exec, &doc.allow.exec),
        ] {
            for (i, text) in list.iter().enumerate() {
                let Ok(path) = path::parse_allow(text, access.list(), self.base, self.home) else {
                    continue;
                };
                if !out
                    .iter()
                    .any(|o: &GrantOrigin| o.access == access && o.path == path)
                {
                    out.push(GrantOrigin {
                        access,
                        path,
                        file: self.origin.to_string(),
                        json_path: format!("allow.{}[{i}]", access.list()),
                        builtin: self.builtin,
                    });
                }
            }
        }
        out
    }

    /// Settings no layer enforces are refused here, with this document's name and the key.
    fn refuse_unenforced(&self, doc: &PolicyDoc) -> Result<(), PolicyError> {
        let k = &doc.kernel;
        let kernel = KernelOptions {
            namespaces: k
                .namespaces
                .clone()
                .unwrap_or_else(|| Namespace::ALL.to_vec()),
            audit: k.audit.unwrap_or(AuditMode::Off),
            ..KernelOptions::default()
        };
        let js = JsOptions {
            eval: doc.js.eval.unwrap_or(JsOptions::default().eval),
            max_stack_depth: doc.js.max_stack_depth,
            max_string_length: doc.js.max_string_length,
        };
        match crate::unenforced::refusal(&kernel, &js) {
            Some(r) => Err(self.err(ErrorKind::NotEnforced, r.json_path, r.message)),
            None => Ok(()),
        }
    }

    fn hostname(&self, hostname: &str) -> Result<(), PolicyError> {
        if hostname.is_empty() {
            return Err(empty(self.origin, "kernel.hostname"));
        }
        let valid = hostname.len() <= 64
            && hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(self.err(
                ErrorKind::InvalidValue,
                "kernel.hostname",
                format!(
                    "expected a host name of up to 64 letters, digits, \"-\" and \".\", found {}",
                    quote(hostname)
                ),
            ));
        }
        Ok(())
    }

    /// The same thing allowed and denied in one document: the allow can never take effect,
    /// which is almost certainly a mistake. (Across documents it is how a policy narrows what
    /// it extends, and is fine.)
    fn contradictions(
        &self,
        doc: &PolicyDoc,
        allow: &Grants,
        deny: &Denials,
    ) -> Result<(), PolicyError> {
        let lists: [(&str, &[PathBuf], &[PathPattern]); 3] = [
            ("read", &allow.read, &deny.read),
            ("write", &allow.write, &deny.write),
            ("exec", &allow.exec, &deny.exec),
        ];
        for (name, allowed, denied) in lists {
            for denial in denied {
                let Some(d) = denial.as_path() else { continue };
                if let Some(a) = allowed.iter().position(|p| p == d) {
                    let j = written_index(
                        (&doc.deny.read, &doc.deny.write, &doc.deny.exec),
                        name,
                        |text| {
                            path::parse_deny(text, self.base, self.home).ok().as_ref()
                                == Some(denial)
                        },
                    )
                    .unwrap_or(0);
                    let ai = written_index(
                        (&doc.allow.read, &doc.allow.write, &doc.allow.exec),
                        name,
                        |text| {
                            path::parse_allow(text, name, self.base, self.home)
                                .ok()
                                .as_deref()
                                == Some(d)
                        },
                    );
                    return Err(self.err(
                        ErrorKind::Contradiction,
                        &format!("deny.{name}[{j}]"),
                        format!(
                            "{} is both allowed (allow.{name}[{}]) and denied; deny always wins, so remove one of them",
                            quote(&d.display().to_string()),
                            ai.unwrap_or(a),
                            ),
                    ));
                }
            }
        }
        for rule in &deny.net {
            if let Some(a) = allow
                .net
                .iter()
                .position(|r| r.host == rule.host && r.port == rule.port)
            {
                let j = doc
                    .deny
                    .net
                    .iter()
                    .position(|t| t == &rule.text)
                    .unwrap_or(0);
                let ai = doc
                    .allow
                    .net
                    .iter()
                    .position(|t| t == &allow.net[a].text)
                    .unwrap_or(a);
                return Err(self.err(
                    ErrorKind::Contradiction,
                    &format!("deny.net[{j}]"),
                    format!(
                        "{} is both allowed (allow.net[{ai}]) and denied; deny always wins, so remove one of them",
                        quote(&rule.to_string())
                    ),
                ));
            }
        }
        for (j, name) in deny.env.iter().enumerate() {
            if let Some(ai) = allow.env.iter().position(|n| n == name) {
                let j = doc.deny.env.iter().position(|t| t == name).unwrap_or(j);
                let ai = doc.allow.env.iter().position(|t| t == name).unwrap_or(ai);
                return Err(self.err(
                    ErrorKind::Contradiction,
                    &format!("deny.env[{j}]"),
                    format!(
                        "{} is both allowed (allow.env[{ai}]) and denied; deny always wins, so remove one of them",
                        quote(name)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The index, as written, of the first entry of `rules.<list>` that satisfies `pred` (the
/// converted lists have duplicates removed, so their indexes can differ).
fn written_index(
    (read, write, exec): (&[String], &[String], &[String]),
    list: &str,
    pred: impl Fn(&str) -> bool,
) -> Option<usize> {
    let entries = match list {
        "read" => read,
        "write" => write,
        _ => exec,
    };
    entries.iter().position(|t| pred(t))
}
