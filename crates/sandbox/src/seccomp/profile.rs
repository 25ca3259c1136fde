//! The profile as data: each x86-64 syscall, what the filter does with it, and why.

use bunker_sys::seccomp::Verdict;

/// What the filter does with one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Runs.
    Allow,
    /// Fails with EPERM.
    Deny,
    /// Fails with ENOSYS, so libc falls back to an older call it can filter (`clone3`), or
    /// because x86-64 never implemented it.
    NoSys,
    /// Runs when the argument check passes; EPERM otherwise.
    AllowIf(ArgCheck),
}

/// A check on the low 32 bits of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgCheck {
    /// None of `mask`'s bits set in `args[arg]`.
    NoBits {
        arg: u32,
        mask: u32,
        names: &'static str,
    },
    /// `args[arg]` is one of `values`.
    OneOf {
        arg: u32,
        values: &'static [u32],
        names: &'static str,
    },
    /// `args[arg]` is none of `values`.
    NoneOf {
        arg: u32,
        values: &'static [u32],
        names: &'static str,
    },
    /// None of `mask`'s bits set in `args[arg]` when `args[when_arg]` has any of `when_mask`'s
    /// bits: a creation mode, which the kernel reads only when the flags create a file.
    NoBitsWhen {
        when_arg: u32,
        when_mask: u32,
        when_names: &'static str,
        arg: u32,
        mask: u32,
        names: &'static str,
    },
}

/// One syscall of the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    /// The x86-64 syscall number.
    pub nr: u32,
    pub action: Action,
    /// Why, in one line.
    pub reason: &'static str,
}

const fn allow(name: &'static str, nr: u32, reason: &'static str) -> Entry {
    Entry {
        name,
        nr,
        action: Action::Allow,
        reason,
    }
}
const fn deny(name: &'static str, nr: u32, reason: &'static str) -> Entry {
    Entry {
        name,
        nr,
        action: Action::Deny,
        reason,
    }
}
const fn nosys(name: &'static str, nr: u32, reason: &'static str) -> Entry {
    Entry {
        name,
        nr,
        action: Action::NoSys,
        reason,
    }
}
const fn allow_if(name: &'static str, nr: u32, check: ArgCheck, reason: &'static str) -> Entry {
    Entry {
        name,
        nr,
        action: Action::AllowIf(check),
        reason,
    }
}

/// Every namespace-creating clone flag. CLONE_NEWTIME (0x80) only exists for clone3/unshare; in
/// clone's flags it would be part of the exit signal, where a value ≥ 0x80 is invalid anyway.
pub const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | 0x80) as u32;

const NO_NAMESPACES: ArgCheck = ArgCheck::NoBits {
    arg: 0,
    mask: CLONE_NAMESPACE_FLAGS,
    names: "CLONE_NEWNS/NEWCGROUP/NEWUTS/NEWIPC/NEWUSER/NEWPID/NEWNET/NEWTIME",
};
const INET_OR_UNIX: ArgCheck = ArgCheck::OneOf {
    arg: 0,
    values: &[
        libc::AF_UNIX as u32,
        libc::AF_INET as u32,
        libc::AF_INET6 as u32,
    ],
    names: "AF_UNIX, AF_INET or AF_INET6",
};
/// TIOCSTI pushes bytes into a terminal's input (a command typed into the caller's shell);
/// TIOCLINUX can do the same on a virtual console.
const NOT_TTY_INJECTION: ArgCheck = ArgCheck::NoneOf {
    arg: 1,
    values: &[0x5412, 0x541C],
    names: "TIOCSTI or TIOCLINUX",
};
const PERSONALITY_QUERY: ArgCheck = ArgCheck::OneOf {
    arg: 0,
    values: &[0, 0xffff_ffff],
    names: "PER_LINUX (0) or the query 0xffffffff",
};

/// The setuid and setgid mode bits. A file the sandbox made with them in a writable grant would
/// run as its owner for any host user who can reach it (the host does not see the sandbox's
/// nosuid mounts), so no call may set them. Every mode argument is a `umode_t`, which the
/// kernel truncates to 16 bits: the low 32 bits the filter reads hold all of it.
const SETID_BITS: u32 = libc::S_ISUID | libc::S_ISGID;

