//! Builds the sandbox and runs the program: the one place where the setup order is written down.
//!
//! Every message between the supervisor and init (the release, the grants, init's reports, the
//! teardown request) is `init::protocol`'s: typed, one encoding, named fd slots.
//!
//! **Supervisor** (single-threaded at this point — it clones):
//! 1. `landlock::probe`: fail closed early when landlock is required and the kernel lacks it.
//! 2. The mount plan, the program's environment and argv are computed (pure, before the clone).
//!    With a memory limit, the program's executable (`argv[0]` on the sandbox's PATH) and its
//!    ELF interpreter are made resident in the page cache (`prewarm.rs`), so that their pages
//!    are charged to the supervisor's cgroup, not the sandbox's: one `cachestat` per file when
//!    they are cached already.
//! 3. The program's stdin (`stdin.rs`), as `RunRequest::stdin` chooses: `/dev/null`, a
//!    descriptor handed over, or the caller's own — a read-only file or FIFO passed on, or a
//!    relay (a pipe, or with `kernel.tty` a pty of bunker's) whenever it is a terminal or
//!    anything else the program could write through. Then pipes for stdout and
//!    stderr; a SOCK_SEQPACKET control socket pair; a lifeline pipe whose write end only the
//!    supervisor holds.
//! 4. `clone(CLONE_NEWUSER|NEWPID|NEWNS|NEWUTS | CLONE_PIDFD)` (as the policy's
//!    `kernel.namespaces` say), fork-like, onto the supervisor's CPU (both take the caller's
//!    affinity back right after): the child becomes the sandbox's init (pid 1). The network and
//!    IPC namespaces are made by init instead (its step 1).
//! 5. Id maps written (`idmap.rs`: rootless → the caller's ids with setgroups denied; as root →
//!    the host ids leased for this sandbox alone, never host root). As root, the grants are then opened with root's rights in init's
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
//! 3. `PR_SET_PDEATHSIG(SIGKILL)` — after the id change, which clears it — and a signal from the
//!    kernel when the lifeline becomes readable (`O_ASYNC`); then check the lifeline is not at
//!    end of file (the supervisor died in between → exit). From then on the lifeline's end,
//!    wherever its write end went (a daemon's `Sandbox` handle), ends the sandbox (step 11).
//! 4. Mounts (`mounts.rs`): / private; policy paths opened without following symlinks
//!    (rootless; as root the supervisor's trees are used); a tmpfs root; grants attached
//!    (read-only unless in `allow.write`; nosuid, nodev; noexec unless in `allow.exec`);
//!    private /tmp (noexec); minimal /dev; fresh /proc with /proc/sys & co. read-only and the
//!    host's identifiers masked; deny masks; pivot_root; old root detached; the root tmpfs
//!    remounted read-only. Then the landlock ruleset is built
//!    (paths opened in the new root) and the seccomp filter compiled, both enforced in step 8.
//! 5. Join the thread's namespaces (the thread has ended: init is single-threaded again); the
//!    proxy listeners on 127.0.0.1:3128 and :1080 when `allow.net` is non-empty.
//! 6. `sethostname(kernel.hostname)`; chdir to the working directory (once the cgroup is joined,
//!    step 7: for a prepared sandbox the directory comes with the program).
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
//! 11. Reap every child; forward SIGTERM/INT/HUP/QUIT/USR1/USR2 to the program; at the
//!     lifeline's end (its signal, checked against the pipe itself) kill and reap everything and
//!     exit; when it ends,
//!     `Exited`; then (and on the supervisor's teardown signal with its request waiting on the
//!     control socket, which the program cannot forge — its way of killing the
//!     sandbox: `TearingDown` once the kill is done) kill and reap every other process of the
//!     pid namespace, so their CPU time is in init's rusage, and exit.
//!
//! **A sandbox prepared without its program** (`prepare`, for a service's warm pool): the
//! same steps with no program yet (no argv, environment or prewarm in step 2; stdin
//! `/dev/null`). Init stops after its step 7 — namespaces, new root, cgroup joined, landlock
//! ruleset and seccomp filter compiled, nothing applied — says `Waiting`, and waits on the
//! control socket for `Program` (argv, the built environment, PATH, cwd; stdin in its slot),
//! or for the lifeline's end, which ends it. `Prepared::launch` sends it; init then makes the
//! slot its fd 0 and goes on with steps 6, 8–11 exactly as a cold start does, `Ready` read
//! here as step 7 reads it. Wall time and the timeout count from the launch.
//!
//! The supervisor dying, even by SIGKILL, sends init SIGKILL (step 3), and the pid namespace
//! dies with its init.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Instant;

