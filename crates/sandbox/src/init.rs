//! The sandbox's pid 1 and the messages it sends the supervisor over the control socket.
//!
//! Init builds the sandbox from the inside (the order is documented in `spawn.rs`), restricts
//! *itself* (landlock, no capabilities, seccomp) so no unfiltered helper is left in the sandbox,
//! then forks the program, reaps every child, forwards signals to the program, and reports how
//! the program ended. Every failing setup step is reported as [`InitMessage::SetupFailed`].

use std::ffi::{CString, OsStr};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use bunker_api::{Data, ErrorCode};
use bunker_policy::Policy;
use bunker_sys::process::{self, StdioFds, WaitStatus};
use bunker_sys::{fd, SysError};

use crate::egress::{HTTP_PROXY_PORT, SOCKS_PROXY_PORT};
use crate::error::SandboxError;
use crate::grants::OpenedGrants;
use crate::idmap::IdMode;
use crate::landlock::{self, SandboxPaths};
use crate::mounts::{self, MountPlan};
use crate::result::LayerStatus;
use crate::{limits, seccomp};
use protocol::{teardown_signal, InitMessage, SupervisorMessage};

pub mod protocol;

/// Signals init passes on to the program.
pub const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Whether the supervisor asked for the teardown: its request waits on the control socket.
fn teardown_requested(control: RawFd) -> bool {
    matches!(fd::readable(control), Ok(true))
        && matches!(
            protocol::recv::<SupervisorMessage>(control, "read the teardown request"),
            Ok(Some((SupervisorMessage::Teardown, _)))
        )
}

/// Everything init needs, prepared by the supervisor before the clone (init reads its copy).
#[derive(Debug)]
pub struct InitContext<'a> {
    pub policy: &'a Policy,
    pub plan: &'a MountPlan,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// PATH of the program's environment, for looking up `argv[0]`.
    pub search_path: String,
    /// Requested working directory (an error if it cannot be entered).
    pub cwd: Option<PathBuf>,
    /// The caller's directory, used when it is visible inside; else /tmp.
    pub caller_cwd: Option<PathBuf>,
    /// Becomes init's fd 0, and so the program's stdin (`stdin.rs`).
    pub stdin: RawFd,
    /// The program leads a session whose controlling terminal is its stdin (a pty of bunker's).
    pub terminal_session: bool,
    pub id_mode: IdMode,
    /// The namespaces init's thread makes (a subset of [`THREAD_NAMESPACES`], as clone flags).
    pub thread_namespaces: libc::c_int,
    pub user_ns: bool,
    pub net_ns: bool,
    pub uts_ns: bool,
    pub cgroup_ns: bool,
    pub control: RawFd,
    pub lifeline: RawFd,
    /// Become init's fds 1 and 2, and so the program's.
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Become the program's fds 3, 4, ... (a prepared sandbox's `Program.extra_fds`); closed
    /// in init once the program is started.
    pub extra_fds: Vec<RawFd>,
    /// Prepared without its program (`spawn::prepare`): `argv`, `env`, `search_path` and `cwd`
    /// are empty and `stdin` is `/dev/null` until [`SupervisorMessage::Program`] brings them.
    pub deferred: bool,
}

fn send(control: RawFd, msg: &InitMessage, fds: &[RawFd]) -> Result<(), SysError> {
    protocol::send(control, msg, fds)
}

fn step(name: impl Into<String>) -> impl FnOnce(SysError) -> SandboxError {
    let step = name.into();
    move |source| SandboxError::Setup { step, source }
}

/// Init's entry point in the cloned child. Never returns.
pub fn run(ctx: &InitContext) -> ! {
    let mut listeners = Vec::new();
    let program;
    let ready = match build(ctx, &mut listeners) {
        Ok(built) if ctx.deferred => match wait_for_program(ctx) {
            Ok(given) => {
                program = given;
                restrict(&program, built).map(|ready| (ready, &program))
            }
            Err(e) => Err(e),
        },
        Ok(built) => restrict(ctx, built).map(|ready| (ready, ctx)),
        Err(e) => Err(e),
    };
    match ready {
        Ok((ready, ctx)) => {
            let fds: Vec<RawFd> = listeners
                .iter()
                .map(|l: &TcpListener| l.as_raw_fd())
                .collect();
            if send(ctx.control, &ready, &fds).is_err() {
                process::exit_now(1);
            }
            // The supervisor holds the listeners now; init must not keep them open.
            drop(listeners);
            supervise_program(ctx)
        }
        Err(e) => {
            let _ = send(ctx.control, &InitMessage::setup_failed(&e), &[]);
            process::exit_now(1)
        }
    }
}

