//! The escape suite for the filesystem, process and IPC boundary: each attack runs inside
//! `bunker run`, as root and rootless, and must fail; each test also runs a control (the same
//! program doing an allowed thing) that must succeed, so a broken sandbox *and* a broken test
//! both show up.
//!
//! Attack programs print `BLOCKED <why>` or `ESCAPED <what>`; controls print `CONTROL-OK`.

// Helpers outside #[test] functions panic on purpose (a failed step is a failed test);
// common::modes() has a function-pointer type clippy finds complex.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{arg, assert_control, mkdir, modes, shared_tempdir, stderr, stdout, write_file};

/// Runs python `code` in the sandbox with extra `flags`.
fn py(cmd: fn() -> Command, flags: &[String], code: &str) -> Output {
    cmd()
        .arg("run")
        .args(flags)
        .args(["--", "python3", "-c", code])
        .output()
        .unwrap()
}

/// Asserts the attack printed BLOCKED and nothing ESCAPED.
fn assert_blocked(mode: &str, what: &str, out: &Output) {
    let text = stdout(out);
    assert!(
        text.contains("BLOCKED") && !text.contains("ESCAPED"),
        "{mode}: {what} was not blocked:\nstdout: {text}\nstderr: {}",
        stderr(out)
    );
}

/// Python that tries to read `path` and reports.
fn try_read(path: &str) -> String {
    format!(
        "try:\n\
         \x20   data = open({path:?}, 'rb').read()\n\
         \x20   print('ESCAPED read', len(data))\n\
         except OSError as e:\n\
         \x20   print('BLOCKED', e.errno, e.strerror)\n"
    )
}

#[test]
fn etc_shadow_cannot_be_read() {
    for (mode, cmd) in modes() {
        // Not granted: not even there.
        assert_blocked(
            mode,
            "/etc/shadow (default policy)",
            &py(cmd, &[], &try_read("/etc/shadow")),
        );
        // Granted /etc: the file is there, but host root's file is not readable by the sandbox.
        let flags = ["--allow-read".to_string(), "/etc".to_string()];
        assert_blocked(
            mode,
            "/etc/shadow (/etc granted)",
            &py(cmd, &flags, &try_read("/etc/shadow")),
        );
        let control = py(
            cmd,
            &flags,
            "open('/etc/hostname').read(); print('CONTROL-OK')",
        );
        assert_control(mode, "/etc/hostname", &control);
    }
}

#[test]
fn a_secret_outside_allow_read_cannot_be_read() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let public = mkdir(tmp.path(), "public", 0o755);
        write_file(&public, "ok.txt", "public");
        let secret = write_file(tmp.path(), "secret.txt", "TOP-SECRET");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let flags = ["--allow-read".to_string(), arg(&public)];
        for path in [arg(&secret), format!("{}/../secret.txt", public.display())] {
            assert_blocked(mode, &path, &py(cmd, &flags, &try_read(&path)));
        }
        let control = py(
            cmd,
            &flags,
            &format!(
                "assert open('{}/ok.txt').read() == 'public'; print('CONTROL-OK')",
                public.display()
            ),
        );
        assert_control(mode, "reading the granted dir", &control);
    }
}

