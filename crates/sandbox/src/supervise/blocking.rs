//! The blocking driver (the CLI's): one thread, one `ppoll` over what the machine waits for,
//! with a timeout to its next wake-up at nanosecond precision.

use std::time::Instant;

use bunker_policy::Policy;
use bunker_sys::event;

use super::machine::Supervision;
use super::Supervised;
use crate::error::SandboxError;
use crate::result::RunResult;

/// Runs until the sandbox is gone; kills it on timeout or limit; reaps init; returns the result.
/// Init is always killed and reaped and the cgroup removed before this returns, error or not.
pub fn supervise(sandbox: Supervised, policy: &Policy) -> Result<RunResult, SandboxError> {
    // Something that would otherwise sit between the deadline and the moment init is seen
    // gone: the kernel's timer slack on our poll timeout (50 µs by default; restored below,
    // it is a per-thread setting of the caller's). Best effort: without it the kill only takes
    // a little longer. (The machine holds the other: the mount namespace's reference.)
    let slack = event::timer_slack().ok();
    let _ = event::set_timer_slack(1);
    let mut machine = Supervision::new(sandbox, policy);
    let looped = machine.start().and_then(|()| run(&mut machine));
    // Whatever happened above, nothing of the sandbox may outlive this function.
    if looped.is_err() {
        machine.kill_outright();
    }
    let reaped = event::wait_pidfd(machine.pidfd(), true);
    if let Some(slack) = slack {
        let _ = event::set_timer_slack(slack);
    }
    match looped {
        Ok(()) => machine.finish(reaped),
        Err(e) => {
            machine.abandon();
            Err(e)
        }
    }
}

fn run(machine: &mut Supervision<'_>) -> Result<(), SandboxError> {
    loop {
        let now = Instant::now();
        machine.on_time(now)?;
        if machine.is_done() {
            return Ok(());
        }
        let wait = machine
            .next_wake()
            .map(|t| t.saturating_duration_since(now));
        let wanted = machine.waits_for(now);
        let fds: Vec<_> = wanted
            .iter()
            .map(|&(fd, interest, _)| (fd, interest))
            .collect();
        let ready = event::poll_with(&fds, wait).map_err(|source| SandboxError::Setup {
            step: "poll the sandbox".to_string(),
            source,
        })?;
        let roles: Vec<_> = wanted.iter().map(|&(_, _, role)| role).collect();
        drop(fds);
        drop(wanted);
        for (role, r) in roles.into_iter().zip(ready) {
            if r.any() {
                machine.on_ready(role)?;
            }
        }
    }
}