use bunker_policy::{Namespace, Policy};
use bunker_sys::process::{self, Forked};
use bunker_sys::{event, fd, SysError};

use crate::egress::Egress;
use crate::error::SandboxError;
use crate::events::RunEvent;
use crate::host::HostContext;
use crate::idmap::{self, IdMode};
use crate::init::protocol::{self, InitMessage, SupervisorMessage};
use crate::init::{self, InitContext};
use crate::limits::SandboxCgroup;
use crate::result::{Enforced, LayerStatus, RunResult};
use crate::supervise::{self, Supervised};
use crate::{env, grants, landlock, mounts, RunRequest};
use bunker_api::Data;

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
pub fn caller_refusal(policy: &Policy, caller_is_root: bool) -> Option<SandboxError> {
    (!policy.kernel.namespaces.contains(&Namespace::User) && !caller_is_root).then(|| {
        SandboxError::Unsupported {
            layer: "kernel.namespaces".into(),
            reason: "without \"user\" in kernel.namespaces only root can build a sandbox".into(),
        }
    })
}

/// A built sandbox whose init is Ready: the program is being started. What supervises it
/// (`supervise::supervise`, or a service's own driver) takes `supervised`; `lifeline` must stay
/// open until the sandbox has ended (init exits when it closes); `proxy_listeners` are to be
/// served by an egress proxy.
#[derive(Debug)]
pub struct Sandbox {
    pub supervised: Supervised,
    /// The write end of init's lifeline pipe, which only the supervising side holds.
    pub lifeline: OwnedFd,
    /// The HTTP and SOCKS5 proxy listeners init bound inside the sandbox's network namespace,
    /// when `allow.net` is non-empty.
    pub proxy_listeners: Option<(OwnedFd, OwnedFd)>,
}

/// Builds the sandbox from `req.policy`, runs `req.argv` in it, and returns the result:
/// [`start`], the egress proxy on the listeners, then the blocking driver
/// (`supervise::supervise`) until the sandbox is gone. Must be called while the process is
/// single-threaded, and from a thread that lives until the sandbox has ended: init's
/// parent-death signal fires when the *thread* that cloned it exits. `egress` serves the proxy
/// listeners when `allow.net` is non-empty.
///
/// Every way a run can end is a [`RunResult`]: a sandbox that could not be built, whether the
/// step failed before init was cloned, inside init, or as init started the program, is
/// `status: setup_error` (or `policy_error`) with its `error_code` and `error_step`.
pub fn run(req: &RunRequest, host: &HostContext, egress: Option<&mut dyn Egress>) -> RunResult {
    start_and_supervise(req, host, egress).unwrap_or_else(|e| RunResult::refused(e.to_api_error()))
}

fn start_and_supervise(
    req: &RunRequest,
    host: &HostContext,
    egress: Option<&mut dyn Egress>,
) -> Result<RunResult, SandboxError> {
    let Sandbox {
        mut supervised,
        lifeline,
        proxy_listeners,
    } = start(req, host)?;
    let mut egress = egress;
    if let Some((http, socks)) = proxy_listeners {
        match egress.as_mut() {
            Some(eg) => {
                if let Err(detail) = eg.start(http, socks) {
                    let _ = event::pidfd_send_signal(supervised.pidfd.as_fd(), libc::SIGKILL);
                    if !host.clone_parent {
                        let _ = event::wait_pidfd(supervised.pidfd.as_fd(), true);
                    }
                    return Err(SandboxError::Init {
                        step: "start the egress proxy".into(),
                        detail,
                    });
                }
            }
            None => supervised.enforced.notes.push(
                "allow.net is set but no egress proxy is plugged in: connections are refused"
                    .into(),
            ),
        }
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
            enforced: supervised.enforced.clone(),
        });
    }
    supervised.termination = event::termination_fd();
    let outcome = supervise::supervise(supervised, &req.policy);
    let records = egress.map(|e| e.finish()).unwrap_or_default();
    drop(lifeline);
    let mut result = outcome?;
    result.http = crate::result::HttpReport::from_records(records);
    Ok(result)
}

