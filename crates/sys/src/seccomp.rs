//! seccomp: a small classic-BPF assembler with labels, an interpreter for testing the programs it
//! builds, and the installation of a filter on the calling thread.
//!
//! The assembler exists because classic BPF only jumps forward, and a conditional jump reaches at
//! most 255 instructions: `Asm::finish` lays the program out and turns every conditional jump that
//! would be too far into a short one over two unconditional `ja` (which reach 2^32).

use crate::error::{SysError, SysResult};

/// `AUDIT_ARCH_X86_64`: the `arch` field of `seccomp_data` for native x86-64 syscalls
/// (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386`: 32-bit syscalls (`int 0x80`) made by a 64-bit process.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: x32 syscalls share the x86-64 arch value and set this bit in `nr`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data` (little-endian x86-64).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const BPF_JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGT_K: u16 = 0x05 | 0x20;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

/// The kernel's limit on one filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// What a filter answers for a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run the syscall.
    Allow,
    /// Fail it with this errno, without running it.
    Errno(u16),
    /// Kill the whole process (SECCOMP_RET_KILL_PROCESS).
    KillProcess,
}

impl Verdict {
    /// The `SECCOMP_RET_*` value.
    pub fn to_ret(self) -> u32 {
        match self {
            Verdict::Allow => libc::SECCOMP_RET_ALLOW,
            Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Verdict::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }

    /// The verdict a `SECCOMP_RET_*` value stands for (`None` for actions bunker never emits).
    pub fn from_ret(ret: u32) -> Option<Verdict> {
        match ret & libc::SECCOMP_RET_ACTION_FULL {
            libc::SECCOMP_RET_ALLOW => Some(Verdict::Allow),
            libc::SECCOMP_RET_ERRNO => Some(Verdict::Errno((ret & libc::SECCOMP_RET_DATA) as u16)),
            libc::SECCOMP_RET_KILL_PROCESS => Some(Verdict::KillProcess),
            _ => None,
        }
    }
}

/// Conditions of a conditional jump on the accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `A == k`
    Eq,
    /// `A > k`
    Gt,
    /// `A >= k`
    Ge,
    /// `A & k != 0`
    Set,
}

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Op {
    Load(u32),
    And(u32),
    Jump {
        cond: Cond,
        k: u32,
        t: Label,
        f: Label,
    },
    Goto(Label),
    Ret(u32),
    Bind(Label),
}

/// Why a program could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("seccomp filter: label {0} is never bound")]
    Unbound(usize),
    #[error("seccomp filter: label {0} is bound twice")]
    BoundTwice(usize),
    #[error("seccomp filter: jump backwards to label {0} (classic BPF only jumps forward)")]
    Backward(usize),
    #[error("seccomp filter: {0} instructions, more than the kernel's {MAX_INSNS}")]
    TooLong(usize),
}

