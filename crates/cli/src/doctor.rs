//! `bunker doctor`: what this host can enforce. Every finding comes from a real probe — the same
//! code paths `bunker run` uses — never from guessing by kernel version.

use std::ffi::OsString;

use bunker_policy::{LimitName, Policy};
use bunker_sandbox::limits::SandboxCgroup;
use bunker_sandbox::{Enforced, LayerStatus, RunRequest, Status};
use serde::Serialize;

use crate::cli::DoctorOpts;
use crate::exit;

#[derive(Debug, Serialize)]
struct Finding {
    check: String,
    ok: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    findings: Vec<Finding>,
    /// Layers of a run under the default policy, as `bunker run` reports them.
    default_policy: Option<Enforced>,
    /// Whether every layer of the default policy is enforced here.
    default_policy_enforced: bool,
    cleaned: Vec<String>,
}

pub fn main(opts: DoctorOpts) -> i32 {
    let mut findings = Vec::new();
    let mut cleaned = Vec::new();
    if opts.clean {
        match bunker_sandbox::limits::clean_stale() {
            Ok(removed) => cleaned = removed,
            Err(e) => findings.push(finding("clean", false, format!("cannot clean: {e}"))),
        }
    }
    let default = match bunker_policy::builtin("default") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bunker: built-in default policy does not load: {e}");
            return exit::POLICY_ERROR;
        }
    };

    let userns = read_trimmed("/proc/sys/user/max_user_namespaces");
    findings.push(finding(
        "user namespaces",
        userns.as_deref().is_some_and(|v| v != "0"),
        format!(
            "max_user_namespaces = {}",
            userns.unwrap_or_else(|| "unknown".into())
        ),
    ));

    let mut lenient = default.clone();
    lenient.kernel.landlock = bunker_policy::Enforcement::BestEffort;
    match bunker_sandbox::landlock::probe(&lenient) {
        Ok(0) => findings.push(finding("landlock", false, "not available".into())),
        Ok(abi) => findings.push(finding("landlock", true, format!("ABI {abi}"))),
        Err(e) => findings.push(finding("landlock", false, e.to_string())),
    }

    let actions = read_trimmed("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    findings.push(finding(
        "seccomp",
        actions.contains("errno"),
        format!("actions: {actions}"),
    ));
    findings.push(finding(
        "seccomp user notification",
        actions.contains("user_notif"),
        format!(
            "{} in this kernel; no layer of bunker uses it yet: kernel.audit accepts only \"off\" \
             (\"seccomp-unotify\" and \"ebpf\" are policy errors until they are built)",
            if actions.contains("user_notif") {
                "available"
            } else {
                "not available"
            }
        ),
    ));

    for (name, limit) in [
        ("memory", LimitName::Memory),
        ("pids", LimitName::Pids),
        ("cpu", LimitName::Cpu),
    ] {
        findings.push(probe_cgroup(&default, name, limit));
    }

    let run = probe_default_run(&default);
    let (default_policy, run_ok) = match run {
        Ok(enforced) => (Some(enforced), true),
        Err(e) => {
            findings.push(finding("sandbox run", false, e));
            (None, false)
        }
    };
    if run_ok {
        findings.push(finding(
            "sandbox run",
            true,
            "/bin/true ran under the default policy".into(),
        ));
    }
    let default_policy_enforced = default_policy
        .as_ref()
        .is_some_and(|e| layers(e).iter().all(|(_, s)| *s == LayerStatus::On));

    let report = Report {
        findings,
        default_policy,
        default_policy_enforced,
        cleaned,
    };
    if opts.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("bunker: {e}"),
        }
    } else {
        print_text(&report);
    }
    if report.default_policy_enforced {
        0
    } else {
        exit::DOCTOR_UNENFORCEABLE
    }
}

fn finding(check: &str, ok: bool, detail: String) -> Finding {
    Finding {
        check: check.to_string(),
        ok,
        detail,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Creates (and removes) a real cgroup with just this limit, failing closed as `run` would.
fn probe_cgroup(default: &Policy, name: &str, limit: LimitName) -> Finding {
    let mut policy = default.clone();
    policy.limits.memory = None;
    policy.limits.pids = None;
    policy.limits.cpu = None;
    policy.limits.best_effort.clear();
    match limit {
        LimitName::Memory => policy.limits.memory = Some(64 << 20),
        LimitName::Pids => policy.limits.pids = Some(64),
        LimitName::Cpu | LimitName::CpuTime => policy.limits.cpu = Some(1.0),
    }
    let mut enforced = Enforced::default();
    match SandboxCgroup::prepare(&policy, &mut enforced) {
        Ok(cgroup) => {
            drop(cgroup);
            let detail = if enforced.notes.is_empty() {
                "enforced".to_string()
            } else {
                enforced.notes.join("; ")
            };
            finding(&format!("cgroup {name} limit"), true, detail)
        }
        Err(e) => finding(&format!("cgroup {name} limit"), false, e.to_string()),
    }
}

/// Runs `/bin/true` under the default policy and returns what was enforced.
fn probe_default_run(default: &Policy) -> Result<Enforced, String> {
    let request = RunRequest {
        policy: default.clone(),
        argv: vec![OsString::from("/bin/true")],
        cwd: None,
        stdin: bunker_sandbox::stdin::ProgramStdin::Null,
        stream_output: false,
        console: None,
        observer: None,
    };
    let host = bunker_sandbox::host::HostContext::of_this_process().map_err(|e| e.to_string())?;
    let result = bunker_sandbox::spawn::run(&request, &host, None);
    if result.status == Status::SetupError {
        return Err(result.error.unwrap_or_default());
    }
    if result.status != Status::Ok {
        return Err(format!(
            "/bin/true under the default policy ended with {:?}: {}",
            result.status,
            result.error.unwrap_or_default()
        ));
    }
    Ok(result.enforced)
}

fn layers(e: &Enforced) -> Vec<(&'static str, LayerStatus)> {
    vec![
        ("namespaces", e.namespaces),
        ("filesystem", e.filesystem),
        ("landlock", e.landlock),
        ("seccomp", e.seccomp),
        ("no_new_privs", e.no_new_privs),
        ("capabilities dropped", e.capabilities_dropped),
        ("memory limit", e.memory_limit),
        ("pids limit", e.pids_limit),
        ("rlimits", e.rlimits),
        ("network isolation", e.network),
    ]
}

fn print_text(report: &Report) {
    println!("Host checks:");
    for f in &report.findings {
        let mark = if f.ok { "ok  " } else { "FAIL" };
        println!("  {mark} {:<26} {}", f.check, f.detail);
    }
    if let Some(enforced) = &report.default_policy {
        println!("\nLayers of the default policy on this host:");
        for (name, status) in layers(enforced) {
            let word = match status {
                LayerStatus::On => "on",
                LayerStatus::Partial => "partial",
                LayerStatus::Off => "OFF",
            };
            println!("  {word:<8} {name}");
        }
        for note in &enforced.notes {
            println!("  note: {note}");
        }
    }
    if !report.cleaned.is_empty() {
        println!("\nRemoved stale cgroups:");
        for c in &report.cleaned {
            println!("  {c}");
        }
    }
    println!(
        "\n{}",
        if report.default_policy_enforced {
            "Every layer of the default policy is enforced on this host."
        } else {
            "Some layer of the default policy cannot be enforced on this host (see above)."
        }
    );
}