/// What [`build`] made and [`restrict`] applies.
struct Built {
    landlock: landlock::Prepared,
    filter: Option<Vec<bunker_sys::seccomp::Insn>>,
    notes: Vec<String>,
    root_complete: bool,
}

/// A prepared sandbox's init (spawn.rs, `prepare`): says it is waiting, then waits for the
/// program on the control socket, or for the lifeline's end (the holder gone or done with
/// it), which ends init. Returns init's context with the program's parts filled in.
fn wait_for_program<'a>(ctx: &InitContext<'a>) -> Result<InitContext<'a>, SandboxError> {
    let step_name = "wait for the program";
    if send(ctx.control, &InitMessage::Waiting, &[]).is_err() {
        process::exit_now(1);
    }
    loop {
        fd::wait_readable(&[ctx.control, ctx.lifeline]).map_err(step(step_name))?;
        if fd::pipe_closed(ctx.lifeline).unwrap_or(true) {
            process::exit_now(1);
        }
        if matches!(fd::readable(ctx.control), Ok(true)) {
            break;
        }
    }
    let bytes = |d: Data| {
        d.to_bytes().ok_or_else(|| SandboxError::Init {
            step: step_name.into(),
            detail: "invalid base64 in the program message".into(),
        })
    };
    let cstr = |d: Data| {
        CString::new(bytes(d)?).map_err(|_| SandboxError::Init {
            step: step_name.into(),
            detail: "an argument or environment variable contains a NUL byte".into(),
        })
    };
    let path = |d: Data| bytes(d).map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)));
    match protocol::recv::<SupervisorMessage>(ctx.control, step_name) {
        Ok(Some((
            SupervisorMessage::Program {
                argv,
                env,
                search_path,
                cwd,
                caller_cwd,
                stdin,
                extra_fds: _,
            },
            fds,
        ))) => {
            let mut fds = fds.into_iter();
            if stdin {
                if let Some(stdin) = fds.next() {
                    fd::dup2(stdin.as_raw_fd(), 0).map_err(step("set up the program's stdin"))?;
                }
            }
            // Held (close-on-exec) until the program is started, then closed.
            let extra_fds = fds.map(std::os::fd::IntoRawFd::into_raw_fd).collect();
            let program = InitContext {
                argv: argv.into_iter().map(cstr).collect::<Result<_, _>>()?,
                env: env.into_iter().map(cstr).collect::<Result<_, _>>()?,
                search_path,
                cwd: cwd.map(path).transpose()?,
                caller_cwd: caller_cwd.map(path).transpose()?,
                extra_fds,
                deferred: false,
                ..*ctx
            };
            Ok(program)
        }
        Ok(Some((other, _))) => Err(SandboxError::Init {
            step: step_name.into(),
            detail: format!("expected the program, received {other:?}"),
        }),
        // The supervisor gave up (or died): nobody is left to report to.
        Ok(None) | Err(SandboxError::Setup { .. }) => process::exit_now(1),
        Err(e) => Err(e),
    }
}

