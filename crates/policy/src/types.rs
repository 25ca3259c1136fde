//! The policy document (what a user writes) and the effective policy (what the sandbox enforces).
//!
//! `PolicyDoc` mirrors the JSON exactly (unknown keys are errors) and is what the JSON Schema is
//! generated from. `Policy` is the result of loading: `extends` merged, paths made absolute, host
//! patterns parsed, units converted. Every other crate reads only `Policy`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::net::NetRule;
use crate::path::PathPattern;
use crate::units::{ByteSize, Span};

/// A policy file as written. Absent means denied; deny beats allow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Optional `$schema` reference for editors; ignored by bunker.
    #[serde(default, rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Policy files (relative to this file) or built-in profiles (`default`, `runtime:bun`,
    /// `runtime:python`) merged before this document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    /// What the sandboxed program may do.
    #[serde(default)]
    pub allow: RuleSetDoc,
    /// What it may never do, even where `allow` grants it.
    #[serde(default)]
    pub deny: DenyDoc,
    /// Hard resource limits, in human units ("50MB", "1.5s").
    #[serde(default)]
    pub limits: LimitsDoc,
    /// Limits on HTTP traffic through the egress proxy.
    #[serde(default)]
    pub http: HttpDoc,
    /// Kernel isolation options.
    #[serde(default)]
    pub kernel: KernelDoc,
    /// Options for the JavaScript runtime layer (Bun, QuickJS).
    #[serde(default)]
    pub js: JsDoc,
    /// Environment variables set inside the sandbox (PATH, HOME, TMPDIR, LANG, ...). Values here
    /// are literal; `allow.env` passes the caller's values through instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_env: BTreeMap<String, String>,
}

/// One list per kind of access.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSetDoc {
    /// Hosts (`example.com`, `*.example.com`, with optional `:port`), IP literals and CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<String>,
    /// Paths that may be read: absolute, `~/...`, or relative to the policy file. Deny lists may
    /// use globs (`**/*.key`, `.env`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Paths that may be written (and read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Paths whose files may be executed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// Environment variable names passed through from the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

/// The deny lists: `allow`'s lists, and which path rules may be enforced in part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyDoc {
    /// Hosts (`example.com`, `*.example.com`, with optional `:port`), IP literals and CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<String>,
    /// Paths or globs (`**/*.key`, `.env`) hidden from every kind of access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Paths or globs never written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Paths or globs never executed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// Environment variable names never passed through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Entries of this document's `read`, `write` or `exec` lists, written the same way, that
    /// bunker may enforce only in part (a glob whose walk could not finish, a write/exec rule the
    /// program could dodge by creating the path): the run goes on with a note instead of being
    /// refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub best_effort: Vec<String>,
}

/// Resource limits as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsDoc {
    /// Hard memory limit (cgroup), e.g. "64MB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Maximum number of live processes and threads (cgroup).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::units::deserialize_opt_count"
    )]
    pub pids: Option<u64>,
    /// CPU share in cores, e.g. 0.5 (cgroup quota).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::units::deserialize_opt_cores"
    )]
    pub cpu: Option<f64>,
    /// Wall-clock timeout, e.g. "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    /// Total CPU time, e.g. "2s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<Span>,
    /// Bytes of stdout and stderr returned to the caller, e.g. "10KB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ByteSize>,
    /// Largest file the program may write (RLIMIT_FSIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<ByteSize>,
    /// Maximum open file descriptors (RLIMIT_NOFILE).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::units::deserialize_opt_count"
    )]
    pub open_files: Option<u64>,
    /// Stack size (RLIMIT_STACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<ByteSize>,
    /// Size of the private /tmp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<ByteSize>,
    /// Limits that may be skipped, with a warning, when the host cannot enforce them
    /// (e.g. `["memory", "pids"]` rootless without cgroup delegation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub best_effort: Vec<LimitName>,
    /// Kill the sandbox when its output exceeds `output` (default: keep running, discard the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_on_output_overflow: Option<bool>,
}

/// Names of limits that can be marked best-effort.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LimitName {
    Memory,
    Pids,
    Cpu,
    CpuTime,
}

/// HTTP limits as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpDoc {
    /// Requests (including CONNECT tunnels) allowed per run.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::units::deserialize_opt_count"
    )]
    pub max_requests: Option<u64>,
    /// Time to connect and receive the first response byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Span>,
    /// Largest request (headers and body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<ByteSize>,
    /// Largest response; the connection is cut when exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<ByteSize>,
    /// Total bytes in both directions per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<ByteSize>,
    /// Refuse private, loopback, link-local and similar addresses unless allowed by IP (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_private_ips: Option<bool>,
}

/// Kernel options as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelDoc {
    /// Namespaces to create (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<Namespace>>,
    /// seccomp profile (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompProfile>,
    /// Whether landlock must be enforced (default: `required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<Enforcement>,
    /// Syscall audit mode (default: `off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditMode>,
    /// Hostname inside the sandbox (default: `bunker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Give the program a pseudo-terminal (default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
}

/// Linux namespaces bunker can create.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    User,
    Pid,
    Mount,
    Net,
    Ipc,
    Uts,
    Cgroup,
}

impl Namespace {
    pub const ALL: [Namespace; 7] = [
        Namespace::User,
        Namespace::Pid,
        Namespace::Mount,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Cgroup,
    ];
}

