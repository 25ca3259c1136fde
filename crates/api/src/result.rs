//! The one structured result of a run: the contract the CLI's `--report json` prints and the
//! clients build on. Its JSON Schema is in docs/report.schema.json and snapshot-tested.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::{ApiError, ErrorCode};

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exited with code 0.
    Ok,
    /// Exited with a non-zero code (`exit_code`).
    Exit,
    /// Killed by a signal it did not get from bunker (`signal`).
    Signal,
    /// Killed at the wall-clock timeout.
    Timeout,
    /// Killed when it used up its CPU time.
    CpuTime,
    /// Killed by the memory limit (OOM in its cgroup).
    MemoryLimit,
    /// Hit the pids limit (fork failed for lack of pids) and exited non-zero.
    PidsLimit,
    /// Killed because its output exceeded `limits.output` with `kill_on_output_overflow`.
    OutputLimit,
    /// The sandbox could not be built; `error` says which step failed.
    SetupError,
    /// The policy could not be loaded; `error` says where.
    PolicyError,
}

/// How completely a layer was enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    /// Fully enforced by the kernel.
    On,
    /// Enforced in part (see `notes`).
    Partial,
    /// Not enforced: not asked for, or best effort and unavailable (see `notes`).
    Off,
}

/// What was enforced, layer by layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Enforced {
    /// user, pid, mount, net, ipc, uts and cgroup namespaces (`partial` when some were left
    /// out by `kernel.namespaces`).
    pub namespaces: LayerStatus,
    /// The new root built from `allow.read`/`allow.write` and the `deny` masks.
    pub filesystem: LayerStatus,
    /// landlock rules mirroring read, write and exec.
    pub landlock: LayerStatus,
    /// The landlock ABI version the kernel offered (0 when none).
    pub landlock_abi: u32,
    /// The seccomp filter.
    pub seccomp: LayerStatus,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: LayerStatus,
    /// Every capability dropped (bounding, ambient, inheritable, effective, permitted).
    pub capabilities_dropped: LayerStatus,
    /// `limits.memory` as a cgroup limit (`partial` when swap could not be limited).
    pub memory_limit: LayerStatus,
    /// `limits.pids` as a cgroup limit.
    pub pids_limit: LayerStatus,
    /// `limits.cpu` as a cgroup CPU quota.
    pub cpu_limit: LayerStatus,
    /// `limits.cpu_time`: `on` when the whole sandbox's CPU time is accounted (cgroup) and
    /// enforced by the supervisor; `partial` when only RLIMIT_CPU bounds each process.
    pub cpu_time_limit: LayerStatus,
    /// rlimits: file size, open files, stack, core dumps off, RLIMIT_CPU.
    pub rlimits: LayerStatus,
    /// Network isolation: only loopback, egress through the proxy.
    pub network: LayerStatus,
    /// Human-readable notes on anything partial or off.
    pub notes: Vec<String>,
}

impl Default for Enforced {
    fn default() -> Self {
        Enforced {
            namespaces: LayerStatus::Off,
            filesystem: LayerStatus::Off,
            landlock: LayerStatus::Off,
            landlock_abi: 0,
            seccomp: LayerStatus::Off,
            no_new_privs: LayerStatus::Off,
            capabilities_dropped: LayerStatus::Off,
            memory_limit: LayerStatus::Off,
            pids_limit: LayerStatus::Off,
            cpu_limit: LayerStatus::Off,
            cpu_time_limit: LayerStatus::Off,
            rlimits: LayerStatus::Off,
            network: LayerStatus::Off,
            notes: Vec::new(),
        }
    }
}

/// One output stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamResult {
    /// Bytes the program wrote.
    pub bytes: u64,
    /// Bytes delivered to the caller (at most the output limit, shared by both streams).
    pub kept: u64,
    /// Whether anything was cut.
    pub truncated: bool,
    /// The kept bytes (text when UTF-8, otherwise base64), when capturing rather than streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
}

