//! `bunker run`: load the policy, build the sandbox, run the command, report.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bunker_api::{ApiError, ErrorCode};
use bunker_policy::units::{ByteSize, Span};
use bunker_policy::{GrantOrigin, HostEnv, LoadSpec, Policy, PolicyDoc};
use bunker_sandbox::console::{Console, Verbosity};
use bunker_sandbox::events::{Observer, RunEvent};
use bunker_sandbox::host::HostContext;
use bunker_sandbox::preflight;
use bunker_sandbox::{Enforced, LayerStatus, RunRequest, RunResult, Status};
use bunker_sys::event::Interest;

use crate::cli::RunOpts;
use crate::egress::ProxyEgress;
use crate::exit;
use crate::source;

pub fn main(opts: RunOpts) -> i32 {
    let verbosity = if opts.quiet {
        Verbosity::Quiet
    } else if opts.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    // The report's destination is taken first: a descriptor number given by the caller must
    // be checked before bunker opens descriptors of its own, which could take that number.
    let report_to = match ReportTargets::open(&opts) {
        Ok(targets) => targets,
        Err(message) => {
            if verbosity > Verbosity::Quiet {
                eprintln!("bunker: {message}; nothing was run");
            }
            return exit::REPORT_ERROR;
        }
    };
    let console = match Console::new(verbosity) {
        Ok(console) => console,
        Err(e) => {
            eprintln!("bunker: cannot set up bunker's own output: {e}");
            return exit::SETUP_ERROR;
        }
    };
    // SIGTERM/SIGINT/SIGHUP now tear the sandbox down and remove its cgroup (the supervise
    // loop polls for them) instead of killing bunker with the sandbox still running.
    if let Err(e) = bunker_sys::event::install_termination_handler() {
        console.notice(&format!("bunker: cannot handle termination signals: {e}"));
    }
    let policy = match load_policy(&opts) {
        Ok((policy, origins)) => {
            // A grant the mounts would refuse is a policy error, as in `bunker check`.
            let say = |line: &str| console.notice(line);
            if let Some(message) = source::say_grant_findings(&policy, &origins, false, false, &say)
            {
                return report_to.emit(&console, &policy_failure(message), exit::POLICY_ERROR);
            }
            policy
        }
        Err(message) => {
            console.notice(&format!("bunker: policy error: {message}"));
            return report_to.emit(&console, &policy_failure(message), exit::POLICY_ERROR);
        }
    };
    let resolve = match parse_resolve(&opts.resolve) {
        Ok(r) => r,
        Err(message) => {
            console.notice(&format!("bunker: {message}"));
            return report_to.emit(&console, &policy_failure(message), exit::POLICY_ERROR);
        }
    };
    let policy = with_program_binary(policy, &opts.command);
    // Where the program starts, when that may surprise: said before its output (the `-v`-only
    // ones go to the report's notes).
    let host = match HostContext::of_this_process() {
        Ok(host) => host,
        Err(e) => {
            console.notice(&format!("bunker: {e}"));
            let refused = RunResult::refused(e.to_api_error());
            let code = exit_code(&refused);
            return report_to.emit(&console, &refused, code);
        }
    };
    let start_notes = preflight::start_notes(&policy, opts.cwd.as_deref(), host.cwd.as_deref());
    for note in &start_notes {
        let line = format!("bunker: note: {}", note.text);
        if note.verbose_only {
            console.verbose(&line);
        } else {
            console.notice(&line);
        }
    }
    let request = RunRequest {
        policy: policy.clone(),
        argv: opts.command.clone(),
        cwd: opts.cwd.clone(),
        stdin: bunker_sandbox::stdin::ProgramStdin::Inherit,
        stream_output: true,
        console: Some(console.clone()),
        observer: Some(Arc::new(Narrator {
            console: console.clone(),
            limits: policy.limits.clone(),
        })),
    };
    let mut egress = ProxyEgress::new(&policy, resolve, &console);
    let wants_egress = !policy.allow.net.is_empty();
    let warm = match crate::connect::warm(&opts) {
        Ok(warm) => warm,
        Err(message) => {
            console.notice(&format!("bunker: {message}"));
            let refused = RunResult::refused(ApiError::new(ErrorCode::RequestInvalid, message));
            let code = exit_code(&refused);
            return report_to.emit(&console, &refused, code);
        }
    };
    let outcome = match (crate::connect::socket(&opts), warm) {
        (Some(socket), _) => crate::connect::run(&socket, &request, &host, &opts, warm),
        // Never a silent cold run in place of the warm one asked for.
        (None, bunker_api::WarmMode::Require) => RunResult::refused(ApiError::new(
            ErrorCode::RequestInvalid,
            "a warm start (--warm / BUNKER_WARM=require) is made by a daemon: give --connect \
             or BUNKER_SOCKET (and not --local)",
        )),
        (None, bunker_api::WarmMode::Auto) => bunker_sandbox::spawn::run(
            &request,
            &host,
            if wants_egress {
                Some(&mut egress as &mut dyn bunker_sandbox::egress::Egress)
            } else {
                None
            },
        ),
    };
    // A run that failed midway may have left bunker's lines in the console's relay.
    console.end_relay(false);
    let mut result = outcome;
    result
        .enforced
        .notes
        .extend(start_notes.into_iter().map(|n| n.text));
    // Whatever bunker itself ended or refused (a limit, a missing command) is said on stderr;
    // the program's own exit needs no comment.
    if let Some(error) = &result.error {
        match result.status {
            Status::Ok => {}
            Status::Exit | Status::Signal => {
                console.notice(&format!("bunker: {error}"));
                if result.exit_code == Some(exit::NOT_FOUND) && !policy.set_env.contains_key("PATH")
                {
                    console.notice(
                        "bunker: hint: the policy sets no PATH and grants no system directories; \
                         most policies start with \"extends\": [\"default\"]",
                    );
                }
            }
            // The step and what failed say it all, wherever the setup failed.
            Status::SetupError => console.notice(&format!("bunker: {error}")),
            _ => console.notice(&format!("bunker: {}: {error}", status_name(result.status))),
        }
    }
    // A program that could not start, or that failed, may have lacked a grant for its ELF
    // interpreter or its script.
    let exec_failed = result.status == Status::Exit && result.error.is_some();
    let failed = result.status == Status::Exit && result.exit_code != Some(0);
    if failed {
        for hint in preflight::exec_hints(&policy, &opts.command, opts.cwd.as_deref(), exec_failed)
        {
            console.notice(&format!("bunker: hint: {hint}"));
        }
    }
    // A write grant the sandbox still cannot write (owned by someone else, as root).
    for hint in result
        .enforced
        .notes
        .iter()
        .filter(|n| n.starts_with(bunker_sandbox::grants::HINT))
    {
        console.notice(&format!("bunker: {hint}"));
    }
    summarize(&console, &policy, &result);
    report_to.emit(&console, &result, exit_code(&result))
}