/// Steps 1–7 of init in `spawn.rs`: the sandbox built up to its restrictions, which are
/// compiled here and applied by [`restrict`].
fn build(ctx: &InitContext, listeners: &mut Vec<TcpListener>) -> Result<Built, SandboxError> {
    let policy = ctx.policy;
    take_program_stdio(ctx)?;
    // Made on a thread of init's, started first so that its ~1.5 ms of CPU overlap the id
    // change and the mounts; joined after the release, long before anything is
    // restricted. The thread keeps the ids it started with (the id syscalls below change the
    // calling thread only): it has every capability in the new user namespace, all it needs.
    let thread_namespaces = ctx.thread_namespaces;
    let namespaces = (thread_namespaces != 0)
        .then(|| NamespaceThread::start(thread_namespaces))
        .transpose();
    // Wait until the supervisor wrote our id maps and made the cgroup.
    let cgroup_files = release(ctx)?;
    // Reported only now: the supervisor reads init's reports after the release.
    let namespaces = namespaces?;

    if ctx.user_ns {
        process::setresgid(0).map_err(step("become gid 0 in the user namespace"))?;
        if ctx.id_mode.is_root() {
            // Root's supplementary groups (e.g. 0) would otherwise stay attached to the sandbox.
            process::clear_groups().map_err(step("drop supplementary groups"))?;
        }
        process::setresuid(0).map_err(step("become uid 0 in the user namespace"))?;
    }
    if ctx.terminal_session && matches!(ctx.id_mode, IdMode::Rootless { .. }) {
        reopen_pty_read_only()?;
    }
    // After the id change, which clears the parent-death signal.
    process::set_parent_death_signal(libc::SIGKILL).map_err(step("set parent-death signal"))?;
    // The lifeline's end is the end of the sandbox, whoever holds its write end (the
    // supervisor, or a daemon it was handed to): the kernel tells init by a signal.
    fd::signal_when_readable(ctx.lifeline, lifeline_signal())
        .map_err(step("watch the supervisor lifeline"))?;
    if fd::pipe_closed(ctx.lifeline).map_err(step("check supervisor lifeline"))? {
        // The supervisor died before the death signal was armed.
        process::exit_now(1);
    }

    // As root, the supervisor opened the grants (with root's rights) and sends their trees
    // right after the release; rootless, build_root opens them.
    let granted = match ctx.id_mode {
        IdMode::Root { .. } => Some(receive_grants(ctx)?),
        IdMode::Rootless { .. } => None,
    };
    let mut root = mounts::build_root(ctx.plan, granted.as_ref(), ctx.id_mode)?;
    let notes = std::mem::take(&mut root.notes);

    // Built now, while the namespace thread may still run; enforced below, in the order the
    // restrictions need.
    let paths = SandboxPaths {
        writable: [
            "/tmp",
            "/dev/shm",
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
        ]
        .iter()
        .map(PathBuf::from)
        .chain(policy.kernel.tty.then(|| PathBuf::from("/dev/pts")))
        .collect(),
        readable: ["/", "/proc", "/dev"].iter().map(PathBuf::from).collect(),
        connect_ports: if policy.allow.net.is_empty() {
            Vec::new()
        } else {
            vec![HTTP_PROXY_PORT, SOCKS_PROXY_PORT]
        },
    };
    let landlock = landlock::prepare(policy, &paths)?;
    let filter = seccomp::prepare(policy)?;

    if let Some(thread) = namespaces {
        for (kind, ns) in thread.finish()? {
            // The call in the error names the namespace (`setns(fd, CLONE_NEWNET)`).
            process::setns(ns.as_raw_fd(), kind)
                .map_err(step("join the network and IPC namespaces"))?;
        }
    }
    if ctx.net_ns && !policy.allow.net.is_empty() {
        for port in [HTTP_PROXY_PORT, SOCKS_PROXY_PORT] {
            let l = TcpListener::bind(("127.0.0.1", port)).map_err(|e| SandboxError::Setup {
                step: format!("listen on 127.0.0.1:{port} (egress proxy)"),
                source: SysError::from_errno(
                    format!("bind(127.0.0.1:{port}): {e}"),
                    e.raw_os_error().unwrap_or(0),
                ),
            })?;
            listeners.push(l);
        }
    }
    if ctx.uts_ns {
        process::sethostname(&policy.kernel.hostname).map_err(step("set hostname"))?;
    }

    join_cgroup(cgroup_files)?;
    if ctx.cgroup_ns {
        // That cgroup becomes the root of our cgroup namespace.
        process::unshare(libc::CLONE_NEWCGROUP).map_err(step("unshare cgroup namespace"))?;
    }
    // Every namespace of the sandbox exists now: no object of a counter is made by init after
    // this, and the program may make none (the namespace maxima are 0).
    if let Some(sys_user) = root.user_counters {
        crate::user_counters::bound(&sys_user)
            .map_err(step("bound the per-user kernel counters (/proc/sys/user)"))?;
    }
    Ok(Built {
        landlock,
        filter,
        notes,
        root_complete: root.complete,
    })
}

