//! Builds the sandbox and runs the program: the one place where the setup order is written down.
//!
//! **Supervisor** (single-threaded at this point — it clones):
//! 1. `landlock::probe`: fail closed early when landlock is required and the kernel lacks it.
//! 2. The mount plan, the program's environment and argv are computed (pure, before the clone).
//!    With a memory limit, the program's executable (`argv[0]` on the sandbox's PATH) and its
//!    ELF interpreter are made resident in the page cache (`prewarm.rs`), so that their pages
//!    are charged to the supervisor's cgroup, not the sandbox's: one `cachestat` per file when
//!    they are cached already.
//! 3. The program's stdin (`stdin.rs`): `/dev/null`, a read-only file or FIFO passed on, or a
//!    relay — a pipe, or with `kernel.tty` a pty of bunker's — whenever the caller's stdin is a
//!    terminal or anything else the program could write through. Then pipes for stdout and
//!    stderr; a SOCK_SEQPACKET control socket pair; a lifeline pipe whose write end only the
//!    supervisor holds.
//! 4. `clone(CLONE_NEWUSER|NEWPID|NEWNS|NEWUTS | CLONE_PIDFD)` (as the policy's
//!    `kernel.namespaces` say), fork-like, onto the supervisor's CPU (both take the caller's
//!    affinity back right after): the child becomes the sandbox's init (pid 1). The network and
//!    IPC namespaces are made by init instead (its step 1).
//! 5. Id maps written (`idmap.rs`: rootless → the caller's ids with setgroups denied; as root →
//!    65534, never host root). As root, the grants are then opened with root's rights in init's
//!    mount namespace and their trees cloned detached (`grants::open_in_namespace_of`), idmapped
//!    to their owners (`grants::map_to_owners`), and write grants the sandbox cannot write are
//!    noted.
//! 6. `SandboxCgroup::prepare` (the cgroup under the supervisor's own, limits written) and
//!    `prepare_join` (init's pid written to `cgroup.procs` on v2; the `tasks` files of the v1
//!    hierarchies opened); then the release, a datagram on the control socket carrying those
//!    files, through which init moves *itself* (its step 7); as root, a second datagram carries
//!    the grant trees (init's step 4). Writing a pid to a v1
//!    `cgroup.procs` waits for an RCU grace period (5–15 ms here); a single-threaded process
//!    moving its own thread does not. The cgroup is made while init waits (its namespace
//!    thread is busy on the other core meanwhile): made beside init's mounts it held init off
//!    the CPU instead. Nothing of the program runs before init is in the cgroup, and a cgroup
//!    that cannot be made kills init and fails the run.
//! 7. Wait for init's first message: `SetupFailed` → a setup error naming the step; `Ready` →
//!    the proxy listeners it carries go to `Egress::start`.
//! 8. The observer hears `RunEvent::Started` (what is enforced, before any output is relayed);
//!    `supervise::supervise` until the sandbox is gone (relaying the stdin of step 3);
//!    `Egress::finish` records into the result.
//!
//! **Init** (`init.rs`, in the new namespaces):
//! 1. Init's fds 0–2 become the program's stdin and output (step 3): nothing of the caller's
//!    stdio stays open inside. Then a thread of init's unshares the network and IPC namespaces (those of them in
//!    `kernel.namespaces`) — owned by the sandbox's user namespace, as ones made by the clone
//!    would be — and brings `lo` up, beside the main thread's steps 2–4 (`NamespaceThread`: the
//!    costliest namespaces to make, ~1.5 ms of CPU here, made on the second core rather than
//!    in the clone). Then init waits for the release (the supervisor dying first closes the
//!    socket → exit).
//! 2. `setresgid(0)`, `setgroups([])` (as root), `setresuid(0)` inside the user namespace.
//! 3. `PR_SET_PDEATHSIG(SIGKILL)` — after the id change, which clears it — then check the
//!    lifeline is not at end of file (the supervisor died in between → exit).
//! 4. Mounts (`mounts.rs`): / private; policy paths opened without following symlinks
//!    (rootless; as root the supervisor's trees are used); a tmpfs root; grants attached
//!    (read-only unless in `allow.write`; nosuid, nodev; noexec unless in `allow.exec`);
//!    private /tmp (noexec); minimal /dev; fresh /proc with /proc/sys & co. read-only and the
//!    host's identifiers masked; deny masks; pivot_root; old root detached; the root tmpfs
//!    remounted read-only. Then the landlock ruleset is built
//!    (paths opened in the new root) and the seccomp filter compiled, both enforced in step 8.
//! 5. Join the thread's namespaces (the thread has ended: init is single-threaded again); the
//!    proxy listeners on 127.0.0.1:3128 and :1080 when `allow.net` is non-empty.
//! 6. `sethostname(kernel.hostname)`; chdir to the working directory.
//! 7. Join the cgroup: "0" written to each `tasks` file of the release, the files closed; then
//!    `unshare(CLONE_NEWCGROUP)`. Every namespace exists now: the per-user kernel counters of
//!    the user namespace are bounded (`user_counters.rs`).
//! 8. Init restricts itself, so no unfiltered helper is left in the sandbox: not dumpable;
//!    rlimits; no_new_privs; landlock; securebits locked; every capability dropped (bounding,
//!    ambient, inheritable, effective, permitted); seccomp last.
//! 9. `Ready` (with the listeners) to the supervisor.
//! 10. `setsid`: init (and so the program) leaves the caller's session and process group, so
//!     no process-group call from inside (`kill(0)`, `setpriority(PRIO_PGRP, 0)`,
//!     `ioprio_set(IOPRIO_WHO_PGRP, 0)`) reaches a process outside, there is no controlling
//!     terminal, and the sandbox has its own scheduler autogroup (whose nice value
//!     `/proc/self/autogroup` sets). Here rather than first: entering a new autogroup costs
//!     scheduling latency under load (median 11.3 → 8.3 ms wall here at load 9), and until now
//!     nothing of the program has run. Then start the program with `process::spawn` (a `CLONE_VM|CLONE_VFORK` child, posix_spawn-like:
//!     no copy of init's memory; created on init's CPU, it takes the caller's affinity back
//!     before its exec): stdio set up (init's fds 0–2; with a pty, the program leads a session
//!     of its own whose controlling terminal it is), only fds 0–2 kept,
//!     signal mask and dispositions reset, the cleared environment, `argv[0]` looked up on the
//!     sandbox's PATH. The spawn returns an exec failure → `ExecFailed` (127 not found, 126
//!     otherwise).
//! 11. Reap every child; forward SIGTERM/INT/HUP/QUIT/USR1/USR2 to the program; when it ends,
//!     `Exited`; then (and on the supervisor's teardown signal with its request waiting on the
//!     control socket, which the program cannot forge — its way of killing the
//!     sandbox: `TearingDown` once the kill is done) kill and reap every other process of the
//!     pid namespace, so their CPU time is in init's rusage, and exit.
//!
//! The supervisor dying, even by SIGKILL, sends init SIGKILL (step 3), and the pid namespace
//! dies with its init.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Instant;