/// A mode argument (`chmod`, `mkdir`, `mknod`, `creat`) without the setuid/setgid bits.
const fn no_setid(arg: u32) -> ArgCheck {
    ArgCheck::NoBits {
        arg,
        mask: SETID_BITS,
        names: "S_ISUID/S_ISGID",
    }
}

/// `__O_TMPFILE` alone (libc's `O_TMPFILE` adds `O_DIRECTORY`, which opening a directory sets).
const O_TMPFILE_BIT: u32 = 0o20_000_000;

/// The creation mode of `open`/`openat` without the setuid/setgid bits, when the flags (an
/// `int`) create a file: O_CREAT or O_TMPFILE. Without them the kernel ignores the mode.
const fn no_setid_on_create(flags: u32, mode: u32) -> ArgCheck {
    ArgCheck::NoBitsWhen {
        when_arg: flags,
        when_mask: libc::O_CREAT as u32 | O_TMPFILE_BIT,
        when_names: "O_CREAT/O_TMPFILE",
        arg: mode,
        mask: SETID_BITS,
        names: "S_ISUID/S_ISGID",
    }
}

/// The default profile: every x86-64 syscall up to Linux 6.18, in number order.
pub const PROFILE: &[Entry] = &[
    allow("read", 0, "read from a descriptor"),
    allow("write", 1, "write to a descriptor"),
    allow_if(
        "open",
        2,
        no_setid_on_create(1, 2),
        "open files (landlock and the mounts decide which); no setuid/setgid file",
    ),
    allow("close", 3, "close a descriptor"),
    allow("stat", 4, "file metadata"),
    allow("fstat", 5, "file metadata"),
    allow("lstat", 6, "file metadata"),
    allow("poll", 7, "wait for descriptors"),
    allow("lseek", 8, "move a file offset"),
    allow("mmap", 9, "map memory"),
    allow("mprotect", 10, "change memory protection (JITs)"),
    allow("munmap", 11, "unmap memory"),
    allow("brk", 12, "grow the heap"),
    allow("rt_sigaction", 13, "install signal handlers"),
    allow("rt_sigprocmask", 14, "block signals"),
    allow("rt_sigreturn", 15, "return from a signal handler"),
    allow_if(
        "ioctl",
        16,
        NOT_TTY_INJECTION,
        "terminal and device control, minus input injection",
    ),
    allow("pread64", 17, "positioned read"),
    allow("pwrite64", 18, "positioned write"),
    allow("readv", 19, "vectored read"),
    allow("writev", 20, "vectored write"),
    allow("access", 21, "check file access"),
    allow("pipe", 22, "create a pipe"),
    allow("select", 23, "wait for descriptors"),
    allow("sched_yield", 24, "yield the CPU"),
    allow("mremap", 25, "resize a mapping"),
    allow("msync", 26, "flush a mapping"),
    allow("mincore", 27, "query page residency"),
    allow("madvise", 28, "memory usage hints"),
    allow("shmget", 29, "SysV shared memory (private IPC namespace)"),
    allow("shmat", 30, "SysV shared memory (private IPC namespace)"),
    allow("shmctl", 31, "SysV shared memory (private IPC namespace)"),
    allow("dup", 32, "duplicate a descriptor"),
    allow("dup2", 33, "duplicate a descriptor"),
    allow("pause", 34, "wait for a signal"),
    allow("nanosleep", 35, "sleep"),
    allow("getitimer", 36, "interval timers"),
    allow("alarm", 37, "interval timers"),
    allow("setitimer", 38, "interval timers"),
    allow("getpid", 39, "own process id"),
    allow("sendfile", 40, "copy between descriptors"),
    allow_if(
        "socket",
        41,
        INET_OR_UNIX,
        "sockets of the families the sandbox uses; no netlink, packet, ...",
    ),
    allow(
        "connect",
        42,
        "connect a socket (net namespace and landlock decide where)",
    ),
    allow("accept", 43, "accept a connection"),
    allow("sendto", 44, "send on a socket"),
    allow("recvfrom", 45, "receive on a socket"),
    allow("sendmsg", 46, "send on a socket"),
    allow("recvmsg", 47, "receive on a socket"),
    allow("shutdown", 48, "shut a socket down"),
    allow("bind", 49, "bind a socket (landlock refuses TCP ports)"),
    allow("listen", 50, "listen on a socket"),
    allow("getsockname", 51, "socket address"),
    allow("getpeername", 52, "socket peer address"),
    allow_if(
        "socketpair",
        53,
        INET_OR_UNIX,
        "connected socket pairs of the allowed families",
    ),
    allow("setsockopt", 54, "socket options"),
    allow("getsockopt", 55, "socket options"),
    allow_if(
        "clone",
        56,
        NO_NAMESPACES,
        "threads and processes, but no new namespaces",
    ),
    allow("fork", 57, "new process"),
    allow("vfork", 58, "new process"),
    allow(
        "execve",
        59,
        "run a program (landlock checks the execute right)",
    ),
    allow("exit", 60, "end a thread"),
    allow("wait4", 61, "reap a child"),
    allow(
        "kill",
        62,
        "signal a process (own pid namespace; landlock scopes signals)",
    ),
    allow("uname", 63, "system name (own UTS namespace)"),
    allow("semget", 64, "SysV semaphores (private IPC namespace)"),
    allow("semop", 65, "SysV semaphores (private IPC namespace)"),
    allow("semctl", 66, "SysV semaphores (private IPC namespace)"),
    allow("shmdt", 67, "SysV shared memory (private IPC namespace)"),
    allow("msgget", 68, "SysV message queues (private IPC namespace)"),
    allow("msgsnd", 69, "SysV message queues (private IPC namespace)"),
    allow("msgrcv", 70, "SysV message queues (private IPC namespace)"),
    allow("msgctl", 71, "SysV message queues (private IPC namespace)"),
    allow("fcntl", 72, "descriptor flags and locks"),
    allow("flock", 73, "file locks"),
    allow("fsync", 74, "flush a file"),
    allow("fdatasync", 75, "flush a file"),
    allow(
        "truncate",
        76,
        "truncate a file (landlock checks the truncate right)",
    ),
    allow("ftruncate", 77, "truncate a file"),
    allow("getdents", 78, "list a directory"),
    allow("getcwd", 79, "current directory"),
    allow("chdir", 80, "change directory"),
    allow("fchdir", 81, "change directory"),
    allow("rename", 82, "rename a file"),
    allow_if("mkdir", 83, no_setid(1), "create a directory, not setgid"),
    allow("rmdir", 84, "remove a directory"),
    allow_if("creat", 85, no_setid(1), "create a file, not setuid/setgid"),
    allow("link", 86, "hard link"),
    allow("unlink", 87, "remove a file"),
    allow("symlink", 88, "create a symlink"),
    allow("readlink", 89, "read a symlink"),
    allow_if(
        "chmod",
        90,
        no_setid(1),
        "file mode, without setuid/setgid (the host would honour them)",
    ),
    allow_if("fchmod", 91, no_setid(1), "file mode, without setuid/setgid"),
    allow("chown", 92, "file owner (no capabilities: own files only)"),
    allow("fchown", 93, "file owner"),
    allow("lchown", 94, "file owner"),
    allow("umask", 95, "file creation mask"),
    allow("gettimeofday", 96, "clock"),
    allow("getrlimit", 97, "resource limits"),
    allow("getrusage", 98, "resource usage"),
    allow("sysinfo", 99, "memory and load figures"),
    allow("times", 100, "process times"),
    deny(
        "ptrace",
        101,
        "tracing another process reads and rewrites its memory",
    ),
    allow("getuid", 102, "own ids"),
    deny("syslog", 103, "the kernel log belongs to the host"),
    allow("getgid", 104, "own ids"),
    allow(
        "setuid",
        105,
        "change ids (no capabilities: only among its own)",
    ),
    allow(
        "setgid",
        106,
        "change ids (no capabilities: only among its own)",
    ),
    allow("geteuid", 107, "own ids"),
    allow("getegid", 108, "own ids"),
    allow("setpgid", 109, "process groups (job control)"),
    allow("getppid", 110, "parent pid"),
    allow("getpgrp", 111, "process group"),
    allow("setsid", 112, "new session"),
    allow(
        "setreuid",
        113,
        "change ids (no capabilities: only among its own)",
    ),
    allow(
        "setregid",
        114,
        "change ids (no capabilities: only among its own)",
    ),
    allow("getgroups", 115, "supplementary groups"),
    allow(
        "setgroups",
        116,
        "supplementary groups (no capabilities: fails)",
    ),
    allow(
        "setresuid",
        117,
        "change ids (no capabilities: only among its own)",
    ),
    allow("getresuid", 118, "own ids"),
    allow(
        "setresgid",
        119,
        "change ids (no capabilities: only among its own)",
    ),
    allow("getresgid", 120, "own ids"),
    allow("getpgid", 121, "process group"),
    allow(
        "setfsuid",
        122,
        "filesystem ids (no capabilities: only among its own)",
    ),
    allow(
        "setfsgid",
        123,
        "filesystem ids (no capabilities: only among its own)",
    ),
    allow("getsid", 124, "session id"),
    allow("capget", 125, "read capabilities"),
    allow(
        "capset",
        126,
        "drop capabilities (raising needs them in the bounding set: empty)",
    ),
    allow("rt_sigpending", 127, "pending signals"),
    allow("rt_sigtimedwait", 128, "wait for a signal"),
    allow("rt_sigqueueinfo", 129, "queue a signal (own pid namespace)"),
    allow("rt_sigsuspend", 130, "wait for a signal"),
    allow("sigaltstack", 131, "signal stack"),
    allow("utime", 132, "file times"),
    allow_if(
        "mknod",
        133,
        no_setid(1),
        "FIFOs and files (device nodes need CAP_MKNOD: none), not setuid/setgid",
    ),
    nosys("uselib", 134, "a.out loader, not built on x86-64 kernels"),
    allow_if(
        "personality",
        135,
        PERSONALITY_QUERY,
        "only the default; READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE weaken the process",
    ),
    deny("ustat", 136, "obsolete filesystem statistics"),
    allow("statfs", 137, "filesystem statistics"),
    allow("fstatfs", 138, "filesystem statistics"),
    deny("sysfs", 139, "obsolete filesystem type listing"),
    allow("getpriority", 140, "scheduling priority"),
    allow(
        "setpriority",
        141,
        "scheduling priority (can only lower it)",
    ),
    allow("sched_setparam", 142, "scheduling of own threads"),
    allow("sched_getparam", 143, "scheduling of own threads"),
    allow("sched_setscheduler", 144, "scheduling of own threads"),
    allow("sched_getscheduler", 145, "scheduling of own threads"),
    allow("sched_get_priority_max", 146, "scheduling limits"),
    allow("sched_get_priority_min", 147, "scheduling limits"),
    allow("sched_rr_get_interval", 148, "scheduling limits"),
    allow("mlock", 149, "lock memory (RLIMIT_MEMLOCK bounds it)"),
    allow("munlock", 150, "unlock memory"),
    allow("mlockall", 151, "lock memory (RLIMIT_MEMLOCK bounds it)"),
    allow("munlockall", 152, "unlock memory"),
    deny("vhangup", 153, "hangs up the controlling terminal"),
    deny(
        "modify_ldt",
        154,
        "16-bit segments: old kernel attack surface, unused by 64-bit code",
    ),
    deny(
        "pivot_root",
        155,
        "changing the root is bunker's job, never the program's",
    ),
    deny("_sysctl", 156, "removed sysctl interface"),
    allow(
        "prctl",
        157,
        "process attributes (names, no_new_privs, dumpable)",
    ),
    allow("arch_prctl", 158, "thread-local storage base"),
    deny("adjtimex", 159, "system clock tuning belongs to the host"),
    allow(
        "setrlimit",
        160,
        "resource limits (can only lower the hard limit)",
    ),
    deny("chroot", 161, "changing the root is bunker's job"),
    allow("sync", 162, "flush filesystems"),
    deny("acct", 163, "process accounting belongs to the host"),
    deny("settimeofday", 164, "the system clock belongs to the host"),
    deny(
        "mount",
        165,
        "mounts would let it remount its root read-write or cover paths",
    ),
    deny(
        "umount2",
        166,
        "unmounting would reveal what the masks cover",
    ),
    deny("swapon", 167, "swap belongs to the host"),
    deny("swapoff", 168, "swap belongs to the host"),
    deny("reboot", 169, "rebooting belongs to the host"),
    deny("sethostname", 170, "the hostname is set by bunker"),
    deny("setdomainname", 171, "the domain name is set by bunker"),
    deny("iopl", 172, "direct I/O port access"),
    deny("ioperm", 173, "direct I/O port access"),
    nosys("create_module", 174, "removed in Linux 2.6"),
    deny("init_module", 175, "loading kernel modules"),
    deny("delete_module", 176, "unloading kernel modules"),
    nosys("get_kernel_syms", 177, "removed in Linux 2.6"),
    nosys("query_module", 178, "removed in Linux 2.6"),
    deny("quotactl", 179, "disk quotas belong to the host"),
    nosys("nfsservctl", 180, "removed in Linux 3.1"),
    nosys("getpmsg", 181, "never implemented"),
    nosys("putpmsg", 182, "never implemented"),
    nosys("afs_syscall", 183, "never implemented"),
    nosys("tuxcall", 184, "never implemented"),
    nosys("security", 185, "never implemented"),
    allow("gettid", 186, "own thread id"),
    allow("readahead", 187, "prefetch a file"),
    allow("setxattr", 188, "extended attributes"),
    allow("lsetxattr", 189, "extended attributes"),
    allow("fsetxattr", 190, "extended attributes"),
    allow("getxattr", 191, "extended attributes"),
    allow("lgetxattr", 192, "extended attributes"),
    allow("fgetxattr", 193, "extended attributes"),
    allow("listxattr", 194, "extended attributes"),
    allow("llistxattr", 195, "extended attributes"),
    allow("flistxattr", 196, "extended attributes"),
    allow("removexattr", 197, "extended attributes"),
    allow("lremovexattr", 198, "extended attributes"),
    allow("fremovexattr", 199, "extended attributes"),
    allow("tkill", 200, "signal a thread"),
    allow("time", 201, "clock"),
    allow("futex", 202, "thread synchronisation"),
    allow("sched_setaffinity", 203, "CPU affinity of own threads"),
    allow(
        "sched_getaffinity",
        204,
        "CPU affinity (runtimes size thread pools by it)",
    ),
    allow("set_thread_area", 205, "thread-local storage"),
    allow("io_setup", 206, "Linux AIO"),
    allow("io_destroy", 207, "Linux AIO"),
    allow("io_getevents", 208, "Linux AIO"),
    allow("io_submit", 209, "Linux AIO"),
    allow("io_cancel", 210, "Linux AIO"),
    allow("get_thread_area", 211, "thread-local storage"),
    nosys("lookup_dcookie", 212, "removed in Linux 6.8 (profiling)"),
    allow("epoll_create", 213, "event loop"),
    nosys("epoll_ctl_old", 214, "never implemented"),
    nosys("epoll_wait_old", 215, "never implemented"),
    allow("remap_file_pages", 216, "rearrange a mapping (emulated)"),
    allow("getdents64", 217, "list a directory"),
    allow("set_tid_address", 218, "thread start-up"),
    allow("restart_syscall", 219, "restart after a signal"),
    allow("semtimedop", 220, "SysV semaphores (private IPC namespace)"),
    allow("fadvise64", 221, "file access hints"),
    allow("timer_create", 222, "POSIX timers"),
    allow("timer_settime", 223, "POSIX timers"),
    allow("timer_gettime", 224, "POSIX timers"),
    allow("timer_getoverrun", 225, "POSIX timers"),
    allow("timer_delete", 226, "POSIX timers"),
    deny("clock_settime", 227, "the system clock belongs to the host"),
    allow("clock_gettime", 228, "clock"),
    allow("clock_getres", 229, "clock"),
    allow("clock_nanosleep", 230, "sleep"),
    allow("exit_group", 231, "end the process"),
    allow("epoll_wait", 232, "event loop"),
    allow("epoll_ctl", 233, "event loop"),
    allow("tgkill", 234, "signal a thread"),
    allow("utimes", 235, "file times"),
    nosys("vserver", 236, "never implemented"),
    allow("mbind", 237, "NUMA policy of own memory"),
    allow("set_mempolicy", 238, "NUMA policy of own memory"),
    allow("get_mempolicy", 239, "NUMA policy of own memory"),
    allow(
        "mq_open",
        240,
        "POSIX message queues (private IPC namespace)",
    ),
    allow(
        "mq_unlink",
        241,
        "POSIX message queues (private IPC namespace)",
    ),
    allow(
        "mq_timedsend",
        242,
        "POSIX message queues (private IPC namespace)",
    ),
    allow(
        "mq_timedreceive",
        243,
        "POSIX message queues (private IPC namespace)",
    ),
    allow(
        "mq_notify",
        244,
        "POSIX message queues (private IPC namespace)",
    ),
    allow(
        "mq_getsetattr",
        245,
        "POSIX message queues (private IPC namespace)",
    ),
    deny("kexec_load", 246, "loading a new kernel"),
    allow("waitid", 247, "reap a child"),
    deny(
        "add_key",
        248,
        "kernel keyrings are not namespaced: keys of the host user",
    ),
    deny("request_key", 249, "kernel keyrings are not namespaced"),
    deny("keyctl", 250, "kernel keyrings are not namespaced"),
    allow("ioprio_set", 251, "I/O priority of own processes"),
    allow("ioprio_get", 252, "I/O priority"),
    allow("inotify_init", 253, "file change notification"),
    allow("inotify_add_watch", 254, "file change notification"),
    allow("inotify_rm_watch", 255, "file change notification"),
    deny("migrate_pages", 256, "moves another process's memory"),
    allow_if(
        "openat",
        257,
        no_setid_on_create(2, 3),
        "open files (landlock and the mounts decide which); no setuid/setgid file",
    ),
    allow_if("mkdirat", 258, no_setid(2), "create a directory, not setgid"),
    allow_if(
        "mknodat",
        259,
        no_setid(2),
        "FIFOs and files (device nodes need CAP_MKNOD: none), not setuid/setgid",
    ),
    allow("fchownat", 260, "file owner"),
    allow("futimesat", 261, "file times"),
    allow("newfstatat", 262, "file metadata"),
    allow("unlinkat", 263, "remove a file"),
    allow("renameat", 264, "rename a file"),
    allow("linkat", 265, "hard link"),
    allow("symlinkat", 266, "create a symlink"),
    allow("readlinkat", 267, "read a symlink"),
    allow_if("fchmodat", 268, no_setid(2), "file mode, without setuid/setgid"),
    allow("faccessat", 269, "check file access"),
    allow("pselect6", 270, "wait for descriptors"),
    allow("ppoll", 271, "wait for descriptors"),
    deny(
        "unshare",
        272,
        "new namespaces (a user namespace would give back capabilities)",
    ),
    allow("set_robust_list", 273, "thread start-up"),
    allow("get_robust_list", 274, "thread state"),
    allow("splice", 275, "move data between descriptors"),
    allow("tee", 276, "duplicate pipe data"),
    allow("sync_file_range", 277, "flush part of a file"),
    allow("vmsplice", 278, "map pages into a pipe"),
    deny("move_pages", 279, "moves another process's memory"),
    allow("utimensat", 280, "file times"),
    allow("epoll_pwait", 281, "event loop"),
    allow("signalfd", 282, "signals as a descriptor"),
    allow("timerfd_create", 283, "timers as a descriptor"),
    allow("eventfd", 284, "events as a descriptor"),
    allow("fallocate", 285, "reserve file space"),
    allow("timerfd_settime", 286, "timers as a descriptor"),
    allow("timerfd_gettime", 287, "timers as a descriptor"),
    allow("accept4", 288, "accept a connection"),
    allow("signalfd4", 289, "signals as a descriptor"),
    allow("eventfd2", 290, "events as a descriptor"),
    allow("epoll_create1", 291, "event loop"),
    allow("dup3", 292, "duplicate a descriptor"),
    allow("pipe2", 293, "create a pipe"),
    allow("inotify_init1", 294, "file change notification"),
    allow("preadv", 295, "vectored positioned read"),
    allow("pwritev", 296, "vectored positioned write"),
    allow("rt_tgsigqueueinfo", 297, "queue a signal to a thread"),
    deny(
        "perf_event_open",
        298,
        "performance counters: kernel attack surface and side channels",
    ),
    allow("recvmmsg", 299, "receive several messages"),
    deny("fanotify_init", 300, "filesystem-wide monitoring"),
    deny("fanotify_mark", 301, "filesystem-wide monitoring"),
    allow("prlimit64", 302, "resource limits (own processes)"),
    deny(
        "name_to_handle_at",
        303,
        "file handles pair with open_by_handle_at",
    ),
    deny(
        "open_by_handle_at",
        304,
        "opens files by handle, bypassing paths (the 'shocker' escape)",
    ),
    deny("clock_adjtime", 305, "the system clock belongs to the host"),
    allow("syncfs", 306, "flush a filesystem"),
    allow("sendmmsg", 307, "send several messages"),
    deny("setns", 308, "joining other namespaces"),
    allow("getcpu", 309, "current CPU"),
    deny("process_vm_readv", 310, "reads another process's memory"),
    deny("process_vm_writev", 311, "writes another process's memory"),
    deny(
        "kcmp",
        312,
        "compares other processes' kernel objects (ptrace access)",
    ),
    deny("finit_module", 313, "loading kernel modules"),
    allow("sched_setattr", 314, "scheduling of own threads"),
    allow("sched_getattr", 315, "scheduling of own threads"),
    allow("renameat2", 316, "rename a file"),
    allow(
        "seccomp",
        317,
        "add filters (they can only narrow this one)",
    ),
    allow("getrandom", 318, "random bytes"),
    nosys(
        "memfd_create",
        319,
        "an anonymous file is on no noexec mount: the dynamic loader would run it (ENOSYS: callers fall back)",
    ),
    deny("kexec_file_load", 320, "loading a new kernel"),
    deny("bpf", 321, "eBPF: kernel attack surface"),
    allow(
        "execveat",
        322,
        "run a program (landlock checks the execute right)",
    ),
    deny(
        "userfaultfd",
        323,
        "page-fault handling in user space widens kernel races",
    ),
    allow(
        "membarrier",
        324,
        "memory barriers across threads (runtimes)",
    ),
    allow("mlock2", 325, "lock memory (RLIMIT_MEMLOCK bounds it)"),
    allow("copy_file_range", 326, "copy between files"),
    allow("preadv2", 327, "vectored positioned read"),
    allow("pwritev2", 328, "vectored positioned write"),
    allow("pkey_mprotect", 329, "memory protection keys"),
    allow("pkey_alloc", 330, "memory protection keys"),
    allow("pkey_free", 331, "memory protection keys"),
    allow("statx", 332, "file metadata"),
    allow("io_pgetevents", 333, "Linux AIO"),
    allow(
        "rseq",
        334,
        "restartable sequences (glibc registers one per thread)",
    ),
    nosys("uretprobe", 335, "kernel-internal trampoline for uprobes"),
    allow("pidfd_send_signal", 424, "signal through a pidfd"),
    deny(
        "io_uring_setup",
        425,
        "io_uring: a second syscall interface the filter cannot see",
    ),
    deny("io_uring_enter", 426, "io_uring"),
    deny("io_uring_register", 427, "io_uring"),
    deny("open_tree", 428, "new mount API"),
    deny("move_mount", 429, "new mount API"),
    deny("fsopen", 430, "new mount API"),
    deny("fsconfig", 431, "new mount API"),
    deny("fsmount", 432, "new mount API"),
    deny("fspick", 433, "new mount API"),
    allow("pidfd_open", 434, "process descriptors (own pid namespace)"),
    nosys(
        "clone3",
        435,
        "its flags sit in memory the filter cannot read: ENOSYS makes libc use clone",
    ),
    allow("close_range", 436, "close many descriptors"),
    nosys(
        "openat2",
        437,
        "its creation mode sits in memory the filter cannot read: ENOSYS makes callers use openat",
    ),
    deny(
        "pidfd_getfd",
        438,
        "steals another process's descriptors (ptrace access)",
    ),
    allow(
        "faccessat2",
        439,
        "check file access (glibc needs it, EPERM would not fall back)",
    ),
    deny(
        "process_madvise",
        440,
        "advises on another process's memory",
    ),
    allow("epoll_pwait2", 441, "event loop"),
    deny(
        "mount_setattr",
        442,
        "new mount API: would make mounts writable",
    ),
    deny("quotactl_fd", 443, "disk quotas belong to the host"),
    allow(
        "landlock_create_ruleset",
        444,
        "landlock can only narrow rights",
    ),
    allow("landlock_add_rule", 445, "landlock can only narrow rights"),
    allow(
        "landlock_restrict_self",
        446,
        "landlock can only narrow rights",
    ),
    allow(
        "memfd_secret",
        447,
        "memory hidden from the kernel's direct map",
    ),
    deny("process_mrelease", 448, "reaps another process's memory"),
    allow("futex_waitv", 449, "thread synchronisation"),
    allow("set_mempolicy_home_node", 450, "NUMA policy of own memory"),
    allow("cachestat", 451, "page cache statistics of own files"),
    allow_if("fchmodat2", 452, no_setid(2), "file mode, without setuid/setgid"),
    allow("map_shadow_stack", 453, "CET shadow stacks"),
    allow("futex_wake", 454, "thread synchronisation"),
    allow("futex_wait", 455, "thread synchronisation"),
    allow("futex_requeue", 456, "thread synchronisation"),
    deny("statmount", 457, "mount introspection"),
    deny("listmount", 458, "mount introspection"),
    deny(
        "lsm_get_self_attr",
        459,
        "LSM attributes belong to the host",
    ),
    deny(
        "lsm_set_self_attr",
        460,
        "LSM attributes belong to the host",
    ),
    deny("lsm_list_modules", 461, "LSM attributes belong to the host"),
    allow("mseal", 462, "seal own mappings"),
    allow("setxattrat", 463, "extended attributes"),
    allow("getxattrat", 464, "extended attributes"),
    allow("listxattrat", 465, "extended attributes"),
    allow("removexattrat", 466, "extended attributes"),
    deny("open_tree_attr", 467, "new mount API"),
    allow("file_getattr", 468, "inode attributes"),
    allow("file_setattr", 469, "inode attributes"),
];