/// Steps 6 and 8 of init in `spawn.rs`, once the program is known: its working directory, then
/// init restricts itself (seccomp last). Returns the `Ready` report.
fn restrict(ctx: &InitContext, built: Built) -> Result<InitMessage, SandboxError> {
    let Built {
        landlock,
        filter,
        mut notes,
        root_complete,
    } = built;
    let policy = ctx.policy;
    enter_cwd(ctx)?;

    // Init restricts itself before the program exists, so no unrestricted process remains.
    process::set_dumpable(false).map_err(step("make init non-dumpable"))?;
    limits::apply_rlimits(&policy.limits)?;
    crate::user_counters::cap_pending_signals()
        .map_err(step("bound the queued signals (RLIMIT_SIGPENDING)"))?;
    // landlock_restrict_self needs no_new_privs when the caller lacks CAP_SYS_ADMIN.
    process::set_no_new_privs().map_err(step("set no_new_privs"))?;
    let ll = landlock.restrict()?;
    notes.extend(ll.notes);
    // Locking the securebits needs CAP_SETPCAP, so it comes before the drop. NO_SETUID_FIXUP
    // keeps the uid change below from touching capabilities; the drop clears them all anyway.
    process::lock_securebits().map_err(step("lock securebits"))?;
    if !ctx.user_ns {
        // Without a user namespace (root only), the program runs as the sandbox's leased host
        // ids.
        let (uid, gid) = ctx.id_mode.host_ids();
        process::clear_groups().map_err(step("drop supplementary groups"))?;
        process::setresgid(gid).map_err(step(format!("become gid {gid}")))?;
        process::setresuid(uid).map_err(step(format!("become uid {uid}")))?;
    }
    process::drop_all_capabilities().map_err(step("drop capabilities"))?;
    let sc = seccomp::install_prepared(filter)?;
    Ok(InitMessage::Ready {
        landlock: ll.status,
        landlock_abi: ll.abi,
        seccomp: sc,
        rlimits: LayerStatus::On,
        filesystem: if root_complete {
            LayerStatus::On
        } else {
            LayerStatus::Partial
        },
        notes,
        proxy_listeners: ctx.net_ns && !policy.allow.net.is_empty(),
    })
}

/// Makes the program's stdin and output init's fds 0–2 (spawn.rs init step 1): the caller's
/// own, its terminal above all, are not kept open in the sandbox.
fn take_program_stdio(ctx: &InitContext) -> Result<(), SandboxError> {
    let step_name = "set up the program's stdin, stdout and stderr";
    for (fd_number, from) in [(0, ctx.stdin), (1, ctx.stdout), (2, ctx.stderr)] {
        // Through a copy numbered above 2: `from` may itself be 0–2 when the caller had those
        // closed.
        let copy = fd::dup_above_stdio(from).map_err(step(step_name))?;
        fd::dup2(copy.as_raw_fd(), fd_number).map_err(step(step_name))?;
    }
    Ok(())
}

