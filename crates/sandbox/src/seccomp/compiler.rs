//! The profile compiled into a classic BPF program.

use bunker_sys::seccomp::{self as bpf, Asm, Cond, Insn, Label, Verdict};

use super::profile::{Action, ArgCheck, Entry, PROFILE, UNKNOWN};

const EPERM: Verdict = Verdict::Errno(libc::EPERM as u16);

/// Compiles [`PROFILE`] into a classic BPF program.
pub fn compile() -> Result<Vec<Insn>, bpf::AsmError> {
    compile_entries(PROFILE)
}

/// Where a range of syscall numbers goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ret(Verdict),
    Check(usize),
}

fn compile_entries(entries: &[Entry]) -> Result<Vec<Insn>, bpf::AsmError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.nr);

    // Cover [0, 2^32) with ranges (first number, target); holes go to UNKNOWN.
    let mut ranges: Vec<(u32, Target)> = Vec::new();
    let push = |ranges: &mut Vec<(u32, Target)>, start: u32, target: Target| {
        if ranges.last().map(|r| r.1) != Some(target) {
            ranges.push((start, target));
        }
    };
    let mut next = 0u32;
    for (i, entry) in sorted.iter().enumerate() {
        if entry.nr > next {
            push(&mut ranges, next, Target::Ret(UNKNOWN));
        }
        let target = match entry.action {
            Action::Allow => Target::Ret(Verdict::Allow),
            Action::Deny => Target::Ret(EPERM),
            Action::NoSys => Target::Ret(UNKNOWN),
            Action::AllowIf(_) => Target::Check(i),
        };
        push(&mut ranges, entry.nr, target);
        next = entry.nr + 1;
    }
    push(&mut ranges, next, Target::Ret(UNKNOWN));

    let mut asm = Asm::new();
    let native = asm.label();
    let foreign = asm.label();
    asm.load_arch();
    asm.jump(Cond::Eq, bpf::AUDIT_ARCH_X86_64, native, foreign);
    asm.bind(foreign);
    asm.ret(Verdict::KillProcess);
    asm.bind(native);
    asm.load_nr();
    let x32 = asm.label();
    let dispatch = asm.label();
    asm.jump(Cond::Set, bpf::X32_SYSCALL_BIT, x32, dispatch);
    asm.bind(x32);
    asm.ret(EPERM);
    asm.bind(dispatch);

    // One label per argument check, in the order of `sorted` (None for the other entries).
    let check_labels: Vec<Option<Label>> = sorted
        .iter()
        .map(|e| matches!(e.action, Action::AllowIf(_)).then(|| asm.label()))
        .collect();
    search(&mut asm, &ranges, &check_labels);

    for (entry, label) in sorted.iter().zip(&check_labels) {
        if let (Action::AllowIf(check), Some(label)) = (entry.action, label) {
            asm.bind(*label);
            emit_check(&mut asm, &check);
        }
    }
    asm.finish()
}

/// A binary search over `ranges` (sorted by first number; the accumulator holds `nr`).
fn search(asm: &mut Asm, ranges: &[(u32, Target)], checks: &[Option<Label>]) {
    if let [(_, target)] = ranges {
        match *target {
            Target::Ret(verdict) => asm.ret(verdict),
            Target::Check(i) => match checks[i] {
                Some(label) => asm.goto(label),
                None => asm.ret(EPERM),
            },
        }
        return;
    }
    let mid = ranges.len() / 2;
    let (low, high) = (asm.label(), asm.label());
    asm.jump(Cond::Ge, ranges[mid].0, high, low);
    asm.bind(low);
    search(asm, &ranges[..mid], checks);
    asm.bind(high);
    search(asm, &ranges[mid..], checks);
}

