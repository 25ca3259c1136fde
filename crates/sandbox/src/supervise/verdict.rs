//! The verdict: how a run ended, decided from what the supervisor observed ([`Observed`]) and
//! the policy's limits, with the messages people read. Pure: no I/O, no clock.

use std::time::Duration;

use bunker_api::exit::{CANNOT_EXECUTE, NOT_FOUND};
use bunker_api::ErrorCode;
use bunker_policy::Limits;
use bunker_sys::event::ChildExit;

use super::KillReason;
use crate::init::InitMessage;
use crate::result::Status;

/// What init reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Messages {
    pub started: bool,
    /// A failed setup step: its code, the step, and `step: detail`.
    pub setup_failed: Option<(ErrorCode, String, String)>,
    /// The exec failure's message.
    pub exec_failed: Option<String>,
    /// The program's end: (exit code, signal).
    pub exited: Option<(Option<i32>, Option<i32>)>,
}

impl Messages {
    pub(super) fn record(&mut self, msg: InitMessage) {
        match msg {
            InitMessage::Started => self.started = true,
            InitMessage::SetupFailed {
                step,
                errno,
                detail,
                code,
            } => {
                let errno = if errno != 0 {
                    format!(" ({})", bunker_sys::error::errno_name(errno))
                } else {
                    String::new()
                };
                let message = format!("{step}: {detail}{errno}");
                self.setup_failed.get_or_insert((code, step, message));
            }
            InitMessage::ExecFailed { detail, .. } => {
                self.exec_failed.get_or_insert(detail);
            }
            InitMessage::Exited { code, signal } => {
                self.exited.get_or_insert((code, signal));
            }
            // Setup-phase messages (Ready) belong to spawn.rs.
            _ => {}
        }
    }
}

/// Everything the verdict is made of.
#[derive(Debug, Clone)]
pub struct Observed {
    pub kill: Option<KillReason>,
    pub messages: Messages,
    pub init_exit: ChildExit,
    pub oom_kills: u64,
    pub pids_hits: u64,
    pub cpu: Duration,
}

/// Status, code, signal and message of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    /// Set with `error`: its stable code.
    pub error_code: Option<ErrorCode>,
    /// For a setup failure: the step that failed.
    pub error_step: Option<String>,
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGXCPU => "SIGXCPU".into(),
        libc::SIGXFSZ => "SIGXFSZ".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGSYS => "SIGSYS".into(),
        n => format!("signal {n}"),
    }
}