/// Rootless with `kernel.tty`, the pty's slave is an inode of the host's devpts owned by the
/// caller, which is the sandbox's own uid: through its fd 0 the program could `fchmod` it to
/// 0666, and any host user could then open `/dev/pts/<n>`, read the keys typed for the program
/// and write to it. So init reopens the slave through a read-only clone of /dev/pts (made while
/// the host's tree is still visible) and puts that on every one of fds 0–2 that was the slave:
/// `fchmod`, `fchown`, `futimens` and `fsetxattr` need a writable mount (EROFS), reading and
/// writing a device do not. As root the slave belongs to host root, which the sandbox is not.
fn reopen_pty_read_only() -> Result<(), SandboxError> {
    use bunker_sys::mount::{self, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    use bunker_sys::tty;
    let step_name = "reopen the program's pty through a read-only /dev/pts";
    let Some(id) = tty::slave_id(0).map_err(step(step_name))? else {
        return Err(SandboxError::Setup {
            step: step_name.into(),
            source: SysError::from_errno("fd 0 is not a pty slave".to_string(), libc::ENOTTY),
        });
    };
    let pts = fd::open(
        Path::new("/dev/pts"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map_err(step(step_name))?;
    let read_only = mount::clone_private_tree(
        pts.as_raw_fd(),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        Path::new("/dev/pts"),
    )
    .map_err(step(step_name))?;
    let reopened = fd::openat2(
        Some(read_only.as_raw_fd()),
        Path::new(&id.number.to_string()),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
        fd::RESOLVE_BENEATH | fd::RESOLVE_NO_SYMLINKS | fd::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(step(step_name))?;
    let same = tty::slave_id(reopened.as_raw_fd()).map_err(step(step_name))?;
    if same != Some(id) {
        return Err(SandboxError::Setup {
            step: step_name.into(),
            source: SysError::from_errno(
                format!(
                    "/dev/pts/{} is not the pty bunker made (another devpts instance)",
                    id.number
                ),
                libc::ENXIO,
            ),
        });
    }
    for n in 0..=2 {
        if tty::slave_id(n).map_err(step(step_name))? == Some(id) {
            fd::dup2(reopened.as_raw_fd(), n).map_err(step(step_name))?;
        }
    }
    Ok(())
}

/// Waits for the release (the cgroup's `tasks` files come in its slots).
fn release(ctx: &InitContext) -> Result<Vec<OwnedFd>, SandboxError> {
    match protocol::recv::<SupervisorMessage>(ctx.control, "join the sandbox's cgroup") {
        Ok(Some((SupervisorMessage::Release { .. }, files))) => Ok(files),
        Ok(Some((other, _))) => Err(SandboxError::Init {
            step: "join the sandbox's cgroup".into(),
            detail: format!("expected the release, received {other:?}"),
        }),
        // The supervisor gave up (or died): nobody is left to report to.
        Ok(None) | Err(SandboxError::Setup { .. }) => process::exit_now(1),
        Err(e) => Err(e),
    }
}

/// The grants the supervisor opened, and their trees.
fn receive_grants(ctx: &InitContext) -> Result<OpenedGrants, SandboxError> {
    let step = "receive the grants from the supervisor";
    match protocol::recv::<SupervisorMessage>(ctx.control, step) {
        Ok(Some((SupervisorMessage::Grants { grants }, trees))) => {
            crate::grants::from_message(grants, trees)
        }
        Ok(Some((other, _))) => Err(SandboxError::Init {
            step: step.into(),
            detail: format!("expected the grants, received {other:?}"),
        }),
        // The supervisor gave up (or died): nobody is left to report to.
        Ok(None) | Err(SandboxError::Setup { .. }) => process::exit_now(1),
        Err(e) => Err(e),
    }
}

/// The namespaces init's namespace thread (`NamespaceThread`) makes; the clone makes the others.
pub const THREAD_NAMESPACES: libc::c_int = libc::CLONE_NEWNET | libc::CLONE_NEWIPC;

/// The sandbox's network and IPC namespaces, made by a thread of init's beside the main thread's
/// mounts: creating a network namespace (loopback device, sysctl tables, per-protocol state) and
/// bringing `lo` up is the costliest part of the setup (~1.4 ms of CPU here), and an IPC
/// namespace mounts its own mqueue instance. The thread needs no process of its own and no way
/// into init's user namespace: it is in it already, with init's credentials, so the namespaces
/// are owned by the sandbox's user namespace, as ones made by the clone would be. `unshare`
/// moves only the calling thread; the main thread joins through the fds the thread returns.
/// The thread has ended before init restricts itself (landlock and seccomp bind the calling
/// thread only).
struct NamespaceThread(std::thread::JoinHandle<Result<Vec<(libc::c_int, OwnedFd)>, SysError>>);

/// Stack of the namespace thread: it only makes syscalls.
const NAMESPACE_THREAD_STACK: usize = 64 * 1024;

impl NamespaceThread {
    /// Starts making the namespaces in `kinds` (a subset of [`THREAD_NAMESPACES`]).
    fn start(kinds: libc::c_int) -> Result<NamespaceThread, SandboxError> {
        std::thread::Builder::new()
            .name("namespaces".into())
            .stack_size(NAMESPACE_THREAD_STACK)
            .spawn(move || {
                process::unshare(kinds)?;
                [(libc::CLONE_NEWNET, "net"), (libc::CLONE_NEWIPC, "ipc")]
                    .into_iter()
                    .filter(|(kind, _)| kinds & kind != 0)
                    .map(|(kind, name)| {
                        if kind == libc::CLONE_NEWNET {
                            bunker_sys::net::loopback_up()?;
                        }
                        let path = format!("/proc/thread-self/ns/{name}");
                        let ns = fd::open(Path::new(&path), libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
                        Ok((kind, ns))
                    })
                    .collect()
            })
            .map(NamespaceThread)
            .map_err(|e| SandboxError::Setup {
                step: "create the network and IPC namespaces".into(),
                source: SysError::from_errno(
                    format!("start a thread: {e}"),
                    e.raw_os_error().unwrap_or(libc::EAGAIN),
                ),
            })
    }

    /// Waits for the thread: the new namespaces, or why they could not be made.
    fn finish(self) -> Result<Vec<(libc::c_int, OwnedFd)>, SandboxError> {
        let made = self.0.join().unwrap_or_else(|_| {
            Err(SysError::from_errno(
                "the namespace thread panicked".to_string(),
                libc::EINVAL,
            ))
        });
        made.map_err(step("create the network and IPC namespaces"))
    }
}

/// Moves init into the sandbox's cgroup through the `tasks` files of the release (init
/// is single-threaded: moving its thread moves the process).
fn join_cgroup(files: Vec<OwnedFd>) -> Result<(), SandboxError> {
    for f in files {
        let mut f = std::fs::File::from(f);
        bunker_cgroup::join_self(&mut f).map_err(|e| SandboxError::Setup {
            step: "join the sandbox's cgroup".into(),
            source: SysError::from_errno(
                format!("write \"0\" to a cgroup tasks file: {e}"),
                e.raw_os_error().unwrap_or(0),
            ),
        })?;
    }
    Ok(())
}

/// Enters the working directory: the requested one (an error when impossible), else the
/// caller's when visible inside, else /tmp.
fn enter_cwd(ctx: &InitContext) -> Result<(), SandboxError> {
    if let Some(dir) = &ctx.cwd {
        return process::chdir(dir).map_err(step(format!("chdir {}", dir.display())));
    }
    if let Some(dir) = &ctx.caller_cwd {
        if process::chdir(dir).is_ok() {
            return Ok(());
        }
    }
    process::chdir(Path::new("/tmp")).map_err(step("chdir /tmp"))
}

/// The signal the kernel sends init when its lifeline becomes readable (`O_ASYNC`): at end of
/// file, the lifeline's write end is closed everywhere and the sandbox ends. The program can send
/// it too: init looks at the lifeline itself, which the program cannot close.
fn lifeline_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

fn signal_mask() -> libc::sigset_t {
    let mut sigs = FORWARDED_SIGNALS.to_vec();
    sigs.push(libc::SIGCHLD);
    sigs.push(teardown_signal());
    sigs.push(lifeline_signal());
    process::sigset(&sigs)
}

/// Ends the sandbox from inside and exits: every other process of the pid namespace is killed
/// and reaped here, so its CPU time adds up in init's rusage, which the supervisor reads when it
/// reaps init (`cpu_ms` without a cgroup). A process that cannot die (uninterruptible sleep)
/// holds init here; the supervisor then kills init itself.
fn teardown_and_exit(code: i32) -> ! {
    let _ = process::kill(-1, libc::SIGKILL);
    while let Ok(Some(_)) = process::waitpid(-1, false) {}
    process::exit_now(code)
}

/// Starts the program, reports its exec, forwards signals and reaps until it ends. Never returns.
fn supervise_program(ctx: &InitContext) -> ! {
    let mask = signal_mask();
    let fail = |detail: String| -> ! {
        let _ = send(
            ctx.control,
            &InitMessage::SetupFailed {
                step: "start the program".into(),
                errno: 0,
                detail,
                code: ErrorCode::SetupFailed,
            },
            &[],
        );
        process::exit_now(1)
    };
    // Blocked before the spawn so no SIGCHLD or forwarded signal is lost; sigwaitinfo takes
    // them. (The program starts with an empty mask.)
    if let Err(e) = process::set_sigmask(&mask) {
        fail(e.to_string());
    }
    // A lifeline signal before the mask was ignored (init's default disposition): look now.
    if fd::pipe_closed(ctx.lifeline).unwrap_or(true) {
        process::exit_now(1);
    }
    // A session and process group of the sandbox's own (spawn.rs init step 10), before
    // anything of the program runs.
    if let Err(e) = process::setsid() {
        fail(e.to_string());
    }
    // Init's own fds 0–2 are the program's (`take_program_stdio`).
    let stdio = StdioFds {
        stdin: None,
        stdout: 1,
        stderr: 2,
        terminal_session: ctx.terminal_session,
    };
    let started = start_program(ctx, stdio);
    for &extra in &ctx.extra_fds {
        // The program has its copies; init's would keep the channel open after it ends.
        let _ = fd::close(extra);
    }
    let program = match started {
        Ok(pid) => pid,
        Err(errno) => {
            let code = if errno == libc::ENOENT { 127 } else { 126 };
            let name = ctx
                .argv
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default();
            let detail = match errno {
                libc::ENOENT => format!("{name}: command not found"),
                _ => format!(
                    "{name}: cannot execute: {} ({})",
                    bunker_sys::error::errno_name(errno),
                    std::io::Error::from_raw_os_error(errno)
                ),
            };
            let _ = send(
                ctx.control,
                &InitMessage::ExecFailed {
                    program: name,
                    errno,
                    detail,
                },
                &[],
            );
            // Nothing to reap: a failed spawn's child is reaped by the spawn itself.
            let _ = send(
                ctx.control,
                &InitMessage::Exited {
                    code: Some(code),
                    signal: None,
                },
                &[],
            );
            process::exit_now(code);
        }
    };
    let _ = send(ctx.control, &InitMessage::Started, &[]);

    loop {
        let sig = match process::sigwait(&mask) {
            Ok(r) => r.signal,
            Err(_) => process::exit_now(1),
        };
        if sig == teardown_signal() {
            // Only at the supervisor's request: the same signal from inside the sandbox (any
            // signal call, any forged siginfo) would let the program end its own sandbox and
            // leave a misleading report.
            if teardown_requested(ctx.control) {
                let _ = process::kill(-1, libc::SIGKILL);
                // The kill is done; what is left is reaping, which takes the dying processes'
                // exits (milliseconds on a loaded host): the supervisor waits for it rather
                // than SIGKILLing init, which would lose their CPU time.
                let _ = send(ctx.control, &InitMessage::TearingDown, &[]);
                teardown_and_exit(128 + libc::SIGKILL);
            }
            continue;
        }
        if sig == lifeline_signal() {
            // Only when the lifeline really ended: the program may send this signal too.
            if fd::pipe_closed(ctx.lifeline).unwrap_or(true) {
                teardown_and_exit(128 + libc::SIGKILL);
            }
            continue;
        }
        if sig != libc::SIGCHLD {
            let _ = process::kill(program, sig);
            continue;
        }
        // Reap everything that ended: the program and any orphan reparented to us.
        while let Ok(Some((pid, status))) = process::waitpid(-1, true) {
            if pid != program {
                continue;
            }
            let (code, signal, exit) = match status {
                WaitStatus::Exited(c) => (Some(c), None, c),
                WaitStatus::Signaled(s) => (None, Some(s), 128 + s),
            };
            let _ = send(ctx.control, &InitMessage::Exited { code, signal }, &[]);
            // Whatever the program left behind ends with it.
            teardown_and_exit(exit);
        }
    }
}

/// Starts the program (`process::spawn`: stdio set up, only fds 0–2 kept, signal mask and
/// dispositions reset, the cleared environment): `argv[0]` itself when it holds a `/`, else
/// the first match on the sandbox's PATH. Returns its pid, or the errno that explains why it
/// could not be executed: ENOENT when no candidate exists, EACCES when one exists but may not
/// be executed, else the first other error.
fn start_program(ctx: &InitContext, stdio: StdioFds) -> Result<i32, i32> {
    let Some(arg0) = ctx.argv.first() else {
        return Err(libc::ENOENT);
    };
    let name = OsStr::from_bytes(arg0.as_bytes());
    let candidates: Vec<PathBuf> = if name.as_bytes().contains(&b'/') {
        vec![PathBuf::from(name)]
    } else {
        ctx.search_path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    let mut errno = libc::ENOENT;
    for c in candidates {
        let Ok(path) = fd::cstr("execve", &c) else {
            continue;
        };
        match process::spawn_with_fds(&path, &ctx.argv, &ctx.env, stdio, &ctx.extra_fds) {
            Ok(pid) => return Ok(pid),
            Err(e) => match e.errno {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => errno = libc::EACCES,
                other => return Err(other),
            },
        }
    }
    Err(errno)
}
