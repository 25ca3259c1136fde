# Syscall attacks for bunker's seccomp tests: each is tried and its result printed as one JSON
# object {name: "ok" | errno name}. Each attack has an allowed counterpart (`control_*`) so a
# test can tell "blocked by the filter" from "broken in some other way".
import ctypes
import errno
import json
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a


def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[arg(a) for a in args])
    e = ctypes.get_errno()
    return r, ("ok" if r >= 0 else errno.errorcode.get(e, str(e)))


def res(nr, *args):
    return sc(nr, *args)[1]


CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
SIGCHLD = 17
MS_REMOUNT, MS_BIND = 32, 4096
TIOCSTI, TIOCGWINSZ = 0x5412, 0x5413
out = {}

# Mounts. The target is argv[1] (default: the root): tests outside a mount namespace pass a
# path that does not exist, so even an unfiltered call could change nothing.
target = (sys.argv[1] if len(sys.argv) > 1 else "/").encode()
out["mount_tmpfs"] = res(165, b"none", target, b"tmpfs", 0, 0)
out["remount_root_rw"] = res(165, 0, target, 0, MS_REMOUNT | MS_BIND, 0)
out["fsopen"] = res(430, b"tmpfs", 0)
out["control_statfs"] = res(137, b"/tmp", ctypes.create_string_buffer(256))

# Namespaces: unshare, and clone with a namespace flag (a child that got through exits at once).
out["unshare_user"] = res(272, CLONE_NEWUSER)
out["unshare_user_mount"] = res(272, CLONE_NEWUSER | CLONE_NEWNS)
r, name = sc(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
if r == 0:
    os._exit(0)
if r > 0:
    os.waitpid(r, 0)
out["clone_newuser"] = name
out["clone3"] = res(435, ctypes.create_string_buffer(88), 88)
out["setns"] = res(308, 0, 0)
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
out["control_fork"] = "ok"

# io_uring, bpf, perf, keyrings, userfaultfd, handles.
out["io_uring_setup"] = res(425, 1, ctypes.create_string_buffer(120))
out["control_epoll_create1"] = res(291, 0)
out["bpf"] = res(321, 0, ctypes.create_string_buffer(72), 72)
attr = ctypes.create_string_buffer(128)
attr[4:8] = (128).to_bytes(4, "little")  # size; type 0 = PERF_TYPE_HARDWARE
out["perf_event_open"] = res(298, attr, 0, -1, -1, 0)
out["keyctl"] = res(250, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
out["add_key"] = res(248, b"user", b"bunker", b"x", 1, -3)
out["userfaultfd"] = res(323, 0)
out["open_by_handle_at"] = res(304, -100, ctypes.create_string_buffer(136), 0)

# ptrace: on itself and on a child.
out["ptrace_traceme"] = res(101, 0, 0, 0, 0)
child = os.fork()
if child == 0:
    import time
    time.sleep(5)
    os._exit(0)
out["ptrace_attach_child"] = res(101, 16, child, 0, 0)
out["process_vm_readv"] = res(310, child, 0, 0, 0, 0, 0)
out["control_kill_child"] = res(62, child, 0)
os.kill(child, 9)
os.waitpid(child, 0)

# Architectures and personality. The i386 call goes through `int 0x80` from machine code in an
# executable page, in a child: the filter kills the process (SIGSYS) for a foreign arch.
import mmap


def run_code(code):
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return ctypes.CFUNCTYPE(ctypes.c_long)(addr)()


def in_child(code):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if run_code(code) == os.getpid() else 3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "SIGSYS" if os.WTERMSIG(status) == 31 else "signal %d" % os.WTERMSIG(status)
    return "ok" if os.WEXITSTATUS(status) == 0 else "exit %d" % os.WEXITSTATUS(status)


out["i386_int80_getpid"] = in_child(b"\xb8\x14\x00\x00\x00\xcd\x80\xc3")  # mov eax,20; int 0x80
out["control_native_getpid"] = in_child(b"\xb8\x27\x00\x00\x00\x0f\x05\xc3")  # mov eax,39; syscall
out["x32_getpid"] = res(0x40000000 | 39)
out["control_getpid"] = res(39)
out["personality_read_implies_exec"] = res(135, 0x0400000)
out["control_personality_query"] = res(135, 0xFFFFFFFF)

# Socket families.
out["socket_netlink"] = res(41, socket.AF_NETLINK, socket.SOCK_RAW, 0)
out["socket_packet"] = res(41, 17, socket.SOCK_RAW, 0)
out["socketpair_netlink"] = res(53, socket.AF_NETLINK, socket.SOCK_RAW, 0, ctypes.create_string_buffer(8))
out["control_socket_unix"] = res(41, socket.AF_UNIX, socket.SOCK_STREAM, 0)
out["control_socket_inet"] = res(41, socket.AF_INET, socket.SOCK_STREAM, 0)

# Terminal injection: on a pty made here when there is one, else on a pipe (where an unfiltered
# TIOCSTI would answer ENOTTY, so EPERM still tells the filter answered).
try:
    master, slave = os.openpty()
    out["tty"] = "pty"
except OSError:
    master, slave = os.pipe()
    out["tty"] = "pipe"
c = ctypes.c_char(b"x")
out["tiocsti"] = res(16, slave, TIOCSTI, ctypes.byref(c))
out["tiocsti_high_bits"] = res(16, slave, (1 << 32) | TIOCSTI, ctypes.byref(c))
out["tioclinux"] = res(16, slave, 0x541C, ctypes.byref(c))
out["control_tiocgwinsz"] = res(16, slave, TIOCGWINSZ, ctypes.create_string_buffer(8))

print(json.dumps(out))
sys.stdout.flush()