/// Builds the sandbox from `req.policy` and starts `req.argv` in it (steps 1–7): returns once
/// init is Ready, with the handle to supervise it by. Must be called while the process is
/// single-threaded (it clones). Without `host.clone_parent`, from a thread that lives until
/// the sandbox has ended (init's parent-death signal fires when the cloning *thread* exits);
/// with it, init's parent is the caller's parent, which must reap it — also when this fails
/// after the clone (see [`StartFailure`]).
pub fn start(req: &RunRequest, host: &HostContext) -> Result<Sandbox, SandboxError> {
    start_or_hand_back(req, host).map_err(|failure| failure.error)
}

/// Why [`start_or_hand_back`] failed, with init's pidfd when init was cloned with
/// `CLONE_PARENT`: it is dead then, but only its parent (the caller's parent) can reap it.
#[derive(Debug)]
pub struct StartFailure {
    pub error: SandboxError,
    pub unreaped: Option<OwnedFd>,
}

impl From<SandboxError> for StartFailure {
    fn from(error: SandboxError) -> Self {
        StartFailure {
            error,
            unreaped: None,
        }
    }
}

/// [`start`], handing back the pidfd of an init that died unreaped (`host.clone_parent`).
pub fn start_or_hand_back(req: &RunRequest, host: &HostContext) -> Result<Sandbox, StartFailure> {
    build(req, host, false)
}

/// Builds a sandbox under `req.policy` (with `deferred`, without its program: `req.argv` is
/// ignored and init waits for [`Prepared::launch`]).
fn build(req: &RunRequest, host: &HostContext, deferred: bool) -> Result<Sandbox, StartFailure> {
    let policy = &req.policy;
    let ns = &policy.kernel.namespaces;
    let has = |n: Namespace| ns.contains(&n);
    // Settings no layer enforces (a mount and pid namespace missing, audit, js): the loader
    // refuses them already; a policy built by hand gets the same answer here.
    if let Some(refusal) = bunker_policy::unenforced::refusal(&policy.kernel, &policy.js) {
        return Err(SandboxError::Unsupported {
            layer: refusal.json_path.into(),
            reason: refusal.message,
        }
        .into());
    }
    let id_mode = host.id_mode;
    if let Some(refusal) = caller_refusal(policy, id_mode.is_root()) {
        return Err(refusal.into());
    }
    if req.argv.is_empty() && !deferred {
        return Err(SandboxError::NoProgram.into());
    }

    // Step 1.
    let mut enforced = Enforced {
        landlock_abi: landlock::probe(policy)?,
        ..Enforced::default()
    };

    // Step 2.
    let plan = mounts::plan(policy);
    let (argv_c, env_c, search_path) = if deferred {
        (Vec::new(), Vec::new(), String::new())
    } else {
        let program = program_env(
            policy,
            &host.env,
            &req.argv,
            req.cwd.as_ref().or(host.cwd.as_ref()),
        )?;
        let argv_c = program
            .argv
            .into_iter()
            .map(|a| cstring("an argument", a))
            .collect::<Result<Vec<_>, _>>()?;
        let env_c = program
            .env
            .into_iter()
            .map(|v| cstring("an environment variable", v))
            .collect::<Result<Vec<_>, _>>()?;
        (argv_c, env_c, program.search_path)
    };

    // Step 3. The stdin first: with the caller's fd 0 closed, the first file opened is fd 0.
    let crate::stdin::PreparedStdin {
        stdin: program_stdin,
        terminal_output: [terminal_stdout, terminal_stderr],
        terminal_session,
        relay: stdin_relay,
    } = crate::stdin::prepare(&req.stdin, policy.kernel.tty, id_mode.host_uid())?;
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
        caller_cwd: host.cwd.clone(),
        stdin: program_stdin.as_raw_fd(),
        terminal_session,
        id_mode,
        thread_namespaces: clone_flags(ns) & init::THREAD_NAMESPACES,
        user_ns: has(Namespace::User),
        net_ns: has(Namespace::Net),
        uts_ns: has(Namespace::Uts),
        cgroup_ns: has(Namespace::Cgroup),
        control: control_init.as_raw_fd(),
        lifeline: lifeline_r.as_raw_fd(),
        stdout: terminal_stdout.as_ref().unwrap_or(&stdout_w).as_raw_fd(),
        stderr: terminal_stderr.as_ref().unwrap_or(&stderr_w).as_raw_fd(),
        extra_fds: Vec::new(),
        deferred,
    };

    // Step 4.
    let started = Instant::now();
    // `start` is documented to be called single-threaded (the CLI calls it before any runtime
    // starts); `clone_fork` checks it and refuses otherwise.
    // The network and IPC namespaces are made by a thread of init's beside its mounts instead:
    // they are the costliest part of the clone. Init is created on this CPU (`clone_fork`): it
    // runs at once, and the other CPU wakes up for its namespace thread while init goes on.
    let parent = if host.clone_parent {
        libc::CLONE_PARENT
    } else {
        0
    };
    let forked = process::clone_fork(clone_flags(ns) & !init::THREAD_NAMESPACES | parent)
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
    // From here on, any early return must not leave init behind: it is killed, and reaped
    // here unless it is the caller's parent's child.
    let released = release_until_first_message(
        policy,
        id_mode,
        &plan,
        pid,
        pidfd.as_fd(),
        &control_sup,
        &mut enforced,
    )
    .and_then(|(cgroup, message, listeners)| match message {
        InitMessage::Waiting if deferred => Ok((cgroup, None)),
        other if deferred => Err(unexpected(other)),
        message => ready(policy, message, listeners, &mut enforced).map(|l| (cgroup, l)),
    });
    let (cgroup, listeners) = match released {
        Ok(ready) => ready,
        Err(error) => {
            let _ = event::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            if host.clone_parent {
                await_exit(pidfd.as_fd());
                return Err(StartFailure {
                    error,
                    unreaped: Some(pidfd),
                });
            }
            let _ = event::wait_pidfd(pidfd.as_fd(), true);
            return Err(error.into());
        }
    };
    fill_enforced(&mut enforced, policy);
    Ok(Sandbox {
        supervised: Supervised {
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
            // The caller's signal pipe, if it has one, is a driver's business (`run` plugs in
            // the process's own).
            termination: None,
        },
        lifeline: lifeline_w,
        proxy_listeners: listeners,
    })
}