#[test]
fn nothing_is_written_outside_allow_write() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let writable = mkdir(tmp.path(), "rw", 0o777);
        // World-writable on the host, but only granted for reading.
        let readonly = mkdir(tmp.path(), "ro", 0o777);
        let flags = [
            "--allow-write".to_string(),
            arg(&writable),
            "--allow-read".to_string(),
            arg(&readonly),
        ];
        let code = format!(
            "import os\n\
             for path in ['{ro}/planted', '/usr/planted', '/planted', '/etc/planted']:\n\
             \x20   try:\n\
             \x20       open(path, 'w').write('x'); print('ESCAPED wrote', path)\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', path, e.errno)\n\
             # The granted dirs' parent exists inside only as a directory of the private /tmp:\n\
             # writing there may succeed, but must not reach the host (checked below).\n\
             try:\n\
             \x20   open('{parent}/planted', 'w').write('x')\n\
             except OSError:\n\
             \x20   pass\n\
             try:\n\
             \x20   os.mkdir('{ro}/dir'); print('ESCAPED mkdir')\n\
             except OSError as e:\n\
             \x20   print('BLOCKED mkdir', e.errno)\n",
            ro = readonly.display(),
            parent = tmp.path().display()
        );
        assert_blocked(mode, "writes outside allow.write", &py(cmd, &flags, &code));
        for p in [
            readonly.join("planted"),
            tmp.path().join("planted"),
            readonly.join("dir"),
        ] {
            assert!(!p.exists(), "{mode}: {} appeared on the host", p.display());
        }
        for p in ["/usr/planted", "/planted", "/etc/planted"] {
            assert!(!Path::new(p).exists(), "{mode}: {p} appeared on the host");
        }
        let control = py(
            cmd,
            &flags,
            &format!(
                "open('{}/allowed', 'w').write('fine'); print('CONTROL-OK')",
                writable.display()
            ),
        );
        assert_control(mode, "writing the granted dir", &control);
        assert_eq!(
            std::fs::read_to_string(writable.join("allowed")).unwrap(),
            "fine"
        );
    }
}

#[test]
fn host_processes_are_invisible_and_unsignalable() {
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id();
    for (mode, cmd) in modes() {
        let code = format!(
            "import os\n\
             try:\n\
             \x20   os.kill({pid}, 0); print('ESCAPED kill -0')\n\
             except OSError as e:\n\
             \x20   print('BLOCKED kill', e.errno)\n\
             if os.path.exists('/proc/{pid}'):\n\
             \x20   print('ESCAPED /proc/{pid} visible')\n\
             pids = [p for p in os.listdir('/proc') if p.isdigit()]\n\
             print('BLOCKED' if len(pids) <= 2 else 'ESCAPED pids ' + ' '.join(pids))\n"
        );
        assert_blocked(
            mode,
            "seeing/signalling a host process",
            &py(cmd, &[], &code),
        );
        let control = py(cmd, &[], "import os; os.kill(os.getpid(), 0); assert os.path.exists('/proc/self'); print('CONTROL-OK')");
        assert_control(mode, "signalling itself", &control);
    }
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process died"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn proc_mem_of_init_cannot_be_read() {
    // pid 1 is bunker's init: it is not dumpable, so its memory, environment and fds are closed
    // to the program even though they share a uid. (The program's own descendants run the same
    // untrusted code with the same rights; they are one trust domain, not a boundary.)
    let attack = "import os\n\
                  for f in ['mem', 'environ', 'maps', 'fd/0']:\n\
                  \x20   try:\n\
                  \x20       with open(f'/proc/1/{f}', 'rb') as fh:\n\
                  \x20           print('ESCAPED opened /proc/1/' + f)\n\
                  \x20   except OSError as e:\n\
                  \x20       print('BLOCKED', f, e.errno)\n\
                  try:\n\
                  \x20   os.listdir('/proc/1/fd'); print('ESCAPED listed /proc/1/fd')\n\
                  except OSError as e:\n\
                  \x20   print('BLOCKED fd list', e.errno)\n";
    // Control: its own memory, at an address that is mapped.
    let control = "import ctypes\n\
                   buf = ctypes.create_string_buffer(b'own-memory')\n\
                   with open('/proc/self/mem', 'rb') as fh:\n\
                   \x20   fh.seek(ctypes.addressof(buf)); assert fh.read(10) == b'own-memory'\n\
                   print('CONTROL-OK')\n";
    for (mode, cmd) in modes() {
        let out = py(cmd, &[], attack);
        assert_blocked(mode, "/proc/1/mem", &out);
        assert!(
            stdout(&out).contains("BLOCKED mem 13"),
            "{mode}: {}",
            stdout(&out)
        );
        assert_control(
            mode,
            "reading its own /proc/self/mem",
            &py(cmd, &[], control),
        );
    }
}

/// Python ctypes helpers for SysV shared memory (there is no `sysv_ipc` module).
const SHM_PY: &str = "import ctypes, os\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    libc.shmat.restype = ctypes.c_void_p\n\
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]\n\
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\n";