/// Turns the run's events into bunker's lines: warnings for best-effort limits this host could
/// not enforce (before the program's output, once), and with `-v` each decision.
#[derive(Debug)]
struct Narrator {
    console: Console,
    limits: bunker_policy::Limits,
}

impl Observer for Narrator {
    fn event(&self, event: &RunEvent) {
        match event {
            RunEvent::Started { enforced } => {
                warn_unenforced_limits(&self.console, &self.limits, enforced);
                if self.console.verbosity() >= Verbosity::Verbose {
                    self.console
                        .verbose(&format!("bunker: enforced: {}", layers_line(enforced)));
                    for note in &enforced.notes {
                        self.console.verbose(&format!("bunker: note: {note}"));
                    }
                }
            }
            RunEvent::LimitHit { message, .. } => {
                self.console.verbose(&format!("bunker: {message}"))
            }
            _ => {}
        }
    }
}

/// `namespaces on, filesystem on, landlock on (ABI 7), ...`
fn layers_line(e: &Enforced) -> String {
    let name = |s: LayerStatus| match s {
        LayerStatus::On => "on",
        LayerStatus::Partial => "partial",
        LayerStatus::Off => "off",
    };
    let layers = [
        ("namespaces", e.namespaces),
        ("filesystem", e.filesystem),
        ("landlock", e.landlock),
        ("seccomp", e.seccomp),
        ("no_new_privs", e.no_new_privs),
        ("capabilities_dropped", e.capabilities_dropped),
        ("memory_limit", e.memory_limit),
        ("pids_limit", e.pids_limit),
        ("cpu_limit", e.cpu_limit),
        ("cpu_time_limit", e.cpu_time_limit),
        ("rlimits", e.rlimits),
        ("network", e.network),
    ];
    layers
        .iter()
        .map(|(layer, status)| {
            if *layer == "landlock" && e.landlock_abi > 0 {
                format!("{layer} {} (ABI {})", name(*status), e.landlock_abi)
            } else {
                format!("{layer} {}", name(*status))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rules named in the end-of-run line about denied requests.
const SUMMARY_RULES: usize = 3;

/// The end of a run, said concisely: what the proxy denied, what limits cut.
fn summarize(console: &Console, policy: &Policy, result: &RunResult) {
    let http = &result.http;
    if http.denied > 0 {
        let mut rules: Vec<String> = http
            .denied_by
            .iter()
            .take(SUMMARY_RULES)
            .map(|c| match c.requests {
                1 => c.rule.clone(),
                n => format!("{} ×{n}", c.rule),
            })
            .collect();
        let named: u64 = http
            .denied_by
            .iter()
            .take(SUMMARY_RULES)
            .map(|c| c.requests)
            .sum();
        if named < http.denied {
            rules.push(format!("{} more", http.denied - named));
        }
        console.notice(&format!(
            "bunker: denied {} network request{}: {} (-v shows each; the report lists them)",
            http.denied,
            if http.denied == 1 { "" } else { "s" },
            rules.join("; ")
        ));
    }
    for hit in &http.limits_hit {
        console.notice(&format!(
            "bunker: {} ended {} request{}",
            hit.rule,
            hit.requests,
            if hit.requests == 1 { "" } else { "s" }
        ));
    }
    for (name, stream) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
        if stream.truncated {
            console.notice(&format!(
                "bunker: {name} was cut at limits.output ({} bytes for both streams): {} of {} \
                 bytes delivered",
                policy.limits.output, stream.kept, stream.bytes
            ));
        }
    }
    let dropped = console.dropped();
    if dropped > 0 {
        console.notice(&format!(
            "bunker: {dropped} of bunker's own lines were dropped: stderr was not read fast enough"
        ));
    }
}

/// A limit the policy set but marked best-effort, and that this host could not enforce, is said
/// on stderr (the report carries it as `off`/`partial` with a note).
fn warn_unenforced_limits(console: &Console, limits: &bunker_policy::Limits, enforced: &Enforced) {
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
            console.notice(&format!(
                "bunker: warning: limits.{name} is {how} on this host (it is marked best-effort; \
                 see the report's enforced.notes or `bunker doctor`)"
            ));
        }
    }
}

/// The process exit code for a finished run: the program's own end, or the one its error
/// code maps to.
fn exit_code(result: &RunResult) -> i32 {
    match result.status {
        Status::Ok => 0,
        Status::Exit => result.exit_code.unwrap_or(1),
        Status::Signal => 128 + result.signal.unwrap_or(0),
        _ => result
            .error_code
            .and_then(ErrorCode::cli_exit_code)
            .unwrap_or(exit::SETUP_ERROR),
    }
}

fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Loads the policy file (or the default profile) with the command-line flags merged on top,
/// and where each grant was written.
fn load_policy(opts: &RunOpts) -> Result<(Policy, Vec<GrantOrigin>), String> {
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
    overlay.limits.best_effort = opts.best_effort.clone();
    for entry in &opts.set_env {
        let (name, value) = entry
            .split_once('=')
            .filter(|(name, _)| is_env_name(name))
            .ok_or_else(|| {
                format!(
                    "--set-env {entry:?}: expected NAME=VALUE, NAME of letters, digits and \"_\" \
                     not starting with a digit"
                )
            })?;
        overlay.set_env.insert(name.to_string(), value.to_string());
    }
    let spec = LoadSpec {
        source: source::policy_source(opts.policy.as_deref(), opts.policy_json.as_deref())?,
        overlay,
        overlay_base: cwd,
    };
    bunker_policy::load_with_origins(&spec, &HostEnv::from_process()).map_err(|e| e.to_string())
}

/// A portable environment variable name (POSIX): what a shell can read back.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
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
    let sandbox_path = preflight::sandbox_search_path(&policy);
    let Some(found) = preflight::find_program(Path::new(program), &sandbox_path) else {
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

/// A result for runs that never started.
fn policy_failure(message: String) -> RunResult {
    RunResult::refused(ApiError::new(ErrorCode::PolicyInvalid, message))
}

/// Where the report goes: any of stderr (`--report json` alone), a descriptor, a file.
struct ReportTargets {
    stderr: bool,
    /// A duplicate of `--report-fd N`, taken before the run, written whatever the fd is.
    fd: Option<(i32, File)>,
    file: Option<(PathBuf, File)>,
}

impl ReportTargets {
    fn open(opts: &RunOpts) -> Result<ReportTargets, String> {
        let mut fd = match opts.report_fd {
            Some(n) => {
                let owned = bunker_sys::fd::dup_cloexec(n)
                    .map_err(|e| format!("--report-fd {n}: not an open descriptor ({e})"))?;
                Some((n, File::from(owned)))
            }
            None => None,
        };
        // `--report-fd 2` (or a descriptor on the same pipe or file as stderr) is stderr: the
        // report then goes through the console, which starts it on a fresh line.
        let fd_is_stderr = fd
            .as_ref()
            .is_some_and(|(_, f)| same_file(f, &std::io::stderr()));
        if fd_is_stderr {
            fd = None;
        }
        let file = match &opts.report_file {
            Some(path) => {
                // Not through a symlink: a sandbox that could write the directory (an earlier
                // run's) may have planted one there, and bunker may be root.
                let f = bunker_sys::fd::create_no_follow(path)
                    .map(File::from)
                    .map_err(|e| {
                        let link = if e.errno_name() == "ELOOP" {
                            " (a symlink: bunker does not write the report through one)"
                        } else {
                            ""
                        };
                        format!("--report-file {}: {e}{link}", path.display())
                    })?;
                Some((path.clone(), f))
            }
            None => None,
        };
        Ok(ReportTargets {
            stderr: fd_is_stderr
                || (opts.report.is_some() && opts.report_fd.is_none() && file.is_none()),
            fd,
            file,
        })
    }

    /// Writes the report everywhere it was asked for and returns the exit code: `code`, or
    /// [`exit::REPORT_ERROR`] when a write failed (the caller would otherwise read nothing and
    /// take the exit code for the run's).
    fn emit(&self, console: &Console, result: &RunResult, code: i32) -> i32 {
        let line = match result.to_report_line() {
            Ok(line) => line,
            Err(e) => {
                console.notice(&format!("bunker: cannot serialize the report: {e}"));
                return exit::REPORT_ERROR;
            }
        };
        let mut failed = Vec::new();
        if self.stderr {
            if let Err(e) = console.write_line(&line) {
                failed.push(format!("stderr: {e}"));
            }
        }
        if let Some((n, f)) = &self.fd {
            if let Err(e) = write_report(f, &line) {
                failed.push(format!("--report-fd {n}: {e}"));
            }
        }
        if let Some((path, f)) = &self.file {
            if let Err(e) = write_report_file(path, f, &line) {
                failed.push(format!("--report-file {}: {e}", path.display()));
            }
        }
        if failed.is_empty() {
            return code;
        }
        console.notice(&format!(
            "bunker: cannot write the report ({}); the run itself ended with {}, exit code {code}",
            failed.join("; "),
            status_name(result.status)
        ));
        exit::REPORT_ERROR
    }
}

/// Whether two descriptors refer to the same file (or pipe, or socket).
fn same_file(a: &File, b: &impl AsFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let b = b.as_fd().try_clone_to_owned().map(File::from);
    match (a.metadata(), b.and_then(|b| b.metadata())) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Writes the report line whole, also on a descriptor the caller made non-blocking (a socket
/// or FIFO): a full buffer is waited out, not taken for an error.
/// Writes the report to the `--report-file` opened at the start. A regular file may lie in a
/// directory the sandbox could write: then the program may have filled it (the report would be
/// followed by its lines) or put another file at its path (the caller would read that one).
/// So the file is emptied and written from its start, and must still be the one at `path`.
fn write_report_file(path: &Path, f: &File, line: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let ours = f.metadata()?;
    if !ours.is_file() {
        return write_report(f, line);
    }
    let there = std::fs::symlink_metadata(path);
    if !there.is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino())) {
        return Err(std::io::Error::other(
            "it was replaced during the run (is its directory writable in the sandbox?): what \
             is there now is not bunker's report",
        ));
    }
    f.set_len(0)?;
    f.write_all_at(format!("{line}\n").as_bytes(), 0)
}

fn write_report(mut f: &File, line: &str) -> std::io::Result<()> {
    let bytes = format!("{line}\n").into_bytes();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match f.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                bunker_sys::event::poll_with(&[(f.as_fd(), Interest::Write)], None)
                    .map_err(std::io::Error::other)?;
            }
            Err(e) => return Err(e),
        }
    }
    f.flush()
}