fn emit_check(asm: &mut Asm, check: &ArgCheck) {
    let (pass, fail) = (asm.label(), asm.label());
    match *check {
        ArgCheck::NoBits { arg, mask, .. } => {
            asm.load_arg_low(arg);
            asm.jump(Cond::Set, mask, fail, pass);
        }
        ArgCheck::OneOf { arg, values, .. } => {
            asm.load_arg_low(arg);
            for value in values {
                let no = asm.label();
                asm.jump(Cond::Eq, *value, pass, no);
                asm.bind(no);
            }
            asm.goto(fail);
        }
        ArgCheck::NoneOf { arg, values, .. } => {
            asm.load_arg_low(arg);
            for value in values {
                let no = asm.label();
                asm.jump(Cond::Eq, *value, fail, no);
                asm.bind(no);
            }
            asm.goto(pass);
        }
        ArgCheck::NoBitsWhen {
            when_arg,
            when_mask,
            arg,
            mask,
            ..
        } => {
            let creates = asm.label();
            asm.load_arg_low(when_arg);
            asm.jump(Cond::Set, when_mask, creates, pass);
            asm.bind(creates);
            asm.load_arg_low(arg);
            asm.jump(Cond::Set, mask, fail, pass);
        }
    }
    asm.bind(pass);
    asm.ret(Verdict::Allow);
    asm.bind(fail);
    asm.ret(EPERM);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::profile::tests::nr;
    use bunker_sys::seccomp::{simulate, SyscallData};

    fn verdict(prog: &[Insn], data: SyscallData) -> Verdict {
        Verdict::from_ret(simulate(prog, &data).expect("program runs")).expect("known verdict")
    }

    fn call(prog: &[Insn], nr: u32, args: &[u64]) -> Verdict {
        verdict(prog, SyscallData::x86_64(nr, args))
    }

    #[test]
    fn every_entry_gets_its_action() {
        let prog = compile().unwrap();
        for e in PROFILE {
            let got = call(&prog, e.nr, &[]);
            let want = match e.action {
                Action::Allow => Verdict::Allow,
                Action::Deny => EPERM,
                Action::NoSys => UNKNOWN,
                // All-zero arguments: clone(0) and personality(0) pass, socket(0) does not,
                // ioctl(_, 0) passes.
                Action::AllowIf(ArgCheck::OneOf { values, .. }) if !values.contains(&0) => EPERM,
                Action::AllowIf(_) => Verdict::Allow,
            };
            assert_eq!(got, want, "{} ({})", e.name, e.nr);
        }
    }

    #[test]
    fn holes_and_new_syscalls_get_enosys() {
        let prog = compile().unwrap();
        for n in [336, 400, 423, 470, 1000, 0x3fff_ffff] {
            assert_eq!(call(&prog, n, &[]), UNKNOWN, "nr {n}");
        }
    }

    #[test]
    fn foreign_architectures_are_killed_and_x32_refused() {
        let prog = compile().unwrap();
        let mut data = SyscallData::x86_64(nr("read"), &[]);
        data.arch = bpf::AUDIT_ARCH_I386;
        assert_eq!(verdict(&prog, data), Verdict::KillProcess);
        // x32 getpid: same arch value, x32 bit in nr.
        assert_eq!(call(&prog, bpf::X32_SYSCALL_BIT | 39, &[]), EPERM);
        assert_eq!(call(&prog, 39, &[]), Verdict::Allow);
    }

    #[test]
    fn clone_is_refused_with_any_namespace_flag() {
        let prog = compile().unwrap();
        let clone = nr("clone");
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(call(&prog, clone, &[thread_flags]), Verdict::Allow);
        assert_eq!(call(&prog, clone, &[libc::SIGCHLD as u64]), Verdict::Allow);
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWCGROUP,
        ] {
            let flags = flag as u64 | libc::SIGCHLD as u64;
            assert_eq!(call(&prog, clone, &[flags]), EPERM, "flag {flag:#x}");
        }
        assert_eq!(call(&prog, nr("clone3"), &[]), UNKNOWN);
        assert_eq!(call(&prog, nr("unshare"), &[0]), EPERM);
    }

    #[test]
    fn ioctl_tty_injection_is_refused_even_with_high_bits() {
        let prog = compile().unwrap();
        let ioctl = nr("ioctl");
        assert_eq!(call(&prog, ioctl, &[0, 0x5413]), Verdict::Allow); // TIOCGWINSZ
        assert_eq!(call(&prog, ioctl, &[0, 0x5412]), EPERM); // TIOCSTI
        assert_eq!(call(&prog, ioctl, &[0, 0x541C]), EPERM); // TIOCLINUX
                                                             // The kernel truncates cmd to 32 bits, so the filter must too.
        assert_eq!(call(&prog, ioctl, &[0, 0x1_0000_5412]), EPERM);
    }

    #[test]
    fn only_unix_and_inet_sockets() {
        let prog = compile().unwrap();
        for family in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6] {
            assert_eq!(
                call(&prog, nr("socket"), &[family as u64, 1]),
                Verdict::Allow
            );
            assert_eq!(
                call(&prog, nr("socketpair"), &[family as u64, 1]),
                Verdict::Allow
            );
        }
        for family in [
            libc::AF_NETLINK,
            libc::AF_PACKET,
            libc::AF_VSOCK,
            libc::AF_ALG,
            0,
        ] {
            assert_eq!(
                call(&prog, nr("socket"), &[family as u64, 1]),
                EPERM,
                "{family}"
            );
            assert_eq!(
                call(&prog, nr("socketpair"), &[family as u64, 1]),
                EPERM,
                "{family}"
            );
        }
        assert_eq!(call(&prog, nr("socket"), &[(1u64 << 32) | 16, 1]), EPERM);
    }

    #[test]
    fn setuid_and_setgid_modes_are_refused_in_every_mode_argument() {
        let prog = compile().unwrap();
        // (call, index of the mode argument)
        for (name, mode) in [
            ("chmod", 1),
            ("fchmod", 1),
            ("mkdir", 1),
            ("creat", 1),
            ("mknod", 1),
            ("mkdirat", 2),
            ("mknodat", 2),
            ("fchmodat", 2),
            ("fchmodat2", 2),
        ] {
            for bits in [0o4755u64, 0o2755, 0o6777, 0o104755, 0x1_0000_4755] {
                let mut args = [0u64; 4];
                args[mode] = bits;
                assert_eq!(call(&prog, nr(name), &args), EPERM, "{name} {bits:#o}");
            }
            let mut args = [0u64; 4];
            args[mode] = 0o1777;
            assert_eq!(call(&prog, nr(name), &args), Verdict::Allow, "{name}");
        }
        let creat = libc::O_CREAT as u64 | libc::O_WRONLY as u64;
        let tmpfile = libc::O_TMPFILE as u64 | libc::O_RDWR as u64;
        for (name, flags) in [("open", 1), ("openat", 2)] {
            let mut args = [0u64; 4];
            for (f, bits, want) in [
                (creat, 0o4755, EPERM),
                (tmpfile, 0o2700, EPERM),
                (creat | (1 << 32), 0o6000, EPERM),
                (creat, 0o755, Verdict::Allow),
                // Without O_CREAT/O_TMPFILE the kernel ignores the mode.
                (libc::O_RDONLY as u64, 0o4755, Verdict::Allow),
                (libc::O_DIRECTORY as u64, 0o6777, Verdict::Allow),
            ] {
                args[flags] = f;
                args[flags + 1] = bits;
                assert_eq!(
                    call(&prog, nr(name), &args),
                    want,
                    "{name} {f:#o} {bits:#o}"
                );
            }
        }
        assert_eq!(call(&prog, nr("openat2"), &[]), UNKNOWN);
        assert_eq!(call(&prog, nr("memfd_create"), &[]), UNKNOWN);
    }

    #[test]
    fn personality_only_default_or_query() {
        let prog = compile().unwrap();
        let p = nr("personality");
        assert_eq!(call(&prog, p, &[0]), Verdict::Allow);
        assert_eq!(call(&prog, p, &[0xffff_ffff]), Verdict::Allow);
        assert_eq!(call(&prog, p, &[0x0040_0000]), EPERM); // READ_IMPLIES_EXEC
        assert_eq!(call(&prog, p, &[0x0004_0000]), EPERM); // ADDR_NO_RANDOMIZE
    }

    #[test]
    fn program_is_small_enough() {
        let prog = compile().unwrap();
        assert!(prog.len() < 400, "{} instructions", prog.len());
    }
}