#[test]
fn a_host_sysv_shared_memory_segment_is_invisible() {
    let key = 0x6b00_0000 + (std::process::id() as i32 & 0xffff);
    // Create a segment on the host holding a secret.
    let create = format!(
        "{SHM_PY}\
         shmid = libc.shmget({key}, 4096, 0o1000 | 0o666)\n\
         assert shmid >= 0, os.strerror(ctypes.get_errno())\n\
         addr = libc.shmat(shmid, None, 0)\n\
         ctypes.memmove(addr, b'SHM-SECRET', 10)\n\
         print(shmid)\n"
    );
    let out = Command::new("python3")
        .args(["-c", &create])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shmid = stdout(&out).trim().to_string();
    let attack = format!(
        "{SHM_PY}\
         shmid = libc.shmget({key}, 0, 0o666)\n\
         if shmid < 0:\n\
         \x20   print('BLOCKED shmget', ctypes.get_errno())\n\
         else:\n\
         \x20   addr = libc.shmat(shmid, None, 0)\n\
         \x20   print('ESCAPED', ctypes.string_at(addr, 10) if addr not in (None, ctypes.c_void_p(-1).value) else 'id only')\n\
         # Guessing the id directly must fail too.\n\
         addr = libc.shmat({shmid}, None, 0)\n\
         print('BLOCKED shmat' if addr in (None, ctypes.c_void_p(-1).value) else 'ESCAPED shmat')\n"
    );
    let control = format!(
        "{SHM_PY}\
         shmid = libc.shmget({key}, 4096, 0o1000 | 0o600)\n\
         assert shmid >= 0, os.strerror(ctypes.get_errno())\n\
         addr = libc.shmat(shmid, None, 0)\n\
         ctypes.memmove(addr, b'mine', 4)\n\
         assert ctypes.string_at(addr, 4) == b'mine'\n\
         print('CONTROL-OK')\n"
    );
    for (mode, cmd) in modes() {
        assert_blocked(mode, "host SysV shm", &py(cmd, &[], &attack));
        assert_control(mode, "its own SysV shm", &py(cmd, &[], &control));
    }
    let _ = Command::new("ipcrm").args(["-m", &shmid]).status();
}

#[test]
fn host_unix_sockets_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let tmp = shared_tempdir();
    let path = tmp.path().join("host.sock");
    let path_listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let name = format!("bunker-test-{}", std::process::id());
    let abstract_listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    path_listener.set_nonblocking(true).unwrap();
    abstract_listener.set_nonblocking(true).unwrap();
    let attack = format!(
        "import socket\n\
         for addr in ['\\0{name}', '{path}']:\n\
         \x20   s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         \x20   try:\n\
         \x20       s.connect(addr); print('ESCAPED', repr(addr))\n\
         \x20   except OSError as e:\n\
         \x20       print('BLOCKED', repr(addr), e.errno)\n",
        path = path.display()
    );
    let control = "import socket\n\
                   for addr in ['\\0own-abstract', '/tmp/own.sock']:\n\
                   \x20   srv = socket.socket(socket.AF_UNIX); srv.bind(addr); srv.listen(1)\n\
                   \x20   c = socket.socket(socket.AF_UNIX); c.connect(addr)\n\
                   print('CONTROL-OK')\n";
    for (mode, cmd) in modes() {
        // Granting the socket's directory (read, or write) must not help either: the socket
        // file is masked (tmp is 0755, the socket 0777, so only the mask stops it).
        for flags in [
            vec![],
            vec!["--allow-read".to_string(), arg(tmp.path())],
            vec!["--allow-write".to_string(), arg(tmp.path())],
        ] {
            let out = py(cmd, &flags, &attack);
            assert_blocked(mode, &format!("host unix sockets with {flags:?}"), &out);
        }
        assert_control(mode, "its own unix sockets", &py(cmd, &[], control));
    }
    // Nothing ever connected to the host listeners.
    assert!(
        abstract_listener.accept().is_err(),
        "abstract socket got a connection"
    );
    assert!(
        path_listener.accept().is_err(),
        "path socket got a connection"
    );
}

