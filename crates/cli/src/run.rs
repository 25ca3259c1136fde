//! `bunker run`: load the policy, build the sandbox, run the command, report.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use bunker_policy::units::{ByteSize, Span};
use bunker_policy::{LoadSpec, Policy, PolicyDoc};
use bunker_sandbox::{Enforced, LayerStatus, RunRequest, RunResult, Status, StreamResult};

use crate::cli::RunOpts;
use crate::egress::ProxyEgress;
use crate::exit;

pub fn main(opts: RunOpts) -> i32 {
    // SIGTERM/SIGINT/SIGHUP now tear the sandbox down and remove its cgroup (the supervise
    // loop polls for them) instead of killing bunker with the sandbox still running.
    if let Err(e) = bunker_sys::event::install_termination_handler() {
        eprintln!("bunker: cannot handle termination signals: {e}");
    }
    let report_to = ReportTarget::from_opts(&opts);
    let policy = match load_policy(&opts) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("bunker: policy error: {message}");
            report_to.emit(&failure(Status::PolicyError, message));
            return exit::POLICY_ERROR;
        }
    };
    let resolve = match parse_resolve(&opts.resolve) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("bunker: {message}");
            report_to.emit(&failure(Status::PolicyError, message));
            return exit::POLICY_ERROR;
        }
    };
    let policy = with_program_binary(policy, &opts.command);
    let request = RunRequest {
        policy: policy.clone(),
        argv: opts.command.clone(),
        cwd: opts.cwd.clone(),
        inherit_stdin: true,
        stream_output: true,
    };
    let mut egress = ProxyEgress::new(&policy, resolve);
    let wants_egress = !policy.allow.net.is_empty();
    let outcome = bunker_sandbox::spawn::run(
        &request,
        if wants_egress {
            Some(&mut egress as &mut dyn bunker_sandbox::egress::Egress)
        } else {
            None
        },
    );
    let result = match outcome {
        Ok(result) => result,
        Err(err) => {
            let message = err.to_string();
            eprintln!("bunker: {message}");
            report_to.emit(&failure(Status::SetupError, message));
            return exit::SETUP_ERROR;
        }
    };
    // Whatever bunker itself ended or refused (a limit, a missing command) is said on stderr;
    // the program's own exit needs no comment.
    if let Some(error) = &result.error {
        match result.status {
            Status::Ok => {}
            Status::Exit | Status::Signal => {
                eprintln!("bunker: {error}");
                if result.exit_code == Some(exit::NOT_FOUND) && !policy.set_env.contains_key("PATH")
                {
                    eprintln!(
                        "bunker: hint: the policy sets no PATH and grants no system directories; \
                         most policies start with \"extends\": [\"default\"]"
                    );
                }
            }
            _ => eprintln!("bunker: {}: {error}", status_name(result.status)),
        }
    }
    warn_unenforced_limits(&policy, &result.enforced);
    for hint in result
        .enforced
        .notes
        .iter()
        .filter(|n| n.starts_with(bunker_sandbox::grants::HINT))
    {
        eprintln!("bunker: {hint}");
    }
    report_to.emit(&result);
    exit_code(&result)
}

/// A limit the policy set but marked best-effort, and that this host could not enforce, is said
/// on stderr (the report carries it as `off`/`partial` with a note).
fn warn_unenforced_limits(policy: &Policy, enforced: &Enforced) {
    let limits = &policy.limits;
    let set = [
        ("memory", limits.memory.is_some(), enforced.memory_limit),
        ("pids", limits.pids.is_some(), enforced.pids_limit),
        ("cpu", limits.cpu.is_some(), enforced.cpu_limit),
        (
            "cpu_time",
            limits.cpu_time.is_some(),
            enforced.cpu_time_limit,
        ),
    ];
    for (name, is_set, status) in set {
        if is_set && status != LayerStatus::On {
            let how = if status == LayerStatus::Partial {
                "only partly enforced"
            } else {
                "not enforced"
            };
            eprintln!(
                "bunker: warning: limits.{name} was {how} on this host (it is marked best-effort; \
                 see the report's enforced.notes or `bunker doctor`)"
            );
        }
    }
}

/// The process exit code for a finished run.
fn exit_code(result: &RunResult) -> i32 {
    match result.status {
        Status::Ok => 0,
        Status::Exit => result.exit_code.unwrap_or(1),
        Status::Signal => 128 + result.signal.unwrap_or(0),
        Status::Timeout => exit::TIMEOUT,
        Status::CpuTime | Status::MemoryLimit | Status::PidsLimit | Status::OutputLimit => {
            exit::LIMIT
        }
        Status::PolicyError => exit::POLICY_ERROR,
        Status::SetupError => match result.exit_code {
            Some(code @ (exit::CANNOT_EXECUTE | exit::NOT_FOUND)) => code,
            _ => exit::SETUP_ERROR,
        },
    }
}

fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Loads the policy file (or the default profile) with the command-line flags merged on top.
fn load_policy(opts: &RunOpts) -> Result<Policy, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let mut overlay = PolicyDoc {
        extends: opts.profiles.clone(),
        ..PolicyDoc::default()
    };
    overlay.allow.net = opts.allow_net.clone();
    overlay.allow.read = opts.allow_read.clone();
    overlay.allow.write = opts.allow_write.clone();
    overlay.allow.exec = opts.allow_exec.clone();
    overlay.allow.env = opts.allow_env.clone();
    overlay.limits.timeout = opts.timeout.clone().map(Span::Text);
    overlay.limits.cpu_time = opts.cpu_time.clone().map(Span::Text);
    overlay.limits.memory = opts.memory.clone().map(ByteSize::Text);
    overlay.limits.output = opts.output.clone().map(ByteSize::Text);
    overlay.limits.pids = opts.pids;
    overlay.limits.cpu = opts.cpu;
    let spec = LoadSpec {
        file: opts.policy.clone(),
        overlay,
        overlay_base: cwd,
    };
    bunker_policy::load(&spec).map_err(|e| e.to_string())
}

/// `NAME:IP` pairs for the proxy's pinned resolution.
fn parse_resolve(entries: &[String]) -> Result<Vec<(String, std::net::IpAddr)>, String> {
    entries
        .iter()
        .map(|entry| {
            let (name, ip) = entry
                .rsplit_once(':')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| format!("--resolve {entry:?}: expected NAME:IP"))?;
            let ip = ip
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| format!("--resolve {entry:?}: {ip:?} is not an IP address"))?;
            Ok((name.to_ascii_lowercase(), ip))
        })
        .collect()
}

/// The program's own binary is part of "what a program needs to start": when `argv[0]` resolves
/// (on the sandbox's PATH) to a file that no grant covers, it is granted read and exec — that file
/// alone, not its directory.
fn with_program_binary(mut policy: Policy, argv: &[OsString]) -> Policy {
    let Some(program) = argv.first() else {
        return policy;
    };
    let sandbox_path = policy
        .set_env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string());
    let Some(found) = find_program(Path::new(program), &sandbox_path) else {
        return policy;
    };
    let mut paths = vec![found.clone()];
    if let Ok(real) = std::fs::canonicalize(&found) {
        if real != found {
            paths.push(real);
        }
    }
    for path in paths {
        let covered = |grants: &[PathBuf]| grants.iter().any(|g| path.starts_with(g));
        if !covered(&policy.allow.exec) {
            policy.allow.exec.push(path.clone());
        }
        if !covered(&policy.allow.read) {
            policy.allow.read.push(path);
        }
    }
    policy
}

fn find_program(program: &Path, search_path: &str) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        let absolute = std::env::current_dir().ok()?.join(program);
        return absolute.is_file().then_some(absolute);
    }
    search_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A result for runs that never started.
fn failure(status: Status, error: String) -> RunResult {
    RunResult {
        status,
        exit_code: None,
        signal: None,
        error: Some(error),
        wall_ms: 0.0,
        cpu_ms: 0.0,
        peak_memory_bytes: None,
        stdout: StreamResult::default(),
        stderr: StreamResult::default(),
        enforced: Enforced::default(),
        http: Default::default(),
    }
}

/// Where `--report json` goes.
enum ReportTarget {
    None,
    Stderr,
    Fd(i32),
}

impl ReportTarget {
    fn from_opts(opts: &RunOpts) -> ReportTarget {
        match (opts.report_fd, opts.report) {
            (Some(fd), _) => ReportTarget::Fd(fd),
            (None, Some(_)) => ReportTarget::Stderr,
            (None, None) => ReportTarget::None,
        }
    }

    fn emit(&self, result: &RunResult) {
        let Ok(mut line) = serde_json::to_string(result) else {
            return;
        };
        line.push('\n');
        let written = match self {
            ReportTarget::None => return,
            ReportTarget::Stderr => std::io::stderr().write_all(line.as_bytes()),
            ReportTarget::Fd(fd) => {
                // Reopening through /proc keeps this safe code: no raw descriptor is adopted.
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(format!("/proc/self/fd/{fd}"))
                    .and_then(|mut f| f.write_all(line.as_bytes()))
            }
        };
        if let Err(e) = written {
            eprintln!("bunker: cannot write the report: {e}");
        }
    }
}