/// Blocks until the process of `pidfd` has exited (its descriptors are closed then), without
/// reaping it: a pidfd is readable from then on, whoever its parent is.
fn await_exit(pidfd: BorrowedFd<'_>) {
    let _ = event::poll(&[pidfd], None);
}

/// Steps 5–7, once init is cloned: id maps, grants (as root), cgroup, the release, and init's
/// first message. Returns the cgroup, that message and the descriptors it carried.
/// On an error init may still be alive: the caller kills it.
fn release_until_first_message(
    policy: &Policy,
    id_mode: IdMode,
    plan: &mounts::MountPlan,
    pid: i32,
    pidfd: BorrowedFd<'_>,
    control_sup: &OwnedFd,
    enforced: &mut Enforced,
) -> Result<(SandboxCgroup, InitMessage, Vec<OwnedFd>), SandboxError> {
    let ns = &policy.kernel.namespaces;
    let has = |n: Namespace| ns.contains(&n);
    // Step 5.
    if has(Namespace::User) {
        idmap::write_maps(pid, id_mode).map_err(|e| SandboxError::Setup {
            step: "write user namespace id maps".into(),
            source: e,
        })?;
    }
    // As root, the grants are opened here, with root's rights, in init's mount namespace, and
    // mapped to their owners while still detached (step 5).
    let granted = match id_mode {
        IdMode::Root { .. } => {
            let mut opened = grants::open_in_namespace_of(plan, pid)?;
            let mut notes = if has(Namespace::User) {
                idmap::namespace_of(pid)
                    .map_err(io_err("open the sandbox's user namespace"))
                    .and_then(|ns| grants::map_to_owners(&mut opened, &ns, id_mode.host_ids()))?
            } else {
                Vec::new()
            };
            notes.extend(grants::write_hints(&opened, id_mode));
            enforced.notes.append(&mut opened.notes);
            enforced.notes.extend(notes);
            let message = grants::message(&opened)?;
            Some((opened, message))
        }
        IdMode::Rootless { .. } => None,
    };
    // Step 6.
    let joined = SandboxCgroup::prepare(policy, enforced)
        .map_err(|e| (e, None))
        .and_then(|cg| match cg.prepare_join(pid) {
            Ok(files) => Ok((cg, files)),
            Err(e) => Err((e, Some(cg))),
        });
    let (cgroup, join_files) = match joined {
        Ok(joined) => joined,
        Err((e, cg)) => {
            // Init may have failed first (it reports a failed namespace thread as soon as it
            // is released), or died and made a cgroup write fail: its report, queued on the
            // socket (at end of file once init is dead), is then the real cause.
            let _ = event::pidfd_send_signal(pidfd, libc::SIGKILL);
            await_exit(pidfd);
            drop(cg);
            let report =
                protocol::recv::<InitMessage>(control_sup.as_raw_fd(), "read init's report");
            if let Ok(Some((msg, _))) = report {
                if let Some(reported) = msg.setup_error() {
                    return Err(reported);
                }
            }
            return Err(e);
        }
    };
    // The release. A failed send (EPIPE) means init already gave up: the message it sent
    // before exiting, read next, says why.
    let raw: Vec<RawFd> = join_files.iter().map(AsRawFd::as_raw_fd).collect();
    let release = SupervisorMessage::Release {
        cgroup_tasks: raw.len(),
    };
    let _ = protocol::send(control_sup.as_raw_fd(), &release, &raw);
    drop(join_files);
    // Then the grants (as root), which init reads before building its root. Once sent, init
    // holds its own copies of the detached trees.
    if let Some((opened, (grants, trees))) = granted {
        let grants = SupervisorMessage::Grants { grants };
        let _ = protocol::send(control_sup.as_raw_fd(), &grants, &trees);
        drop(opened);
    }

    // Step 7.
    let (message, listeners) = next_message(control_sup, pidfd)?;
    Ok((cgroup, message, listeners))
}