#[test]
fn a_host_loopback_tcp_server_is_unreachable() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let attack = format!(
        "import socket\n\
         for host in ['127.0.0.1', 'localhost', '::1']:\n\
         \x20   try:\n\
         \x20       socket.create_connection((host, {port}), timeout=2); print('ESCAPED', host)\n\
         \x20   except OSError as e:\n\
         \x20       print('BLOCKED', host, e.errno)\n"
    );
    // Control: with a net grant, the in-sandbox proxy on loopback is reachable and answers.
    let control = "import socket\n\
                   c = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n\
                   c.sendall(b'GET http://denied.invalid/ HTTP/1.1\\r\\nHost: denied.invalid\\r\\n\\r\\n')\n\
                   assert c.recv(12).startswith(b'HTTP/1.1 '), 'no answer from the proxy'\n\
                   print('CONTROL-OK')\n";
    let net = ["--allow-net".to_string(), "example.com".to_string()];
    for (mode, cmd) in modes() {
        assert_blocked(mode, "host loopback TCP", &py(cmd, &[], &attack));
        assert_blocked(
            mode,
            "host loopback TCP (net granted)",
            &py(cmd, &net, &attack),
        );
        assert_control(mode, "the proxy on loopback", &py(cmd, &net, control));
    }
    let mut buf = [0u8; 1];
    match server.accept() {
        Ok((mut s, _)) => panic!("the host server got a connection: {:?}", s.read(&mut buf)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}

#[test]
fn proc_sys_and_sysrq_are_not_writable() {
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let attack = "for path, data in [('/proc/sys/kernel/hostname', 'pwned'), ('/proc/sys/vm/drop_caches', '3'),\n\
                  \x20                  ('/proc/sysrq-trigger', 'h'), ('/proc/sys/kernel/core_pattern', '|/tmp/x')]:\n\
                  \x20   try:\n\
                  \x20       with open(path, 'w') as f: f.write(data)\n\
                  \x20       print('ESCAPED', path)\n\
                  \x20   except OSError as e:\n\
                  \x20       print('BLOCKED', path, e.errno)\n";
    for (mode, cmd) in modes() {
        assert_blocked(mode, "writing /proc/sys", &py(cmd, &[], attack));
        let control = py(cmd, &[], "assert open('/proc/sys/kernel/hostname').read().strip() == 'bunker'; print('CONTROL-OK')");
        assert_control(mode, "reading /proc/sys", &control);
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_hostname
    );
}

#[test]
fn symlinks_in_an_allowed_dir_do_not_lead_outside() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let secret_dir = mkdir(tmp.path(), "secret", 0o755);
        write_file(&secret_dir, "key.txt", "TOP-SECRET");
        let allowed = mkdir(tmp.path(), "allowed", 0o755);
        write_file(&allowed, "fine.txt", "fine");
        std::os::unix::fs::symlink(secret_dir.join("key.txt"), allowed.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../secret/key.txt", allowed.join("rel-link")).unwrap();
        std::os::unix::fs::symlink(&secret_dir, allowed.join("dir-link")).unwrap();
        std::os::unix::fs::symlink("fine.txt", allowed.join("good-link")).unwrap();
        // Granting the symlink itself recreates the link, never binds what it points to.
        let granted_link = tmp.path().join("granted-link");
        std::os::unix::fs::symlink(&secret_dir, &granted_link).unwrap();
        let flags = [
            "--allow-read".to_string(),
            arg(&allowed),
            "--allow-read".to_string(),
            arg(&granted_link),
        ];
        let a = allowed.display();
        let code = format!(
            "import os\n\
             for path in ['{a}/abs-link', '{a}/rel-link', '{a}/dir-link/key.txt', '{g}/key.txt']:\n\
             \x20   try:\n\
             \x20       print('ESCAPED', path, open(path).read())\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', path, e.errno)\n",
            g = granted_link.display()
        );
        assert_blocked(
            mode,
            "symlink out of an allowed dir",
            &py(cmd, &flags, &code),
        );
        let control = py(
            cmd,
            &flags,
            &format!("assert open('{a}/good-link').read() == 'fine'; print('CONTROL-OK')"),
        );
        assert_control(mode, "a symlink inside the allowed dir", &control);
    }
}