fn human_bytes(n: u64) -> String {
    let units: [(u64, &str); 4] = [
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "kB"),
    ];
    for (size, unit) in units {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

/// Decides how the run ended. Order matters: a kill by bunker explains everything after it;
/// a setup failure means the program never ran; an OOM kill explains a dead program; the pids
/// limit explains a failing one.
pub fn classify(o: &Observed, limits: &Limits) -> Verdict {
    let v = |status, error_code, exit_code, signal, error: String| Verdict {
        status,
        exit_code,
        signal,
        error: Some(error),
        error_code: Some(error_code),
        error_step: None,
    };
    // An exec failure, or init's own end with the exec failure's code.
    let exec_code = |code: Option<i32>| match code {
        Some(NOT_FOUND) => ErrorCode::CommandNotFound,
        _ => ErrorCode::CannotExecute,
    };
    if let Some(kill) = o.kill {
        let killed = Some(libc::SIGKILL);
        let mut verdict = match kill {
            KillReason::Timeout => v(
                Status::Timeout,
                ErrorCode::LimitTimeout,
                None,
                killed,
                format!(
                    "killed at the {} timeout",
                    span(limits.timeout.unwrap_or_default())
                ),
            ),
            KillReason::CpuTime => v(
                Status::CpuTime,
                ErrorCode::LimitCpuTime,
                None,
                killed,
                format!(
                    "killed after {} of CPU time (limit {})",
                    span(o.cpu),
                    span(limits.cpu_time.unwrap_or_default())
                ),
            ),
            KillReason::MemoryLimit => v(
                Status::MemoryLimit,
                ErrorCode::LimitMemory,
                None,
                killed,
                memory_message(limits),
            ),
            KillReason::MemoryThrash => v(
                Status::MemoryLimit,
                ErrorCode::LimitMemory,
                None,
                killed,
                format!(
                    "{}: its working set does not fit (at the limit it kept faulting back in the \
                     pages it lost; a cold page cache charges a runtime's own code to it too)",
                    memory_message(limits)
                ),
            ),
            KillReason::OutputLimit => v(
                Status::OutputLimit,
                ErrorCode::LimitOutput,
                None,
                killed,
                format!(
                    "killed when its output exceeded {} (limits.output)",
                    human_bytes(limits.output)
                ),
            ),
            KillReason::Cancelled => v(
                Status::Signal,
                ErrorCode::Cancelled,
                None,
                killed,
                "cancelled: the sandbox was killed (its client asked, or went away)".to_string(),
            ),
            KillReason::Terminated(sig) => v(
                Status::Signal,
                ErrorCode::Terminated,
                None,
                Some(sig),
                format!(
                    "bunker received {}: the sandbox was killed",
                    signal_name(sig)
                ),
            ),
        };
        // A fork bomb usually ends at the timeout: say that the pids limit held it.
        if o.pids_hits > 0 {
            if let Some(error) = verdict.error.as_mut() {
                error.push_str(&format!("; {}", pids_message(o, limits)));
            }
        }
        return verdict;
    }
    if let Some((code, step, failed)) = &o.messages.setup_failed {
        return Verdict {
            error_step: Some(step.clone()),
            ..v(Status::SetupError, *code, None, None, failed.clone())
        };
    }
    let (code, signal) = match o.messages.exited {
        Some(end) => end,
        // Init died without reporting: its own end is all there is.
        None => (o.init_exit.code, o.init_exit.signal),
    };
    if o.oom_kills > 0 {
        return v(
            Status::MemoryLimit,
            ErrorCode::LimitMemory,
            code,
            signal,
            memory_message(limits),
        );
    }
    if let Some(detail) = &o.messages.exec_failed {
        return v(Status::Exit, exec_code(code), code, None, detail.clone());
    }
    if o.messages.exited.is_none() {
        let how = match (o.init_exit.code, o.init_exit.signal) {
            (_, Some(s)) => format!("was killed by {}", signal_name(s)),
            (Some(c), _) => format!("exited with code {c}"),
            _ => "ended".to_string(),
        };
        let error = format!("the sandbox's init {how} before the program ended");
        return match signal {
            Some(s) => v(
                Status::Signal,
                ErrorCode::InternalError,
                None,
                Some(s),
                error,
            ),
            None => match code {
                Some(NOT_FOUND | CANNOT_EXECUTE) => {
                    v(Status::SetupError, exec_code(code), code, None, error)
                }
                _ => v(
                    Status::SetupError,
                    ErrorCode::SetupFailed,
                    code,
                    None,
                    error,
                ),
            },
        };
    }
    let cpu_exhausted = limits.cpu_time.is_some_and(|limit| o.cpu >= limit);
    match (code, signal) {
        (Some(0), _) => Verdict {
            status: Status::Ok,
            exit_code: Some(0),
            signal: None,
            error: None,
            error_code: None,
            error_step: None,
        },
        (_, Some(s)) if s == libc::SIGXCPU || (s == libc::SIGKILL && cpu_exhausted) => v(
            Status::CpuTime,
            ErrorCode::LimitCpuTime,
            None,
            Some(s),
            format!(
                "killed by RLIMIT_CPU ({}) after {} of CPU time (limit {})",
                signal_name(s),
                span(o.cpu),
                span(limits.cpu_time.unwrap_or_default())
            ),
        ),
        (code, signal) if o.pids_hits > 0 => v(
            Status::PidsLimit,
            ErrorCode::LimitPids,
            code,
            signal,
            pids_message(o, limits),
        ),
        (_, Some(s)) => Verdict {
            status: Status::Signal,
            exit_code: None,
            signal: Some(s),
            error: None,
            error_code: None,
            error_step: None,
        },
        (code, None) => Verdict {
            status: Status::Exit,
            exit_code: code,
            signal: None,
            error: None,
            error_code: None,
            error_step: None,
        },
    }
}

fn pids_message(o: &Observed, limits: &Limits) -> String {
    format!(
        "the pids limit ({}) refused {} fork(s)",
        limits
            .pids
            .map_or_else(|| "?".to_string(), |p| p.to_string()),
        o.pids_hits
    )
}

fn memory_message(limits: &Limits) -> String {
    match limits.memory {
        Some(m) => format!("killed by the memory limit ({})", human_bytes(m)),
        None => "killed by the out-of-memory killer".to_string(),
    }
}

fn span(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            output: 10,
            ..Limits::default()
        }
    }

    fn exit(code: Option<i32>, signal: Option<i32>) -> ChildExit {
        ChildExit {
            code,
            signal,
            cpu: Duration::ZERO,
            max_rss_bytes: 0,
        }
    }

    fn observed(exited: Option<(Option<i32>, Option<i32>)>) -> Observed {
        Observed {
            kill: None,
            messages: Messages {
                started: true,
                exited,
                ..Messages::default()
            },
            init_exit: exit(exited.and_then(|e| e.0), exited.and_then(|e| e.1)),
            oom_kills: 0,
            pids_hits: 0,
            cpu: Duration::ZERO,
        }
    }

    #[test]
    fn plain_exits() {
        let l = limits();
        assert_eq!(
            classify(&observed(Some((Some(0), None))), &l).status,
            Status::Ok
        );
        let v = classify(&observed(Some((Some(3), None))), &l);
        assert_eq!((v.status, v.exit_code), (Status::Exit, Some(3)));
        let v = classify(&observed(Some((None, Some(libc::SIGSEGV)))), &l);
        assert_eq!((v.status, v.signal), (Status::Signal, Some(libc::SIGSEGV)));
    }

    #[test]
    fn bunkers_kill_explains_the_end() {
        let l = Limits {
            timeout: Some(Duration::from_millis(100)),
            ..limits()
        };
        let mut o = observed(None);
        o.init_exit = exit(None, Some(libc::SIGKILL));
        o.kill = Some(KillReason::Timeout);
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::Timeout);
        assert_eq!(v.error.as_deref(), Some("killed at the 100ms timeout"));
        o.kill = Some(KillReason::Terminated(libc::SIGTERM));
        let v = classify(&o, &l);
        assert_eq!((v.status, v.signal), (Status::Signal, Some(libc::SIGTERM)));
        o.kill = Some(KillReason::OutputLimit);
        assert_eq!(classify(&o, &l).status, Status::OutputLimit);
        o.kill = Some(KillReason::Cancelled);
        let v = classify(&o, &l);
        assert_eq!((v.status, v.signal), (Status::Signal, Some(libc::SIGKILL)));
        assert_eq!(v.error_code, Some(ErrorCode::Cancelled));
        // A contained fork bomb that ran into the timeout.
        o.kill = Some(KillReason::Timeout);
        o.pids_hits = 12;
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::Timeout);
        assert!(v
            .error
            .unwrap()
            .ends_with("; the pids limit (?) refused 12 fork(s)"));
    }

    #[test]
    fn oom_kill_is_a_memory_limit_even_without_a_kill_by_bunker() {
        let l = Limits {
            memory: Some(50 << 20),
            ..limits()
        };
        let mut o = observed(Some((None, Some(libc::SIGKILL))));
        o.oom_kills = 1;
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::MemoryLimit);
        assert_eq!(
            v.error.as_deref(),
            Some("killed by the memory limit (50 MiB)")
        );
        // v2 oom.group takes init too: no Exited message at all.
        let mut o = observed(None);
        o.init_exit = exit(None, Some(libc::SIGKILL));
        o.oom_kills = 3;
        assert_eq!(classify(&o, &l).status, Status::MemoryLimit);
    }

    #[test]
    fn a_thrash_kill_is_a_memory_limit_that_says_the_working_set_does_not_fit() {
        let l = Limits {
            memory: Some(50 << 20),
            ..limits()
        };
        let mut o = observed(Some((None, Some(libc::SIGKILL))));
        o.kill = Some(KillReason::MemoryThrash);
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::MemoryLimit);
        let error = v.error.unwrap();
        assert!(
            error.starts_with("killed by the memory limit (50 MiB): its working set does not fit"),
            "{error}"
        );
    }

    #[test]
    fn pids_limit_explains_a_failure_not_a_success() {
        let l = Limits {
            pids: Some(64),
            ..limits()
        };
        let mut o = observed(Some((Some(1), None)));
        o.pids_hits = 5;
        let v = classify(&o, &l);
        assert_eq!((v.status, v.exit_code), (Status::PidsLimit, Some(1)));
        assert!(v.error.unwrap().contains("64"));
        let mut o = observed(Some((Some(0), None)));
        o.pids_hits = 5;
        assert_eq!(classify(&o, &l).status, Status::Ok);
    }

    #[test]
    fn rlimit_cpu_backstop_is_cpu_time() {
        let l = Limits {
            cpu_time: Some(Duration::from_secs(1)),
            ..limits()
        };
        let o = observed(Some((None, Some(libc::SIGXCPU))));
        assert_eq!(classify(&o, &l).status, Status::CpuTime);
        let mut o = observed(Some((None, Some(libc::SIGKILL))));
        o.cpu = Duration::from_millis(2500);
        assert_eq!(classify(&o, &l).status, Status::CpuTime);
    }

    #[test]
    fn setup_and_exec_failures() {
        let l = limits();
        let mut o = observed(None);
        o.messages.setup_failed = Some((
            ErrorCode::SetupFailed,
            "bind mount /x → /x".into(),
            "bind mount /x → /x: ENOENT".into(),
        ));
        let v = classify(&o, &l);
        assert_eq!(v.status, Status::SetupError);
        assert_eq!(v.error_code, Some(ErrorCode::SetupFailed));
        assert_eq!(v.error_step.as_deref(), Some("bind mount /x → /x"));
        let mut o = observed(Some((Some(127), None)));
        o.messages.exec_failed = Some("nope: command not found".into());
        let v = classify(&o, &l);
        assert_eq!((v.status, v.exit_code), (Status::Exit, Some(127)));
        assert_eq!(v.error.as_deref(), Some("nope: command not found"));
        assert_eq!(v.error_code, Some(ErrorCode::CommandNotFound));
        // Init died without a word.
        let mut o = observed(None);
        o.init_exit = exit(Some(1), None);
        assert_eq!(classify(&o, &l).status, Status::SetupError);
    }

    #[test]
    fn messages_keep_the_first_report() {
        let mut m = Messages::default();
        m.record(InitMessage::Started);
        m.record(InitMessage::Exited {
            code: Some(2),
            signal: None,
        });
        m.record(InitMessage::Exited {
            code: Some(5),
            signal: None,
        });
        assert!(m.started);
        assert_eq!(m.exited, Some((Some(2), None)));
        m.record(InitMessage::SetupFailed {
            step: "start the program".into(),
            errno: libc::EAGAIN,
            detail: "fork".into(),
            code: ErrorCode::SetupFailed,
        });
        assert_eq!(
            m.setup_failed,
            Some((
                ErrorCode::SetupFailed,
                "start the program".to_string(),
                "start the program: fork (EAGAIN)".to_string()
            ))
        );
    }
}