/// Init's next message after the release (or the program, for a prepared sandbox).
fn next_message(
    control_sup: &OwnedFd,
    pidfd: BorrowedFd<'_>,
) -> Result<(InitMessage, Vec<OwnedFd>), SandboxError> {
    let step = "read init's first message";
    let first = match protocol::recv::<InitMessage>(control_sup.as_raw_fd(), step) {
        // Init failed and exited with the release unread in its socket: the kernel
        // reports that once, then hands over what init sent before it exited.
        Err(SandboxError::Setup { source, .. }) if source.errno == libc::ECONNRESET => {
            protocol::recv::<InitMessage>(control_sup.as_raw_fd(), step)
        }
        other => other,
    }?;
    let Some(received) = first else {
        // Reaped here only when init is our child.
        let status = event::wait_pidfd(pidfd, true).ok().flatten();
        return Err(SandboxError::Init {
            step: "sandbox setup".into(),
            detail: format!("init ended without reporting ({status:?})"),
        });
    };
    Ok(received)
}

/// The error of a message where `Ready` (or `Waiting`) was due: init's setup failure, or a
/// message out of place.
fn unexpected(message: InitMessage) -> SandboxError {
    match message {
        failed @ InitMessage::SetupFailed { .. } => {
            failed.setup_error().unwrap_or_else(|| SandboxError::Init {
                step: "sandbox setup".into(),
                detail: "init failed".into(),
            })
        }
        other => SandboxError::Init {
            step: "sandbox setup".into(),
            detail: format!("unexpected first message from init: {other:?}"),
        },
    }
}