#[test]
fn denied_paths_inside_grants_are_masked() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let data = mkdir(tmp.path(), "data", 0o755);
        write_file(&data, "public.txt", "public");
        let secret = write_file(&data, "secret.txt", "SECRET-FILE");
        let secret_dir = mkdir(&data, "private", 0o755);
        write_file(&secret_dir, "inner.txt", "SECRET-DIR");
        let sub = mkdir(&data, "sub", 0o755);
        write_file(&sub, "server.key", "SECRET-KEY");
        let out_dir = mkdir(tmp.path(), "out", 0o777);
        let locked = write_file(&out_dir, "locked.txt", "original");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o666)).unwrap();
        let policy = write_file(
            tmp.path(),
            "policy.json",
            &serde_json::json!({
                "extends": ["default"],
                "allow": {"read": [data], "write": [out_dir]},
                "deny": {"read": [secret, secret_dir, "*.key"], "write": [locked]},
            })
            .to_string(),
        );
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
        let d = data.display();
        let o = out_dir.display();
        let attack = format!(
            "import os\n\
             for path in ['{d}/secret.txt', '{d}/private/inner.txt', '{d}/sub/server.key']:\n\
             \x20   try:\n\
             \x20       text = open(path).read()\n\
             \x20       print('ESCAPED ' + path if 'SECRET' in text else 'BLOCKED (masked) ' + path)\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', path, e.errno)\n\
             print('BLOCKED listing' if os.listdir('{d}/private') == [] else 'ESCAPED listing')\n\
             try:\n\
             \x20   open('{o}/locked.txt', 'w').write('overwritten'); print('ESCAPED write')\n\
             except OSError as e:\n\
             \x20   print('BLOCKED write', e.errno)\n"
        );
        let p = ["--policy".to_string(), arg(&policy)];
        assert_blocked(mode, "denied paths inside grants", &py(cmd, &p, &attack));
        assert_eq!(
            std::fs::read_to_string(&locked).unwrap(),
            "original",
            "{mode}"
        );
        let control = format!(
            "assert open('{d}/public.txt').read() == 'public'\n\
             open('{o}/free.txt', 'w').write('ok')\n\
             print('CONTROL-OK')\n"
        );
        assert_control(mode, "the rest of the grants", &py(cmd, &p, &control));
    }
}

#[test]
fn chdir_dotdot_stays_at_the_new_root() {
    assert!(Path::new("/work").exists() || Path::new("/root").exists());
    let code = "import os\n\
                os.chdir('/')\n\
                for _ in range(10): os.chdir('..')\n\
                entries = sorted(os.listdir('.'))\n\
                leaked = [e for e in entries if e in ('root', 'work', 'home', 'var', 'boot', 'srv', 'opt')]\n\
                print('ESCAPED ' + ' '.join(leaked) if leaked else 'BLOCKED', entries)\n\
                fd = os.open('/usr', os.O_RDONLY)\n\
                for _ in range(10): fd = os.open('..', os.O_RDONLY, dir_fd=fd)\n\
                print('BLOCKED' if sorted(os.listdir(fd)) == entries else 'ESCAPED via openat')\n";
    for (mode, cmd) in modes() {
        let out = py(cmd, &[], code);
        assert_blocked(mode, "chdir .. above /", &out);
        assert!(
            stdout(&out).contains("'usr'"),
            "{mode}: control (/usr is in the root): {}",
            stdout(&out)
        );
        let control = py(cmd, &[], "import os; os.chdir('/usr/bin'); os.chdir('..'); assert os.getcwd() == '/usr'; print('CONTROL-OK')");
        assert_control(mode, "chdir .. inside", &control);
    }
}