use bunker_policy::{Namespace, Policy};
use bunker_sys::process::{self, Forked};
use bunker_sys::{fd, SysError};

use crate::egress::Egress;
use crate::error::SandboxError;
use crate::events::RunEvent;
use crate::idmap::{self, IdMode};
use crate::init::{self, InitContext, InitMessage};
use crate::limits::SandboxCgroup;
use crate::result::{Enforced, LayerStatus, RunResult};
use crate::supervise::{self, Supervised};
use crate::{env, grants, landlock, mounts, RunRequest};
use bunker_api::ErrorCode;

/// The clone flags for the policy's namespaces (cgroup is unshared later, by init).
pub fn clone_flags(namespaces: &[Namespace]) -> libc::c_int {
    namespaces
        .iter()
        .map(|ns| match ns {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Cgroup => 0,
        })
        .fold(0, |a, f| a | f)
}

fn io_err(context: &str) -> impl FnOnce(SysError) -> SandboxError + '_ {
    move |e| SandboxError::Setup {
        step: context.to_string(),
        source: e,
    }
}

fn cstring(what: &str, bytes: Vec<u8>) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::Init {
        step: "prepare the program".into(),
        detail: format!("{what} contains a NUL byte"),
    })
}

/// What this caller can never build under `policy`, whatever else the host offers (`bunker
/// check` asks too): without a user namespace only root can make the sandbox's new root.
pub fn caller_refusal(policy: &Policy) -> Option<SandboxError> {
    (!policy.kernel.namespaces.contains(&Namespace::User) && IdMode::current() != IdMode::Root)
        .then(|| SandboxError::Unsupported {
            layer: "kernel.namespaces".into(),
            reason: "without \"user\" in kernel.namespaces only root can build a sandbox".into(),
        })
}