/// One decision of the egress proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpRecord {
    /// `connect`, `http` (forwarded), or `socks5`.
    pub kind: String,
    pub host: String,
    pub port: u16,
    /// The address connected to (absent when denied before resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub allowed: bool,
    /// The rule that decided, e.g. `allow.net[0] (*.example.com)` or `private address 127.0.0.1`.
    pub rule: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: f64,
    /// Set when a limit ended the request (`max_requests`, `max_response_bytes`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Everything that happened in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunResult {
    /// How the run ended.
    pub status: Status,
    /// The program's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// What went wrong, for people: for setup_error and policy_error, limit hits, an exec
    /// failure, a termination. Always set together with `error_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What went wrong, as a stable code (absent for a plain `ok`, `exit` or `signal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// For `setup_failed` and `unenforceable`: the step that failed or the layer that cannot be
    /// enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_step: Option<String>,
    /// Wall-clock time from the sandbox's creation until it was gone, in milliseconds.
    pub wall_ms: f64,
    /// CPU time (user + system) of every process of the sandbox, in milliseconds.
    pub cpu_ms: f64,
    /// Peak memory of the sandbox's cgroup, when a memory cgroup was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// The program's standard output.
    pub stdout: StreamResult,
    /// The program's standard error.
    pub stderr: StreamResult,
    /// What was enforced, layer by layer.
    pub enforced: Enforced,
    /// What went through the egress proxy.
    pub http: HttpReport,
    /// The sandbox came from a `bunker serve` warm pool (built before the request; see
    /// docs/api.md, "Warm pools"). Absent for a sandbox built for the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
}

/// Decisions listed one by one in [`HttpReport::requests`]; the rest are only counted, so the
/// report stays small whatever the program does (see docs/report.md, "Size").
pub const MAX_REPORTED_REQUESTS: usize = 100;
/// Distinct rules listed in [`HttpReport::denied_by`] and [`HttpReport::limits_hit`].
pub const MAX_REPORTED_RULES: usize = 16;

/// Bytes the report's JSON line stays under: it fits in a default pipe buffer (64 KiB), so a
/// caller that reads `--report-fd` only after bunker exits cannot deadlock with it.
pub const MAX_REPORT_BYTES: usize = 60 * 1024;

impl RunResult {
    /// The result of a run that never started: `policy_error` for the policy codes,
    /// `setup_error` for the rest, with nothing measured.
    pub fn refused(error: ApiError) -> RunResult {
        let status = match error.code {
            ErrorCode::PolicyInvalid | ErrorCode::PolicyNotPermitted => Status::PolicyError,
            _ => Status::SetupError,
        };
        RunResult {
            status,
            exit_code: None,
            signal: None,
            error: Some(error.message),
            error_code: Some(error.code),
            error_step: error.step,
            wall_ms: 0.0,
            cpu_ms: 0.0,
            peak_memory_bytes: None,
            stdout: StreamResult::default(),
            stderr: StreamResult::default(),
            enforced: Enforced::default(),
            http: HttpReport::default(),
            warm: false,
        }
    }

    /// The error of this run, when bunker ended or refused it.
    pub fn api_error(&self) -> Option<ApiError> {
        let code = self.error_code?;
        Some(ApiError {
            code,
            message: self.error.clone().unwrap_or_default(),
            step: self.error_step.clone(),
            policy: None,
        })
    }

    /// The report as one JSON line (no newline), under [`MAX_REPORT_BYTES`]: notes past half
    /// of it are left out (the last note says how many), then request records are dropped from
    /// the end (`http.truncated`) until it fits. The totals and rule counts always stay. The
    /// streams' captured `data` (library callers that capture) is kept as it is: the CLI
    /// streams the output and never has any.
    pub fn to_report_line(&self) -> serde_json::Result<String> {
        let line = serde_json::to_string(self)?;
        if line.len() <= MAX_REPORT_BYTES {
            return Ok(line);
        }
        let mut bounded = self.clone();
        let notes = &mut bounded.enforced.notes;
        let total = notes.len();
        while notes.len() > 1 && serde_json::to_string(&*notes)?.len() > MAX_REPORT_BYTES / 2 {
            let keep = (notes.len() - 1) / 2;
            notes.truncate(keep);
            notes.push(format!(
                "{} more notes left out of the report",
                total - keep
            ));
        }
        let mut line = serde_json::to_string(&bounded)?;
        while line.len() > MAX_REPORT_BYTES && !bounded.http.requests.is_empty() {
            let keep = bounded.http.requests.len() / 2;
            bounded.http.requests.truncate(keep);
            bounded.http.truncated = true;
            line = serde_json::to_string(&bounded)?;
        }
        Ok(line)
    }
}

/// The egress proxy's part of the result: the first decisions, and totals over all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpReport {
    /// The first decisions of the egress proxy (at most `MAX_REPORTED_REQUESTS`), in order.
    pub requests: Vec<HttpRecord>,
    /// Whether decisions were left out of `requests` (the totals still count them).
    #[serde(default)]
    pub truncated: bool,
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused (by a rule or a limit).
    pub denied: u64,
    /// The rules that refused requests, in the order they first did, with how many each
    /// (at most `MAX_REPORTED_RULES` rules; `denied` counts every refusal).
    #[serde(default)]
    pub denied_by: Vec<RuleCount>,
    /// The HTTP limits that ended requests (`max_requests`, `max_response_bytes`, ...), with how
    /// many each.
    #[serde(default)]
    pub limits_hit: Vec<RuleCount>,
    /// Bytes sent to destinations, over all requests.
    pub bytes_sent: u64,
    /// Bytes received from destinations, over all requests.
    pub bytes_received: u64,
}