#[test]
fn the_root_and_bound_paths_cannot_be_remounted_writable() {
    // A sh-only attack: even the classic `mount -o remount,rw` (which bubblewrap run as root with
    // `--ro-bind / /` allows) fails, and nothing lands on the host.
    let tmp = shared_tempdir();
    let ro = mkdir(tmp.path(), "ro", 0o777);
    for (mode, cmd) in modes() {
        let script = format!(
            "mount -o remount,rw / 2>/dev/null && echo ESCAPED remount /; \
             mount -o remount,rw,bind {ro} 2>/dev/null && echo ESCAPED remount bind; \
             echo x > {ro}/planted 2>/dev/null && echo ESCAPED write; \
             echo BLOCKED",
            ro = ro.display()
        );
        let out = cmd()
            .args([
                "run",
                "--allow-read",
                &arg(&ro),
                "--",
                "/bin/sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_blocked(mode, "remount rw", &out);
        assert!(
            !ro.join("planted").exists(),
            "{mode}: write reached the host"
        );
        let control = cmd()
            .args([
                "run",
                "--",
                "/bin/sh",
                "-c",
                "echo x > /tmp/f && cat /tmp/f >/dev/null && echo CONTROL-OK",
            ])
            .output()
            .unwrap();
        assert_control(mode, "writing the private /tmp", &control);
    }
    let _ = std::io::stdout().flush();
}

#[test]
fn a_grant_of_the_whole_root_still_gets_private_proc_dev_and_tmp() {
    let planted = tempfile::Builder::new()
        .prefix("bunker-host-only-")
        .tempfile_in("/tmp")
        .unwrap();
    let name = planted
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let code = format!(
        "import os\n\
         pids = [p for p in os.listdir('/proc') if p.isdigit()]\n\
         print('BLOCKED proc' if len(pids) <= 2 else 'ESCAPED host pids visible')\n\
         print('ESCAPED host /dev' if os.path.exists('/dev/vda') or len(os.listdir('/dev')) > 16 else 'BLOCKED dev')\n\
         print('ESCAPED host /tmp' if os.path.exists('/tmp/{name}') else 'BLOCKED tmp')\n\
         try:\n\
         \x20   open('/etc/bunker-planted', 'w'); print('ESCAPED write /etc')\n\
         except OSError as e:\n\
         \x20   print('BLOCKED write', e.errno)\n"
    );
    let flags = ["--allow-read".to_string(), "/".to_string()];
    for (mode, cmd) in modes() {
        let out = py(cmd, &flags, &code);
        assert_blocked(mode, "host /proc, /dev, /tmp under a grant of /", &out);
        let control = py(
            cmd,
            &flags,
            "open('/etc/hostname').read(); print('CONTROL-OK')",
        );
        assert_control(mode, "reading under the grant of /", &control);
    }
    assert!(!Path::new("/etc/bunker-planted").exists());
}

#[test]
fn descriptors_of_the_caller_do_not_reach_the_program() {
    let tmp = shared_tempdir();
    let secret = write_file(tmp.path(), "held-open.txt", "FD-SECRET");
    let code = "import os\n\
                try:\n\
                \x20   print('ESCAPED fd 9', os.pread(9, 64, 0))\n\
                except OSError as e:\n\
                \x20   print('BLOCKED fd 9', e.errno)\n\
                leaked = []\n\
                for f in range(3, 256):\n\
                \x20   try:\n\
                \x20       leaked.append((f, os.readlink(f'/proc/self/fd/{f}')))\n\
                \x20   except OSError:\n\
                \x20       pass\n\
                print('ESCAPED ' + repr(leaked) if leaked else 'BLOCKED no descriptor beyond 2')\n\
                os.write(1, b'CONTROL-OK\\n')\n";
    for (mode, cmd) in modes() {
        let c = cmd();
        // The shell opens the file on fd 9 without close-on-exec, so bunker inherits it.
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec \"$@\" 9<'{}'", secret.display()))
            .arg("sh")
            .arg(c.get_program())
            .args(c.get_args())
            .args(["run", "--", "python3", "-c", code])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_blocked(mode, "inherited descriptors", &out);
        assert!(!stdout(&out).contains("FD-SECRET"), "{mode}");
        assert!(
            stdout(&out).contains("CONTROL-OK"),
            "{mode}: {}",
            stdout(&out)
        );
    }
}