/// Builds the sandbox from `req.policy`, runs `req.argv` in it, and returns the result.
/// Must be called while the process is single-threaded, and from a thread that lives until
/// the sandbox has ended: init's parent-death signal fires when the *thread* that cloned it
/// exits. `egress` serves the proxy listeners when `allow.net` is non-empty.
///
/// Every way a run can end is a [`RunResult`]: a sandbox that could not be built, whether the
/// step failed before init was cloned, inside init, or as init started the program, is
/// `status: setup_error` (or `policy_error`) with its `error_code` and `error_step`.
pub fn run(req: &RunRequest, egress: Option<&mut dyn Egress>) -> RunResult {
    build_and_run(req, egress).unwrap_or_else(|e| RunResult::refused(e.to_api_error()))
}

fn build_and_run(
    req: &RunRequest,
    egress: Option<&mut dyn Egress>,
) -> Result<RunResult, SandboxError> {
    let policy = &req.policy;
    let ns = &policy.kernel.namespaces;
    let has = |n: Namespace| ns.contains(&n);
    // Settings no layer enforces (a mount and pid namespace missing, audit, js): the loader
    // refuses them already; a policy built by hand gets the same answer here.
    if let Some(refusal) = bunker_policy::unenforced::refusal(&policy.kernel, &policy.js) {
        return Err(SandboxError::Unsupported {
            layer: refusal.json_path.into(),
            reason: refusal.message,
        });
    }
    let id_mode = IdMode::current();
    if let Some(refusal) = caller_refusal(policy) {
        return Err(refusal);
    }
    if req.argv.is_empty() {
        return Err(SandboxError::NoProgram);
    }

    // Step 1.
    let mut enforced = Enforced {
        landlock_abi: landlock::probe(policy)?,
        ..Enforced::default()
    };

    // Step 2.
    let plan = mounts::plan(policy);
    let env_vars = env::build(policy, std::env::vars_os());
    let search_path = env_vars
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    if policy.limits.memory.is_some() {
        let cwd = req.cwd.clone().or_else(|| std::env::current_dir().ok());
        crate::prewarm::program(&req.argv[0], &search_path, cwd.as_deref());
    }
    let env_c = env_vars
        .into_iter()
        .map(|(k, v)| {
            let mut b = k.into_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            cstring("an environment variable", b)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let argv_c = req
        .argv
        .iter()
        .map(|a| cstring("an argument", a.as_bytes().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;

    // Step 3. The stdin first: with the caller's fd 0 closed, the first file opened is fd 0.
    let crate::stdin::ProgramStdin {
        stdin: program_stdin,
        terminal_output: [terminal_stdout, terminal_stderr],
        terminal_session,
        relay: stdin_relay,
    } = crate::stdin::prepare(req.inherit_stdin, policy.kernel.tty, id_mode.host_uid())?;
    let (stdout_r, stdout_w) = fd::pipe().map_err(io_err("create stdout pipe"))?;
    let (stderr_r, stderr_w) = fd::pipe().map_err(io_err("create stderr pipe"))?;
    let (control_sup, control_init) =
        fd::seqpacket_pair().map_err(io_err("create control socket"))?;
    let (lifeline_r, lifeline_w) = fd::pipe().map_err(io_err("create lifeline pipe"))?;

    let ctx = InitContext {
        policy,
        plan: &plan,
        argv: argv_c,
        env: env_c,
        search_path,
        cwd: req.cwd.clone(),
        caller_cwd: std::env::current_dir().ok(),
        stdin: program_stdin.as_raw_fd(),
        terminal_session,
        id_mode,
        user_ns: has(Namespace::User),
        net_ns: has(Namespace::Net),
        uts_ns: has(Namespace::Uts),
        cgroup_ns: has(Namespace::Cgroup),
        control: control_init.as_raw_fd(),
        lifeline: lifeline_r.as_raw_fd(),
        stdout: terminal_stdout.as_ref().unwrap_or(&stdout_w).as_raw_fd(),
        stderr: terminal_stderr.as_ref().unwrap_or(&stderr_w).as_raw_fd(),
    };

    // Step 4.
    let started = Instant::now();
    // `run` is documented to be called single-threaded (the CLI calls it before any runtime
    // starts); `clone_fork` checks it and refuses otherwise.
    // The network and IPC namespaces are made by a thread of init's beside its mounts instead:
    // they are the costliest part of the clone. Init is created on this CPU (`clone_fork`): it
    // runs at once, and the other CPU wakes up for its namespace thread while init goes on.
    let forked = process::clone_fork(clone_flags(ns) & !init::THREAD_NAMESPACES)
        .map_err(io_err("create namespaces"))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            // Only the supervisor may hold these: above all the lifeline's write end, whose
            // closing is how init learns the supervisor is gone.
            drop((stdout_r, stderr_r, control_sup, lifeline_w));
            if let Some(relay) = stdin_relay {
                relay.close_in_child();
            }
            init::run(&ctx)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(ctx);
    drop((stdout_w, stderr_w, control_init, lifeline_r));
    // The program's ends of its stdin relay: the pty's master reads end of file (EIO) once
    // the sandbox is gone only if no slave is left open here.
    drop((program_stdin, terminal_stdout, terminal_stderr));
    // From here on, any early return must not leave init behind.
    let abort = |e: SandboxError| -> SandboxError {
        let _ = process::pidfd_kill(pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = process::waitpid(pid, false);
        e
    };

    // Step 5.
    if has(Namespace::User) {
        idmap::write_maps(pid, id_mode).map_err(|e| {
            abort(SandboxError::Setup {
                step: "write user namespace id maps".into(),
                source: e,
            })
        })?;
    }
    // As root, the grants are opened here, with root's rights, in init's mount namespace, and
    // mapped to their owners while still detached (step 5).
    let granted = match id_mode {
        IdMode::Root => {
            let mut opened = grants::open_in_namespace_of(&plan, pid).map_err(abort)?;
            let mapped = if has(Namespace::User) {
                idmap::namespace_of(pid)
                    .map_err(io_err("open the sandbox's user namespace"))
                    .and_then(|ns| grants::map_to_owners(&mut opened, &ns))
            } else {
                Ok(Vec::new())
            };
            let mut notes = mapped.map_err(abort)?;
            notes.extend(grants::write_hints(&opened, id_mode));
            enforced.notes.append(&mut opened.notes);
            enforced.notes.extend(notes);
            Some(
                grants::message(&opened)
                    .map(|m| (opened, m))
                    .map_err(abort)?,
            )
        }
        IdMode::Rootless { .. } => None,
    };
    // Step 6.
    let joined = SandboxCgroup::prepare(policy, &mut enforced)
        .map_err(|e| (e, None))
        .and_then(|cg| match cg.prepare_join(pid) {
            Ok(files) => Ok((cg, files)),
            Err(e) => Err((e, Some(cg))),
        });
    // Init may have failed first (it reports a failed namespace thread as soon as it is
    // released), or died and made a cgroup write fail: its report, queued on the socket (at end
    // of file once init is killed and reaped), is then the real cause.
    let init_report_or = |e: SandboxError| -> SandboxError {
        if let Ok((data, _)) = fd::recv_with_fds(control_sup.as_raw_fd(), init::MAX_MESSAGE) {
            if let Ok(InitMessage::SetupFailed {
                step,
                errno,
                detail,
                code,
            }) = serde_json::from_slice(&data)
            {
                return setup_failed(step, errno, detail, code);
            }
        }
        e
    };
    let (cgroup, join_files) = match joined {
        Ok(joined) => joined,
        Err((e, cg)) => {
            let e = abort(e);
            drop(cg);
            return Err(init_report_or(e));
        }
    };
    // The release. A failed send (EPIPE) means init already gave up: the message it sent
    // before exiting, read next, says why.
    let raw: Vec<RawFd> = join_files.iter().map(AsRawFd::as_raw_fd).collect();
    let _ = fd::send_with_fds(
        control_sup.as_raw_fd(),
        &init::join_message(join_files.len()),
        &raw,
    );
    drop(join_files);
    // Then the grants (as root), which init reads before building its root. Once sent, init
    // holds its own copies of the detached trees.
    if let Some((opened, (data, fds))) = granted {
        let _ = fd::send_with_fds(control_sup.as_raw_fd(), &data, &fds);
        drop(opened);
    }

    // Step 7.
    let (data, fds) = match fd::recv_with_fds(control_sup.as_raw_fd(), init::MAX_MESSAGE) {
        // Init failed and exited with the release unread in its socket: the kernel
        // reports that once, then hands over what init sent before it exited.
        Err(e) if e.errno == libc::ECONNRESET => {
            fd::recv_with_fds(control_sup.as_raw_fd(), init::MAX_MESSAGE)
        }
        other => other,
    }
    .map_err(|e| abort(io_err("read init's first message")(e)))?;
    let message: InitMessage = if data.is_empty() {
        let status = process::waitpid(pid, false).ok().flatten();
        return Err(SandboxError::Init {
            step: "sandbox setup".into(),
            detail: format!("init ended without reporting ({status:?})"),
        });
    } else {
        serde_json::from_slice(&data).map_err(|e| {
            abort(SandboxError::Init {
                step: "read init's first message".into(),
                detail: e.to_string(),
            })
        })?
    };
    match message {
        InitMessage::Ready {
            landlock,
            landlock_abi,
            seccomp,
            rlimits,
            filesystem,
            notes,
        } => {
            enforced.filesystem = filesystem;
            enforced.landlock = landlock;
            enforced.landlock_abi = landlock_abi;
            enforced.seccomp = seccomp;
            enforced.rlimits = rlimits;
            enforced.notes.extend(notes);
        }
        InitMessage::SetupFailed {
            step,
            errno,
            detail,
            code,
        } => {
            let _ = process::waitpid(pid, false);
            return Err(setup_failed(step, errno, detail, code));
        }
        other => {
            return Err(abort(SandboxError::Init {
                step: "sandbox setup".into(),
                detail: format!("unexpected first message from init: {other:?}"),
            }))
        }
    }
    fill_enforced(&mut enforced, policy);

    let mut egress = egress;
    if !policy.allow.net.is_empty() && has(Namespace::Net) {
        let mut fds = fds.into_iter();
        match (fds.next(), fds.next(), egress.as_mut()) {
            (Some(http), Some(socks), Some(eg)) => {
                eg.start(http, socks).map_err(|e| {
                    abort(SandboxError::Init {
                        step: "start the egress proxy".into(),
                        detail: e,
                    })
                })?;
            }
            (_, _, None) => enforced.notes.push(
                "allow.net is set but no egress proxy is plugged in: connections are refused"
                    .into(),
            ),
            _ => {
                return Err(abort(SandboxError::Init {
                    step: "receive the proxy listeners".into(),
                    detail: "init's Ready message carried no listeners".into(),
                }))
            }
        }
    } else {
        drop(fds);
    }

    // Step 8. The lifeline's write end lives as long as this frame, i.e. until the sandbox ends.
    // The observer hears what is enforced before the supervisor relays any of the program's
    // output, so what it says comes first. The program may already be writing: its lines go
    // through the relay, never blocking on a stderr the caller does not read.
    if let (Some(console), true) = (&req.console, req.stream_output) {
        console.start_relay();
    }
    if let Some(observer) = &req.observer {
        observer.event(&RunEvent::Started {
            enforced: enforced.clone(),
        });
    }
    let sandbox = Supervised {
        init_pid: pid,
        pidfd,
        control: control_sup,
        stdout: stdout_r,
        stderr: stderr_r,
        cgroup,
        started,
        enforced,
        output: supervise::OutputMode::streamed_if(req.stream_output),
        console: req.console.clone(),
        observer: req.observer.clone(),
        stdin: stdin_relay,
        termination: bunker_sys::event::termination_fd(),
    };
    let outcome = supervise::supervise(sandbox, policy);
    let records = egress.map(|e| e.finish()).unwrap_or_default();
    drop(lifeline_w);
    let mut result = outcome?;
    result.http = crate::result::HttpReport::from_records(records);
    Ok(result)
}

/// The error for init's `SetupFailed` report (`init::failure_message` made it).
fn setup_failed(step: String, errno: i32, detail: String, code: ErrorCode) -> SandboxError {
    if code == ErrorCode::Unenforceable {
        SandboxError::Unsupported {
            layer: step,
            reason: detail,
        }
    } else if errno != 0 {
        SandboxError::Setup {
            step,
            source: SysError::from_errno(detail, errno),
        }
    } else {
        SandboxError::Init { step, detail }
    }
}

/// Layers spawn.rs itself is responsible for (the others come from the cgroup, landlock,
/// seccomp and rlimit steps).
fn fill_enforced(enforced: &mut Enforced, policy: &Policy) {
    let ns = &policy.kernel.namespaces;
    enforced.namespaces = if bunker_policy::Namespace::ALL.iter().all(|n| ns.contains(n)) {
        LayerStatus::On
    } else {
        let missing: Vec<String> = bunker_policy::Namespace::ALL
            .iter()
            .filter(|n| !ns.contains(n))
            .map(|n| format!("{n:?}").to_lowercase())
            .collect();
        enforced
            .notes
            .push(format!("namespaces not created: {}", missing.join(", ")));
        LayerStatus::Partial
    };
    enforced.no_new_privs = LayerStatus::On;
    enforced.capabilities_dropped = LayerStatus::On;
    enforced.network = if ns.contains(&Namespace::Net) {
        LayerStatus::On
    } else {
        enforced
            .notes
            .push("no network namespace: the sandbox shares the host's network".into());
        LayerStatus::Off
    };
}

/// Convenience for callers that only hold argv as strings.
pub fn argv<I: IntoIterator<Item = S>, S: Into<OsString>>(args: I) -> Vec<OsString> {
    args.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_failure_inside_init_keeps_its_code_and_step_across_the_socket() {
        let errors = [
            SandboxError::Unsupported {
                layer: "seccomp".into(),
                reason: "no filter".into(),
            },
            SandboxError::Setup {
                step: "bind mount /x → /x".into(),
                source: SysError::from_errno("mount", libc::ENOENT),
            },
            SandboxError::Init {
                step: "landlock".into(),
                detail: "ruleset".into(),
            },
        ];
        for sent in errors {
            let wire = serde_json::to_vec(&init::failure_message(&sent)).unwrap();
            let Ok(InitMessage::SetupFailed {
                step,
                errno,
                detail,
                code,
            }) = serde_json::from_slice(&wire)
            else {
                panic!("not a SetupFailed");
            };
            let back = setup_failed(step, errno, detail, code);
            assert_eq!(back.code(), sent.code(), "{sent}");
            assert_eq!(back.step(), sent.step(), "{sent}");
            assert_eq!(back.to_string(), sent.to_string());
        }
    }

    #[test]
    fn all_namespaces_map_to_clone_flags_except_cgroup() {
        let f = clone_flags(&Namespace::ALL);
        assert_eq!(
            f,
            libc::CLONE_NEWUSER
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
        );
        assert_eq!(clone_flags(&[Namespace::Cgroup]), 0);
    }
}