/// What the filter does with a syscall number the table does not name.
pub const UNKNOWN: Verdict = Verdict::Errno(libc::ENOSYS as u16);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The number of the syscall the table calls `name`.
    pub(crate) fn nr(name: &str) -> u32 {
        PROFILE.iter().find(|e| e.name == name).unwrap().nr
    }

    #[test]
    fn table_is_sorted_unique_and_matches_libc_numbers() {
        for pair in PROFILE.windows(2) {
            assert!(
                pair[0].nr < pair[1].nr,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        let known: &[(&str, libc::c_long)] = &[
            ("read", libc::SYS_read),
            ("ioctl", libc::SYS_ioctl),
            ("socket", libc::SYS_socket),
            ("clone", libc::SYS_clone),
            ("ptrace", libc::SYS_ptrace),
            ("personality", libc::SYS_personality),
            ("pivot_root", libc::SYS_pivot_root),
            ("mount", libc::SYS_mount),
            ("keyctl", libc::SYS_keyctl),
            ("unshare", libc::SYS_unshare),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("setns", libc::SYS_setns),
            ("bpf", libc::SYS_bpf),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("rseq", libc::SYS_rseq),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("clone3", libc::SYS_clone3),
            ("faccessat2", libc::SYS_faccessat2),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("mseal", libc::SYS_mseal),
        ];
        for (name, number) in known {
            assert_eq!(i64::from(nr(name)), *number, "{name}");
        }
        for e in PROFILE {
            assert!(
                !e.reason.is_empty() && !e.reason.contains('\n'),
                "{}",
                e.name
            );
        }
    }
}