/// A rule (or limit) and how many requests it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleCount {
    pub rule: String,
    pub requests: u64,
}

impl HttpReport {
    /// Totals the decisions and keeps the first [`MAX_REPORTED_REQUESTS`] of them.
    pub fn from_records(mut requests: Vec<HttpRecord>) -> HttpReport {
        let allowed = requests.iter().filter(|r| r.allowed).count() as u64;
        let mut denied_by = Vec::new();
        let mut limits_hit = Vec::new();
        for r in &requests {
            if !r.allowed {
                tally(&mut denied_by, &r.rule);
            }
            if let Some(limit) = &r.limit {
                tally(&mut limits_hit, &format!("http.{limit}"));
            }
        }
        HttpReport {
            allowed,
            denied: requests.len() as u64 - allowed,
            bytes_sent: requests.iter().map(|r| r.bytes_sent).sum(),
            bytes_received: requests.iter().map(|r| r.bytes_received).sum(),
            truncated: requests.len() > MAX_REPORTED_REQUESTS,
            denied_by,
            limits_hit,
            requests: {
                requests.truncate(MAX_REPORTED_REQUESTS);
                requests
            },
        }
    }
}

/// Counts one more request for `rule`; a rule beyond the first [`MAX_REPORTED_RULES`] is left
/// out (the totals count it).
fn tally(counts: &mut Vec<RuleCount>, rule: &str) {
    if let Some(c) = counts.iter_mut().find(|c| c.rule == rule) {
        c.requests += 1;
    } else if counts.len() < MAX_REPORTED_RULES {
        counts.push(RuleCount {
            rule: rule.to_owned(),
            requests: 1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(i: usize, host_len: usize) -> HttpRecord {
        HttpRecord {
            kind: "connect".into(),
            host: format!("{i}{}", "h".repeat(host_len)),
            port: 443,
            address: None,
            allowed: false,
            rule: format!("no allow.net rule matches host{}", i % 20),
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: 0.0,
            limit: i.is_multiple_of(2).then(|| "max_requests".to_string()),
        }
    }

    fn result(http: HttpReport, notes: Vec<String>) -> RunResult {
        RunResult {
            status: Status::Ok,
            exit_code: Some(0),
            signal: None,
            error: None,
            error_code: None,
            error_step: None,
            wall_ms: 0.0,
            cpu_ms: 0.0,
            peak_memory_bytes: None,
            stdout: StreamResult::default(),
            stderr: StreamResult::default(),
            enforced: Enforced {
                notes,
                ..Enforced::default()
            },
            http,
            warm: false,
        }
    }

    #[test]
    fn records_are_kept_first_and_counted_all() {
        let http = HttpReport::from_records((0..20_000).map(|i| denied(i, 10)).collect());
        assert_eq!(http.requests.len(), MAX_REPORTED_REQUESTS);
        assert_eq!(http.requests[0].host, "0hhhhhhhhhh");
        assert!(http.truncated);
        assert_eq!((http.denied, http.allowed), (20_000, 0));
        assert_eq!(http.denied_by.len(), MAX_REPORTED_RULES);
        assert_eq!(http.denied_by[0].requests, 1000);
        assert_eq!(http.limits_hit.len(), 1);
        assert_eq!(http.limits_hit[0].rule, "http.max_requests");
        assert_eq!(http.limits_hit[0].requests, 10_000);
        let few = HttpReport::from_records((0..3).map(|i| denied(i, 1)).collect());
        assert!(!few.truncated);
    }

    #[test]
    fn the_report_line_fits_its_bound() {
        let http = HttpReport::from_records((0..500).map(|i| denied(i, 250)).collect());
        let notes = (0..500)
            .map(|i| format!("note {i} {}", "n".repeat(300)))
            .collect();
        let line = result(http, notes).to_report_line().unwrap();
        assert!(line.len() <= MAX_REPORT_BYTES, "{}", line.len());
        let back: RunResult = serde_json::from_str(&line).unwrap();
        assert!(back.http.truncated);
        assert_eq!(back.http.denied, 500);
        assert!(!back.http.requests.is_empty());
        assert!(back
            .enforced
            .notes
            .last()
            .unwrap()
            .contains("more notes left out"));
        let small = result(HttpReport::default(), vec!["one".into()]);
        assert_eq!(
            small.to_report_line().unwrap(),
            serde_json::to_string(&small).unwrap()
        );
    }
}