/// The driver against real processes (no sandbox: a plain child stands in for init).
#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::time::Duration;

    use super::super::stand_in::{cgroup_for, policy, say, start, Recorder};
    use super::super::OutputMode;
    use super::*;
    use crate::events::RunEvent;
    use crate::init::InitMessage;
    use crate::limits::SandboxCgroup;
    use crate::result::Status;
    use bunker_api::Data;
    use std::sync::Arc;

    #[test]
    fn captured_output_that_is_not_utf8_comes_back_exactly() {
        let p = policy(|_| {});
        let (sup, init, _child) = start(r"printf 'a\377\000b'; exit 0", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        drop(init);
        let r = supervise(sup, &p).unwrap();
        let data = r.stdout.data.unwrap();
        assert!(matches!(data, Data::Base64(_)), "{data:?}");
        assert_eq!(data.to_bytes().unwrap(), b"a\xff\x00b");
    }

    #[test]
    fn loop_reports_a_clean_exit_with_captured_output() {
        let p = policy(|_| {});
        let (sup, init, _child) = start("echo out; echo err >&2; exit 0", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        drop(init);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.stdout.data, Some(Data::Utf8("out\n".into())));
        assert_eq!(r.stderr.data, Some(Data::Utf8("err\n".into())));
        assert!(!r.stdout.truncated);
    }

    #[test]
    fn loop_kills_at_the_timeout() {
        let p = policy(|l| l.timeout = Some(Duration::from_millis(150)));
        let (sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(r.wall_ms >= 150.0 && r.wall_ms < 5000.0, "{}", r.wall_ms);
    }

    /// A non-blocking pipe standing in for a termination self-pipe, with `signal` written in.
    fn termination_pipe(signal: i32) -> BorrowedFd<'static> {
        let (r, w) = bunker_sys::fd::pipe().unwrap();
        event::set_nonblocking(r.as_fd()).unwrap();
        std::fs::File::from(w).write_all(&[signal as u8]).unwrap();
        let r: &'static OwnedFd = Box::leak(Box::new(r));
        r.as_fd()
    }

    #[test]
    fn a_signal_in_the_given_termination_pipe_ends_the_run() {
        let p = policy(|l| l.timeout = Some(Duration::from_secs(30)));
        let (mut sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        sup.termination = Some(termination_pipe(libc::SIGTERM));
        say(&init, &InitMessage::Started);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Signal, "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGTERM));
        assert_eq!(r.error_code, Some(bunker_api::ErrorCode::Terminated));
    }

    #[test]
    fn without_a_termination_pipe_the_process_wide_one_is_not_read() {
        event::install_termination_handler().unwrap();
        // The handler writes SIGTERM into the process-wide pipe (this test's process only).
        event::kill(std::process::id() as i32, libc::SIGTERM).unwrap();
        let p = policy(|l| l.timeout = Some(Duration::from_millis(200)));
        let (sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        say(&init, &InitMessage::Started);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        // Control: the same pipe, given, ends the run.
        let (mut sup, init, _child) = start("exec sleep 100", SandboxCgroup::none());
        sup.termination = event::termination_fd();
        say(&init, &InitMessage::Started);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Signal, "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGTERM));
    }

    #[test]
    fn output_as_events_comes_in_order_and_stops_at_the_cap() {
        let p = policy(|l| l.output = 10_000);
        let recorder = Arc::new(Recorder::default());
        // 30,000 bytes on stdout, then stderr: only the first 10,000 of stdout are delivered.
        let (mut sup, init, _child) = start(
            "head -c 30000 /dev/zero | tr '\\0' x; echo late >&2",
            SandboxCgroup::none(),
        );
        sup.output = OutputMode::Events;
        sup.observer = Some(recorder.clone());
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(recorder.stream(0), vec![b'x'; 10_000]);
        assert_eq!(recorder.stream(1), b"");
        assert_eq!(
            (r.stdout.bytes, r.stdout.kept, r.stdout.data),
            (30_000, 10_000, None)
        );
        assert_eq!((r.stderr.bytes, r.stderr.kept, r.stderr.data), (5, 0, None));
        // The limit is reported after the last chunk.
        let events = recorder.events();
        let hit = events
            .iter()
            .position(|e| matches!(e, RunEvent::LimitHit { .. }))
            .unwrap();
        assert!(events[hit + 1..]
            .iter()
            .all(|e| !matches!(e, RunEvent::Stdout { .. } | RunEvent::Stderr { .. })));
    }

    #[test]
    fn output_as_events_under_the_cap_is_all_delivered_per_stream() {
        let p = policy(|_| {});
        let recorder = Arc::new(Recorder::default());
        let (mut sup, init, _child) = start(
            r"printf 'a\377'; echo err >&2; echo out",
            SandboxCgroup::none(),
        );
        sup.output = OutputMode::Events;
        sup.observer = Some(recorder.clone());
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(recorder.stream(0), b"a\xffout\n");
        assert_eq!(recorder.stream(1), b"err\n");
        assert_eq!((r.stdout.bytes, r.stdout.data), (6, None));
    }

    #[test]
    fn loop_caps_output_and_counts_the_rest() {
        let p = policy(|l| l.output = 10_000);
        let (sup, init, _child) = start(
            "head -c 1000000 /dev/zero | tr '\\0' x",
            SandboxCgroup::none(),
        );
        say(
            &init,
            &InitMessage::Exited {
                code: Some(0),
                signal: None,
            },
        );
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!((r.stdout.bytes, r.stdout.kept), (1_000_000, 10_000));
        assert!(r.stdout.truncated);
        assert_eq!(
            r.stdout.data.and_then(|d| d.to_bytes()).map(|b| b.len()),
            Some(10_000)
        );
    }

    #[test]
    fn loop_kills_an_endless_writer_on_overflow() {
        let p = policy(|l| {
            l.output = 1000;
            l.kill_on_output_overflow = true;
            l.timeout = Some(Duration::from_secs(30));
        });
        let (sup, _init, _child) = start("exec yes", SandboxCgroup::none());
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::OutputLimit, "{r:?}");
        assert_eq!(r.stdout.kept, 1000);
        assert!(r.stdout.bytes > 1000);
    }

    #[test]
    fn loop_survives_an_endless_writer_until_the_timeout() {
        let p = policy(|l| {
            l.output = 1000;
            l.timeout = Some(Duration::from_millis(300));
        });
        let (sup, _init, _child) = start("exec yes", SandboxCgroup::none());
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert_eq!(r.stdout.kept, 1000);
        assert!(r.stdout.bytes > 100_000, "{}", r.stdout.bytes);
    }

    #[test]
    fn loop_kills_at_the_cpu_time_limit() {
        let p = policy(|l| {
            l.cpu_time = Some(Duration::from_millis(300));
            l.timeout = Some(Duration::from_secs(20));
        });
        let Some(cg) = cgroup_for(&p) else {
            return crate::skip::skip("no cgroup");
        };
        let (sup, _init, _child) = start("while :; do :; done", cg);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::CpuTime, "{r:?}");
        assert!(r.cpu_ms >= 300.0 && r.cpu_ms < 2000.0, "{}", r.cpu_ms);
    }

    #[test]
    fn loop_reports_an_oom_kill_with_the_peak() {
        let p = policy(|l| {
            l.memory = Some(40 << 20);
            l.timeout = Some(Duration::from_secs(20));
        });
        let Some(cg) = cgroup_for(&p) else {
            return crate::skip::skip("no cgroup");
        };
        let dirs = cg.paths();
        let (sup, _init, _child) = start("python3 -c \"x = b'a' * (300 << 20)\"; sleep 100", cg);
        let r = supervise(sup, &p).unwrap();
        assert_eq!(r.status, Status::MemoryLimit, "{r:?}");
        let peak = r.peak_memory_bytes.unwrap();
        assert!(peak > 20 << 20 && peak <= 40 << 20, "{peak}");
        for d in dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