/// A classic BPF program under construction, with symbolic jump targets.
#[derive(Debug, Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label));
    }

    /// `A = seccomp_data.nr`
    pub fn load_nr(&mut self) {
        self.ops.push(Op::Load(OFFSET_NR));
    }

    /// `A = seccomp_data.arch`
    pub fn load_arch(&mut self) {
        self.ops.push(Op::Load(OFFSET_ARCH));
    }

    /// `A = low 32 bits of seccomp_data.args[index]`
    pub fn load_arg_low(&mut self, index: u32) {
        self.ops.push(Op::Load(OFFSET_ARGS + 8 * index));
    }

    /// `A = high 32 bits of seccomp_data.args[index]`
    pub fn load_arg_high(&mut self, index: u32) {
        self.ops.push(Op::Load(OFFSET_ARGS + 8 * index + 4));
    }

    /// `A &= mask`
    pub fn and(&mut self, mask: u32) {
        self.ops.push(Op::And(mask));
    }

    /// `if A <cond> k goto t else goto f`
    pub fn jump(&mut self, cond: Cond, k: u32, t: Label, f: Label) {
        self.ops.push(Op::Jump { cond, k, t, f });
    }

    /// `goto target`
    pub fn goto(&mut self, target: Label) {
        self.ops.push(Op::Goto(target));
    }

    /// `return verdict`
    pub fn ret(&mut self, verdict: Verdict) {
        self.ops.push(Op::Ret(verdict.to_ret()));
    }

    /// Lays the program out and resolves the labels.
    pub fn finish(&self) -> Result<Vec<Insn>, AsmError> {
        // `long[i]`: the jump at op i is emitted as `jcond k,0,1; ja t; ja f`.
        let mut long = vec![false; self.ops.len()];
        loop {
            let (positions, label_pos, _) = self.layout(&long)?;
            let mut changed = false;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Jump { t, f, .. } = op {
                    if long[i] {
                        continue;
                    }
                    let next = positions[i] + 1;
                    for label in [t, f] {
                        let target = label_pos[label.0];
                        if target < next {
                            return Err(AsmError::Backward(label.0));
                        }
                        if target - next > usize::from(u8::MAX) {
                            long[i] = true;
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                return self.emit(&long, &positions, &label_pos);
            }
        }
    }

    /// Positions of every op and label, and the total length, for the given jump sizes.
    fn layout(&self, long: &[bool]) -> Result<(Vec<usize>, Vec<usize>, usize), AsmError> {
        let mut positions = Vec::with_capacity(self.ops.len());
        let mut label_pos = vec![usize::MAX; self.labels];
        let mut pc = 0usize;
        for (i, op) in self.ops.iter().enumerate() {
            positions.push(pc);
            match op {
                Op::Bind(label) => {
                    if label_pos[label.0] != usize::MAX {
                        return Err(AsmError::BoundTwice(label.0));
                    }
                    label_pos[label.0] = pc;
                }
                Op::Jump { .. } if long[i] => pc += 3,
                _ => pc += 1,
            }
        }
        if let Some(unbound) = label_pos.iter().position(|p| *p == usize::MAX) {
            return Err(AsmError::Unbound(unbound));
        }
        Ok((positions, label_pos, pc))
    }

    fn emit(
        &self,
        long: &[bool],
        positions: &[usize],
        label_pos: &[usize],
    ) -> Result<Vec<Insn>, AsmError> {
        let mut out = Vec::with_capacity(positions.last().map_or(0, |p| p + 3));
        let offset = |from_next: usize, label: Label| -> Result<usize, AsmError> {
            label_pos[label.0]
                .checked_sub(from_next)
                .ok_or(AsmError::Backward(label.0))
        };
        for (i, op) in self.ops.iter().enumerate() {
            let pc = positions[i];
            match *op {
                Op::Bind(_) => {}
                Op::Load(off) => out.push(insn(BPF_LD_W_ABS, 0, 0, off)),
                Op::And(mask) => out.push(insn(BPF_ALU_AND_K, 0, 0, mask)),
                Op::Ret(value) => out.push(insn(BPF_RET_K, 0, 0, value)),
                Op::Goto(target) => {
                    let off = offset(pc + 1, target)?;
                    out.push(insn(BPF_JMP_JA, 0, 0, off as u32));
                }
                Op::Jump { cond, k, t, f } => {
                    let code = match cond {
                        Cond::Eq => BPF_JMP_JEQ_K,
                        Cond::Gt => BPF_JMP_JGT_K,
                        Cond::Ge => BPF_JMP_JGE_K,
                        Cond::Set => BPF_JMP_JSET_K,
                    };
                    if long[i] {
                        out.push(insn(code, 0, 1, k));
                        out.push(insn(BPF_JMP_JA, 0, 0, offset(pc + 2, t)? as u32));
                        out.push(insn(BPF_JMP_JA, 0, 0, offset(pc + 3, f)? as u32));
                    } else {
                        // In range: `finish` checked both offsets fit in a u8.
                        let jt = offset(pc + 1, t)? as u8;
                        let jf = offset(pc + 1, f)? as u8;
                        out.push(insn(code, jt, jf, k));
                    }
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(AsmError::TooLong(out.len()));
        }
        Ok(out)
    }
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The input of a seccomp filter (`struct seccomp_data`), for [`simulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallData {
    pub nr: u32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SyscallData {
    /// A native x86-64 call of `nr` with these arguments (the rest zero).
    pub fn x86_64(nr: u32, args: &[u64]) -> SyscallData {
        let mut all = [0u64; 6];
        for (slot, value) in all.iter_mut().zip(args) {
            *slot = *value;
        }
        SyscallData {
            nr,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0,
            args: all,
        }
    }

    fn word(&self, offset: u32) -> Option<u32> {
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&self.nr.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.arch.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.instruction_pointer.to_le_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let start = offset as usize;
        let slice = bytes.get(start..start + 4)?;
        Some(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
    }
}

/// Runs a program the way the kernel would, for the instructions [`Asm`] emits; returns the
/// `SECCOMP_RET_*` value, or `None` for a malformed program (which the kernel would refuse).
pub fn simulate(program: &[Insn], data: &SyscallData) -> Option<u32> {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = program.get(pc)?;
        pc += 1;
        match ins.code {
            BPF_LD_W_ABS => acc = data.word(ins.k)?,
            BPF_ALU_AND_K => acc &= ins.k,
            BPF_RET_K => return Some(ins.k),
            BPF_JMP_JA => pc = pc.checked_add(ins.k as usize)?,
            BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K | BPF_JMP_JSET_K => {
                let taken = match ins.code {
                    BPF_JMP_JEQ_K => acc == ins.k,
                    BPF_JMP_JGT_K => acc > ins.k,
                    BPF_JMP_JGE_K => acc >= ins.k,
                    _ => acc & ins.k != 0,
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            _ => return None,
        }
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: execve can no longer grant privileges (setuid bits, file
/// capabilities). Required before an unprivileged seccomp filter or landlock domain; idempotent.
pub fn set_no_new_privs() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed to the kernel.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SysError::last("prctl(PR_SET_NO_NEW_PRIVS, 1)"));
    }
    Ok(())
}

/// Whether no_new_privs is set on the calling thread.
pub fn no_new_privs() -> SysResult<bool> {
    // SAFETY: prctl with integer arguments only; no memory is passed to the kernel.
    let rc = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if rc < 0 {
        return Err(SysError::last("prctl(PR_GET_NO_NEW_PRIVS)"));
    }
    Ok(rc == 1)
}

/// Installs `program` as a seccomp filter on the calling thread (inherited by its children and
/// kept across execve). Needs no_new_privs (or CAP_SYS_ADMIN in the current user namespace).
pub fn install_filter(program: &[Insn]) -> SysResult<()> {
    let call = || {
        format!(
            "seccomp(SECCOMP_SET_MODE_FILTER, 0, <{} insns>)",
            program.len()
        )
    };
    if program.is_empty() || program.len() > MAX_INSNS {
        return Err(SysError::from_errno(call(), libc::EINVAL));
    }
    let mut filters: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filters`, a live array of exactly `len` sock_filter structs that
    // outlives the call; the kernel copies the program and keeps no pointer to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SysError::last(call()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_jumps_are_relaxed_through_ja() {
        let mut asm = Asm::new();
        let far = asm.label();
        let near = asm.label();
        asm.load_nr();
        asm.jump(Cond::Eq, 7, far, near);
        asm.bind(near);
        for _ in 0..300 {
            asm.ret(Verdict::Errno(1));
        }
        asm.bind(far);
        asm.ret(Verdict::Allow);
        let prog = asm.finish().unwrap();
        assert_eq!(prog.len(), 1 + 3 + 300 + 1);
        let run = |nr| Verdict::from_ret(simulate(&prog, &SyscallData::x86_64(nr, &[])).unwrap());
        assert_eq!(run(7), Some(Verdict::Allow));
        assert_eq!(run(8), Some(Verdict::Errno(1)));
    }

    #[test]
    fn args_are_split_into_low_and_high_words() {
        let mut asm = Asm::new();
        let (yes, no) = (asm.label(), asm.label());
        asm.load_arg_high(1);
        asm.jump(Cond::Eq, 0xdead, yes, no);
        asm.bind(yes);
        asm.ret(Verdict::Allow);
        asm.bind(no);
        asm.ret(Verdict::KillProcess);
        let prog = asm.finish().unwrap();
        let data = SyscallData::x86_64(0, &[0, 0xdead_0000_0001]);
        assert_eq!(simulate(&prog, &data), Some(libc::SECCOMP_RET_ALLOW));
        let data = SyscallData::x86_64(0, &[0, 0xdead]);
        assert_eq!(simulate(&prog, &data), Some(libc::SECCOMP_RET_KILL_PROCESS));
    }

    #[test]
    fn unbound_and_backward_labels_are_errors() {
        let mut asm = Asm::new();
        let l = asm.label();
        asm.goto(l);
        assert_eq!(asm.finish(), Err(AsmError::Unbound(0)));
        let mut asm = Asm::new();
        let l = asm.label();
        asm.bind(l);
        asm.ret(Verdict::Allow);
        asm.goto(l);
        assert_eq!(asm.finish(), Err(AsmError::Backward(0)));
    }
}