/// seccomp profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompProfile {
    /// bunker's allowlist.
    Default,
    /// No seccomp filter (not recommended).
    Off,
}

/// How strictly a layer must be enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// Refuse to run when the kernel cannot enforce it.
    Required,
    /// Enforce what the kernel offers and report the rest.
    BestEffort,
    /// Do not use it.
    Off,
}

/// Syscall audit modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuditMode {
    Off,
    SeccompUnotify,
    Ebpf,
}

/// JavaScript runtime options as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsDoc {
    /// Whether `eval()` and `new Function()` are allowed (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<bool>,
    /// Maximum call stack depth.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::units::deserialize_opt_count"
    )]
    pub max_stack_depth: Option<u64>,
    /// Maximum string length in characters.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::units::deserialize_opt_count"
    )]
    pub max_string_length: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The effective policy.
// ---------------------------------------------------------------------------------------------

/// A loaded policy: `extends` merged, every path absolute, every pattern parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub allow: Grants,
    pub deny: Denials,
    pub limits: Limits,
    pub http: HttpLimits,
    pub kernel: KernelOptions,
    pub js: JsOptions,
    pub set_env: BTreeMap<String, String>,
    /// The files and profiles this policy was built from, outermost last.
    pub sources: Vec<String>,
}

impl Default for Policy {
    /// Nothing allowed, every option at its default (what an empty document `{}` loads to).
    fn default() -> Self {
        Policy {
            allow: Grants::default(),
            deny: Denials::default(),
            limits: Limits::default(),
            http: HttpLimits::default(),
            kernel: KernelOptions::default(),
            js: JsOptions::default(),
            set_env: BTreeMap::new(),
            sources: Vec::new(),
        }
    }
}

/// What is allowed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grants {
    pub net: Vec<NetRule>,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub exec: Vec<PathBuf>,
    pub env: Vec<String>,
}

/// What is denied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Denials {
    pub net: Vec<NetRule>,
    pub read: Vec<PathPattern>,
    pub write: Vec<PathPattern>,
    pub exec: Vec<PathPattern>,
    pub env: Vec<String>,
    /// Entries of the path lists above that may be enforced in part (`deny.best_effort`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub best_effort: Vec<PathPattern>,
}

impl Denials {
    /// Whether `pattern` is marked best-effort.
    pub fn is_best_effort(&self, pattern: &PathPattern) -> bool {
        self.best_effort.contains(pattern)
    }
}

/// Resource limits, converted. `None` means no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu: Option<f64>,
    #[serde(
        serialize_with = "crate::units::serialize_opt_duration",
        deserialize_with = "crate::units::deserialize_opt_duration"
    )]
    pub timeout: Option<Duration>,
    #[serde(
        serialize_with = "crate::units::serialize_opt_duration",
        deserialize_with = "crate::units::deserialize_opt_duration"
    )]
    pub cpu_time: Option<Duration>,
    /// Bytes of stdout+stderr returned; defaults to 1 MiB.
    pub output: u64,
    pub file_size: Option<u64>,
    pub open_files: Option<u64>,
    pub stack: Option<u64>,
    /// Size of the private /tmp; defaults to 64 MiB.
    pub tmp_size: u64,
    pub best_effort: Vec<LimitName>,
    pub kill_on_output_overflow: bool,
}

impl Default for Limits {
    /// No limits except the output and /tmp defaults.
    fn default() -> Self {
        Limits {
            memory: None,
            pids: None,
            cpu: None,
            timeout: None,
            cpu_time: None,
            output: DEFAULT_OUTPUT_LIMIT,
            file_size: None,
            open_files: None,
            stack: None,
            tmp_size: DEFAULT_TMP_SIZE,
            best_effort: Vec::new(),
            kill_on_output_overflow: false,
        }
    }
}

/// Default for `limits.output`.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 1 << 20;
/// Default for `limits.tmp_size`.
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;

/// HTTP limits, converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpLimits {
    pub max_requests: Option<u64>,
    #[serde(
        serialize_with = "crate::units::serialize_opt_duration",
        deserialize_with = "crate::units::deserialize_opt_duration"
    )]
    pub request_timeout: Option<Duration>,
    pub max_request_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    pub max_total_bytes: Option<u64>,
    pub block_private_ips: bool,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_requests: None,
            request_timeout: None,
            max_request_bytes: None,
            max_response_bytes: None,
            max_total_bytes: None,
            block_private_ips: true,
        }
    }
}

/// Kernel options with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelOptions {
    pub namespaces: Vec<Namespace>,
    pub seccomp: SeccompProfile,
    pub landlock: Enforcement,
    pub audit: AuditMode,
    pub hostname: String,
    pub tty: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            namespaces: Namespace::ALL.to_vec(),
            seccomp: SeccompProfile::Default,
            landlock: Enforcement::Required,
            audit: AuditMode::Off,
            hostname: "bunker".to_string(),
            tty: false,
        }
    }
}

/// JavaScript options with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsOptions {
    pub eval: bool,
    pub max_stack_depth: Option<u64>,
    pub max_string_length: Option<u64>,
}

impl Default for JsOptions {
    fn default() -> Self {
        JsOptions {
            eval: true,
            max_stack_depth: None,
            max_string_length: None,
        }
    }
}