/// Init's `Ready` (what it enforces, into `enforced`) and, when `allow.net` is non-empty, the
/// proxy listeners it carries.
fn ready(
    policy: &Policy,
    message: InitMessage,
    listeners: Vec<OwnedFd>,
    enforced: &mut Enforced,
) -> Result<Option<(OwnedFd, OwnedFd)>, SandboxError> {
    match message {
        InitMessage::Ready {
            landlock,
            landlock_abi,
            seccomp,
            rlimits,
            filesystem,
            notes,
            proxy_listeners: _,
        } => {
            enforced.filesystem = filesystem;
            enforced.landlock = landlock;
            enforced.landlock_abi = landlock_abi;
            enforced.seccomp = seccomp;
            enforced.rlimits = rlimits;
            enforced.notes.extend(notes);
        }
        other => return Err(unexpected(other)),
    }
    if policy.allow.net.is_empty() || !policy.kernel.namespaces.contains(&Namespace::Net) {
        return Ok(None);
    }
    let mut fds = listeners.into_iter();
    match (fds.next(), fds.next()) {
        (Some(http), Some(socks)) => Ok(Some((http, socks))),
        _ => Err(SandboxError::Init {
            step: "receive the proxy listeners".into(),
            detail: "init's Ready message carried no listeners".into(),
        }),
    }
}

/// The program's argv and environment as init receives them, and the PATH `argv[0]` is looked
/// up on. With a memory limit the program is made resident in the page cache first (step 2).
struct ProgramEnv {
    argv: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    search_path: String,
}

fn program_env(
    policy: &Policy,
    caller_env: &[(OsString, OsString)],
    argv: &[OsString],
    cwd: Option<&PathBuf>,
) -> Result<ProgramEnv, SandboxError> {
    let Some(program) = argv.first() else {
        return Err(SandboxError::NoProgram);
    };
    let env_vars = env::build(policy, caller_env.iter().cloned());
    let search_path = env_vars
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    if policy.limits.memory.is_some() {
        crate::prewarm::program(program, &search_path, cwd.map(PathBuf::as_path));
    }
    let env = env_vars
        .into_iter()
        .map(|(k, v)| {
            let mut b = k.into_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            b
        })
        .collect();
    Ok(ProgramEnv {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        search_path,
    })
}

/// A sandbox built without its program ([`prepare`]): init waits, the restrictions compiled but
/// not applied, until [`Prepared::launch`] hands it the program. Dropped unlaunched, its init is
/// killed (and reaped when it is this process's child) and its cgroup removed.
#[derive(Debug)]
pub struct Prepared {
    sandbox: Option<Sandbox>,
}

/// What a [`Prepared`] sandbox runs.
#[derive(Debug)]
pub struct Program {
    pub argv: Vec<OsString>,
    /// The caller's environment, which `allow.env` passes values from.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory inside the sandbox (an error if it cannot be entered).
    pub cwd: Option<PathBuf>,
    /// Without `cwd`: the caller's directory, used when it is visible inside; else `/tmp`.
    pub caller_cwd: Option<PathBuf>,
    /// The program's fd 0 (`/dev/null` without): a descriptor it may have as it is.
    pub stdin: Option<OwnedFd>,
    /// Descriptors the program gets as its fds 3, 4, ... (close-on-exec clear; at most
    /// `bunker_sys::process::MAX_EXTRA_FDS`), e.g. a worker's channel (`worker::channel`).
    /// Init holds them only until the program is started; no other descriptor is passed on.
    pub extra_fds: Vec<OwnedFd>,
}

/// Builds a sandbox from `policy` without its program: steps 1–7 as [`start`] does them, but
/// with init stopping before it restricts itself (init's steps 6 and 8–11 wait for the
/// program). Same calling rules as [`start`]. The program's stdin is `/dev/null` until
/// [`Prepared::launch`] sends another; a pty (`kernel.tty` with a terminal) needs a cold start.
pub fn prepare(policy: &Policy, host: &HostContext) -> Result<Prepared, StartFailure> {
    let req = RunRequest {
        policy: policy.clone(),
        argv: Vec::new(),
        cwd: None,
        stdin: crate::stdin::ProgramStdin::Null,
        stream_output: false,
        console: None,
        observer: None,
    };
    build(&req, host, true).map(|sandbox| Prepared {
        sandbox: Some(sandbox),
    })
}

impl Prepared {
    /// The prepared sandbox's handle (its cgroup, for its memory use).
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// Runs `program` in the sandbox: init enters its directory, restricts itself (landlock,
    /// no_new_privs, capabilities, seccomp last) and starts it. Returns the started sandbox as
    /// [`start`] does, its wall time and timeout counted from now. `policy` is the policy the
    /// sandbox was prepared with, or one differing from it only in what the supervisor applies
    /// (`limits.timeout`, `limits.output`), what is built here (`allow.env`) or lower
    /// `limits.memory` / `limits.pids` (written to the cgroup here first). Must be called
    /// by init's parent (it reaps init on a failure). Output is captured, with no console,
    /// observer or stdin relay, as [`Sandbox::from_transfer`] gives it.
    pub fn launch(mut self, policy: &Policy, program: Program) -> Result<Sandbox, SandboxError> {
        let Some(mut sandbox) = self.sandbox.take() else {
            return Err(SandboxError::Init {
                step: "launch a prepared sandbox".into(),
                detail: "the sandbox was handed out already".into(),
            });
        };
        // Lowered before the program runs; a write that fails ends the sandbox and is the
        // request's error (docs/protocol.md, "Warm pools").
        let launched = (sandbox.supervised.cgroup.lower_limits(&policy.limits))
            .and_then(|()| send_program(policy, &mut sandbox, program));
        if let Err(error) = launched {
            let pidfd = sandbox.supervised.pidfd.as_fd();
            let _ = event::pidfd_send_signal(pidfd, libc::SIGKILL);
            let _ = event::wait_pidfd(pidfd, true);
            return Err(error);
        }
        Ok(sandbox)
    }

    /// The prepared sandbox as data plus its descriptors ([`Sandbox::into_transfer`]).
    pub fn into_transfer(mut self) -> Option<(crate::spawner::SandboxTransfer, Vec<OwnedFd>)> {
        self.sandbox.take().map(Sandbox::into_transfer)
    }

    /// The prepared sandbox [`into_transfer`](Self::into_transfer) packed.
    pub fn from_transfer(
        t: crate::spawner::SandboxTransfer,
        fds: Vec<OwnedFd>,
    ) -> Result<Prepared, SandboxError> {
        Sandbox::from_transfer(t, fds).map(|sandbox| Prepared {
            sandbox: Some(sandbox),
        })
    }
}

fn send_program(
    policy: &Policy,
    sandbox: &mut Sandbox,
    program: Program,
) -> Result<(), SandboxError> {
    let cwd = program.cwd.as_ref().or(program.caller_cwd.as_ref());
    let env = program_env(policy, &program.env, &program.argv, cwd)?;
    let path = |p: PathBuf| Data::from_bytes(p.into_os_string().into_vec());
    let message = SupervisorMessage::Program {
        argv: env.argv.into_iter().map(Data::from_bytes).collect(),
        env: env.env.into_iter().map(Data::from_bytes).collect(),
        search_path: env.search_path,
        cwd: program.cwd.map(path),
        caller_cwd: program.caller_cwd.map(path),
        stdin: program.stdin.is_some(),
        extra_fds: program.extra_fds.len(),
    };
    if program.extra_fds.len() > bunker_sys::process::MAX_EXTRA_FDS {
        return Err(SandboxError::Init {
            step: "send the program to a prepared sandbox".into(),
            detail: format!(
                "{} extra fds for the program, at most {}",
                program.extra_fds.len(),
                bunker_sys::process::MAX_EXTRA_FDS
            ),
        });
    }
    // The slots' order: stdin (when any), then the extra fds in order.
    let fds: Vec<RawFd> = (program.stdin.iter())
        .chain(program.extra_fds.iter())
        .map(AsRawFd::as_raw_fd)
        .collect();
    let supervised = &mut sandbox.supervised;
    // The program's time starts now, not at the prepare.
    supervised.started = Instant::now();
    protocol::send(supervised.control.as_raw_fd(), &message, &fds).map_err(|source| {
        SandboxError::Setup {
            step: "send the program to a prepared sandbox".into(),
            source,
        }
    })?;
    drop(program.stdin);
    drop(program.extra_fds);
    let (message, listeners) = next_message(&supervised.control, supervised.pidfd.as_fd())?;
    sandbox.proxy_listeners = ready(policy, message, listeners, &mut supervised.enforced)?;
    fill_enforced(&mut supervised.enforced, policy);
    Ok(())
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            let pidfd = sandbox.supervised.pidfd.as_fd();
            let _ = event::pidfd_send_signal(pidfd, libc::SIGKILL);
            await_exit(pidfd);
            // Reaped when it is this process's child (an error otherwise); its cgroup goes
            // with the handle.
            let _ = event::wait_pidfd(pidfd, true);
        }
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
