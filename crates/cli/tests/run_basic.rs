//! `bunker run` end to end, as root and rootless: programs run, read and write what they are
//! allowed to, see a cleared environment, their own hostname and ids; init reaps and forwards
//! signals; nothing survives the supervisor; setup errors name the step.

// Helpers outside #[test] functions panic on purpose (a failed step is a failed test);
// common::modes() has a function-pointer type clippy finds complex.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, bun, modes, report, shared_tempdir, stderr, stdout, write_file};

/// A directory the sandbox may write to in both modes, whatever its host uid.
fn writable_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

#[test]
fn python_reads_allowed_files_writes_the_allowed_dir_and_prints() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_file(&data, "input.txt", "forty-two\n");
        let out_dir = writable_dir(tmp.path(), "out");
        let code = format!(
            "import os\n\
             text = open('{data}/input.txt').read().strip()\n\
             open('{out}/result.txt', 'w').write(text.upper())\n\
             print('python read', text, 'as uid', os.getuid())\n",
            data = data.display(),
            out = out_dir.display()
        );
        let out = cmd()
            .args([
                "run",
                "--report",
                "json",
                "--allow-read",
                &arg(&data),
                "--allow-write",
                &arg(&out_dir),
            ])
            .args(["--", "python3", "-c", &code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(stdout(&out), "python read forty-two as uid 0\n", "{mode}");
        let written = out_dir.join("result.txt");
        assert_eq!(
            std::fs::read_to_string(&written).unwrap(),
            "FORTY-TWO",
            "{mode}"
        );
        // The file belongs to the directory's owner as root (the grant is mapped to its owner,
        // root here), to the caller rootless.
        let owner = if mode == "root" { 0 } else { 65534 };
        assert_eq!(std::fs::metadata(&written).unwrap().uid(), owner, "{mode}");
        let r = report(&out);
        assert_eq!(r["status"], "ok", "{mode}");
        for layer in [
            "namespaces",
            "filesystem",
            "no_new_privs",
            "capabilities_dropped",
            "network",
        ] {
            assert_eq!(r["enforced"][layer], "on", "{mode}: {layer}");
        }
    }
}

#[test]
fn bun_reads_allowed_files_writes_the_allowed_dir_and_prints() {
    let bun = bun();
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_file(&data, "input.json", r#"{"n": 21}"#);
        let out_dir = writable_dir(tmp.path(), "out");
        let code = format!(
            "const fs = require('fs');\n\
             const n = JSON.parse(fs.readFileSync('{data}/input.json', 'utf8')).n;\n\
             fs.writeFileSync('{out}/double.txt', String(n * 2));\n\
             console.log('bun computed', n * 2);\n",
            data = data.display(),
            out = out_dir.display()
        );
        let out = cmd()
            .args([
                "run",
                "--report",
                "json",
                "--allow-read",
                &arg(&data),
                "--allow-write",
                &arg(&out_dir),
            ])
            .args(["--", &bun, "-e", &code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(stdout(&out), "bun computed 42\n", "{mode}");
        assert_eq!(
            std::fs::read_to_string(out_dir.join("double.txt")).unwrap(),
            "42",
            "{mode}"
        );
        assert_eq!(report(&out)["status"], "ok", "{mode}");
    }
}

#[test]
fn hostname_comes_from_the_policy() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let policy = write_file(
            tmp.path(),
            "p.json",
            r#"{"extends": ["default"], "kernel": {"hostname": "box-under-test"}}"#,
        );
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = cmd()
            .args([
                "run",
                "--policy",
                &arg(&policy),
                "--",
                "/bin/sh",
                "-c",
                "hostname; cat /proc/sys/kernel/hostname",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(stdout(&out), "box-under-test\nbox-under-test\n", "{mode}");
    }
    // And the host's own hostname did not change.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "box-under-test");
}

#[test]
fn environment_is_cleared_except_allowed_names() {
    for (mode, cmd) in modes() {
        let out = cmd()
            .env("BUNKER_TEST_SECRET", "hunter2")
            .env("BUNKER_TEST_PASSED", "visible")
            .args([
                "run",
                "--allow-env",
                "BUNKER_TEST_PASSED",
                "--",
                "/usr/bin/env",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(!text.contains("hunter2"), "{mode}: secret leaked:\n{text}");
        assert!(
            text.contains("BUNKER_TEST_PASSED=visible\n"),
            "{mode}:\n{text}"
        );
        assert!(
            text.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"),
            "{mode}:\n{text}"
        );
        let names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        for name in &names {
            assert!(
                [
                    "BUNKER_TEST_PASSED",
                    "PATH",
                    "HOME",
                    "TMPDIR",
                    "LANG",
                    "PWD",
                    "SHLVL",
                    "_"
                ]
                .contains(name),
                "{mode}: unexpected variable {name}:\n{text}"
            );
        }
    }
}

#[test]
fn root_inside_maps_to_an_unprivileged_host_id() {
    for (mode, cmd) in modes() {
        let out = cmd()
            .args(["run", "--", "/bin/sh", "-c", "id -u; id -G; cat /proc/self/uid_map /proc/self/gid_map; grep CapEff /proc/self/status"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let text = stdout(&out);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["0"], "{mode}");
        assert_eq!(lines[1], ["0"], "{mode}: supplementary groups must be gone");
        // Rootless the caller's own id (nobody here); as root one of the default range's.
        let host_id = lines[2][1].parse::<u32>().unwrap();
        if mode == "root" {
            assert!(in_default_range(host_id), "{mode}: uid map {:?}", lines[2]);
        } else {
            assert_eq!(host_id, 65534, "{mode}: uid map");
        }
        assert_eq!(
            lines[2],
            ["0", &host_id.to_string(), "1"],
            "{mode}: uid map"
        );
        assert_eq!(
            lines[3],
            ["0", &host_id.to_string(), "1"],
            "{mode}: gid map"
        );
        assert_eq!(lines[4], ["CapEff:", "0000000000000000"], "{mode}");
    }
}

/// Host pids of the direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `code` (python) in a sandbox with `dir` writable, in the background.
fn spawn_python(cmd: fn() -> Command, dir: &Path, code: &str) -> std::process::Child {
    cmd()
        .args([
            "run",
            "--allow-write",
            &arg(dir),
            "--",
            "python3",
            "-c",
            code,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn init_reaps_orphaned_zombies() {
    for (mode, cmd) in modes() {
        // The grandchild is orphaned at once and exits 100 ms later: only init can reap it.
        let code = "import os, time\n\
                    pid = os.fork()\n\
                    if pid == 0:\n\
                    \x20   if os.fork() == 0:\n\
                    \x20       time.sleep(0.1); os._exit(0)\n\
                    \x20   os._exit(0)\n\
                    os.waitpid(pid, 0)\n\
                    time.sleep(0.6)\n\
                    states = [open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] for p in os.listdir('/proc') if p.isdigit()]\n\
                    print('procs', len(states), 'zombies', states.count('Z'))\n";
        let out = cmd()
            .args(["run", "--", "python3", "-c", code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        // init and python itself.
        assert_eq!(stdout(&out), "procs 2 zombies 0\n", "{mode}");
    }
}

#[test]
fn init_forwards_sigterm_to_the_program() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let dir = writable_dir(tmp.path(), "w");
        let code = format!(
            "import signal, sys, time\n\
             def on_term(sig, frame):\n\
             \x20   print('got SIGTERM', flush=True); sys.exit(7)\n\
             signal.signal(signal.SIGTERM, on_term)\n\
             open('{dir}/ready', 'w').close()\n\
             time.sleep(20)\n\
             print('not signalled')\n",
            dir = dir.display()
        );
        let child = spawn_python(cmd, &dir, &code);
        wait_for("the program to start", Duration::from_secs(10), || {
            dir.join("ready").exists()
        });
        let inits = children(child.id());
        assert_eq!(
            inits.len(),
            1,
            "{mode}: bunker should have exactly one child (init): {inits:?}"
        );
        let st = Command::new("kill")
            .args(["-TERM", &inits[0].to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(stdout(&out), "got SIGTERM\n", "{mode}: {}", stderr(&out));
        assert_eq!(out.status.code(), Some(7), "{mode}");
    }
}

#[test]
fn supervisor_sigkill_leaves_no_sandbox_process() {
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let dir = writable_dir(tmp.path(), "w");
        // The program forks a helper that ignores SIGTERM and SIGHUP, then both wait.
        let code = format!(
            "import os, signal, time\n\
             signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)\n\
             if os.fork() == 0:\n\
             \x20   time.sleep(60); os._exit(0)\n\
             open('{dir}/ready', 'w').close()\n\
             time.sleep(60)\n",
            dir = dir.display()
        );
        let mut child = spawn_python(cmd, &dir, &code);
        wait_for("the program to start", Duration::from_secs(10), || {
            dir.join("ready").exists()
        });
        let init = children(child.id());
        assert_eq!(init.len(), 1, "{mode}: {init:?}");
        let program = children(init[0]);
        assert_eq!(
            program.len(),
            1,
            "{mode}: init should have one child: {program:?}"
        );
        wait_for("the helper to fork", Duration::from_secs(10), || {
            children(program[0]).len() == 1
        });
        let helper = children(program[0])[0];
        let sandbox_pids = [init[0], program[0], helper];

        child.kill().unwrap(); // SIGKILL: no cleanup code runs in the supervisor.
        child.wait().unwrap();
        wait_for(
            "every sandbox process to die",
            Duration::from_secs(5),
            || {
                sandbox_pids.iter().all(|p| {
                    // Gone, or a zombie waiting for its (dead) parent's reaper.
                    std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .map(|s| {
                            s.rsplit(')')
                                .next()
                                .unwrap_or("")
                                .trim_start()
                                .starts_with('Z')
                        })
                        .unwrap_or(true)
                })
            },
        );
    }
}

#[test]
fn a_setup_error_names_the_step() {
    for (mode, cmd) in modes() {
        let missing = format!("/nonexistent-bunker-test-{}", std::process::id());
        let out = cmd()
            .args([
                "run",
                "--report",
                "json",
                "--cwd",
                &missing,
                "--",
                "/bin/true",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(121), "{mode}: {}", stderr(&out));
        let r = report(&out);
        assert_eq!(r["status"], "setup_error", "{mode}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("chdir {missing}")),
            "{mode}: {error}"
        );
        assert!(error.contains("ENOENT"), "{mode}: {error}");
        // The failure inside init has the same shape as one before it: a code and the step.
        assert_eq!(r["error_code"], "setup_failed", "{mode}");
        assert_eq!(r["error_step"], format!("chdir {missing}"), "{mode}");
        // A missing write grant is known before the sandbox is built: a policy error.
        let out = cmd()
            .args([
                "run",
                "--report",
                "json",
                "--allow-write",
                &missing,
                "--",
                "/bin/true",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(120), "{mode}: {}", stderr(&out));
        let r = report(&out);
        assert_eq!(r["status"], "policy_error", "{mode}");
        assert_eq!(r["error_code"], "policy_invalid", "{mode}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!(
                "command line: allow.write[0]: \"{missing}\" does not exist"
            )),
            "{mode}: {error}"
        );
    }
}

#[test]
fn a_missing_program_is_127_and_a_missing_read_path_is_a_note() {
    for (mode, cmd) in modes() {
        let out = cmd()
            .args([
                "run",
                "--report",
                "json",
                "--allow-read",
                "/nonexistent-read-path",
                "--",
                "no-such-program-xyz",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{mode}: {}", stderr(&out));
        let ok = cmd()
            .args([
                "run",
                "--report",
                "json",
                "--allow-read",
                "/nonexistent-read-path",
                "--",
                "/bin/true",
            ])
            .output()
            .unwrap();
        assert!(ok.status.success(), "{mode}: {}", stderr(&ok));
        let notes = report(&ok)["enforced"]["notes"].to_string();
        assert!(notes.contains("/nonexistent-read-path"), "{mode}: {notes}");
    }
}

fn policy_file(dir: &Path, json: serde_json::Value) -> String {
    let p = write_file(dir, "policy.json", &json.to_string());
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    arg(&p)
}

#[test]
fn a_tty_policy_gets_its_own_devpts_and_others_none() {
    let code = "import os\n\
                m, s = os.openpty()\n\
                print('pty', os.ttyname(s))\n";
    for (mode, cmd) in modes() {
        let tmp = shared_tempdir();
        let tty = policy_file(
            tmp.path(),
            serde_json::json!({"extends": ["default"], "kernel": {"tty": true}}),
        );
        let out = cmd()
            .args(["run", "--policy", &tty, "--", "python3", "-c", code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        // A new devpts instance: the first pty of the sandbox is number 0.
        assert_eq!(stdout(&out), "pty /dev/pts/0\n", "{mode}");
        let out = cmd()
            .args(["run", "--", "python3", "-c", code])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{mode}: a pty without kernel.tty: {}",
            stdout(&out)
        );
    }
}

/// The host ids root's sandboxes get by default (`IdRange::DEFAULT`: 65,536 from 0x70000000).
fn in_default_range(id: u32) -> bool {
    (0x7000_0000..0x7000_0000 + 65536).contains(&id)
}

/// The real uid `/proc/<pid>/status` gives, read from the host.
fn host_uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Two sandboxes of root's at once run as two host uids (seen from the host, on their inits),
/// each leased from the default range, so neither can signal, trace or share files with the
/// other; what they write in a write grant still belongs to the grant's owner (the grant is
/// idmapped to its owner from the sandbox's own id).
#[test]
fn concurrent_root_sandboxes_get_distinct_host_ids_and_files_keep_the_grant_owner() {
    if !common::is_root() {
        return common::skip("needs root (host ids are leased for root's sandboxes)");
    }
    const OWNER: u32 = 4242;
    let tmp = shared_tempdir();
    let mut runs = Vec::new();
    for n in 0..2 {
        let dir = tmp.path().join(format!("out{n}"));
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(OWNER), Some(OWNER)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Writes its file, then waits for end of file on stdin: both are alive together.
        let script = format!("echo {n} > {}/f; read line || :", dir.display());
        let child = common::bunker()
            .args([
                "run",
                "--allow-write",
                &arg(&dir),
                "--",
                "/bin/sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        runs.push((dir, child));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runs.iter().all(|(dir, _)| dir.join("f").exists()) {
        assert!(
            Instant::now() < deadline,
            "the sandboxes did not write their files"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let inits: Vec<u32> = runs
        .iter()
        .map(|(_, child)| {
            let kids = children(child.id());
            assert_eq!(kids.len(), 1, "bunker's children: {kids:?}");
            kids[0]
        })
        .collect();
    let uids: Vec<u32> = inits.iter().map(|pid| host_uid_of(*pid)).collect();
    assert_ne!(uids[0], uids[1], "two live sandboxes share a host uid");
    for uid in &uids {
        assert!(
            in_default_range(*uid),
            "host uid {uid} is outside the default range"
        );
    }
    for (dir, mut child) in runs {
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let meta = std::fs::metadata(dir.join("f")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (OWNER, OWNER),
            "file owner on the host"
        );
    }
}

#[test]
fn as_root_without_a_user_namespace_the_program_is_its_leased_host_id() {
    if !common::is_root() {
        return common::skip("needs root (the case is root without a user namespace)");
    }
    let tmp = shared_tempdir();
    let policy = policy_file(
        tmp.path(),
        serde_json::json!({
            "extends": ["default"],
            "kernel": {"namespaces": ["pid", "mount", "net", "ipc", "uts", "cgroup"]}
        }),
    );
    // A range of one id, this test's alone.
    let id = 0x7200_0001u32;
    let out = common::bunker()
        .env("BUNKER_ROOT_IDS", format!("{id}:1"))
        .args(["run", "--report", "json", "--policy", &policy, "--"])
        .args([
            "/bin/sh",
            "-c",
            "id -u; id -g; grep -E '^Cap(Eff|Bnd)' /proc/self/status",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{id}\n{id}\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n")
    );
    let r = report(&out);
    assert_eq!(r["enforced"]["namespaces"], "partial");
}

#[test]
fn a_grant_of_the_host_tmp_writes_through_to_the_host() {
    for (mode, cmd) in modes() {
        let name = format!("bunker-tmp-grant-{}-{mode}", std::process::id());
        let host = Path::new("/tmp").join(&name);
        let out = cmd()
            .args(["run", "--allow-write", "/tmp", "--", "/bin/sh", "-c"])
            .arg(format!("echo through > /tmp/{name} && cat /tmp/{name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&host).unwrap(),
            "through\n",
            "{mode}"
        );
        std::fs::remove_file(&host).unwrap();
    }
}

#[test]
fn dev_is_nosuid_and_noexec_down_to_each_device_node() {
    for (mode, cmd) in modes() {
        let out = cmd()
            .args(["run", "--", "cat", "/proc/self/mountinfo"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let text = stdout(&out);
        let mut seen = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (point, options) = (fields[4], fields[5]);
            if point != "/dev" && !point.starts_with("/dev/") {
                continue;
            }
            let opts: Vec<&str> = options.split(',').collect();
            assert!(
                opts.contains(&"nosuid") && opts.contains(&"noexec"),
                "{mode}: {point} is mounted {options}"
            );
            seen.push(point.to_string());
        }
        for node in ["/dev", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/shm"] {
            assert!(
                seen.iter().any(|p| p == node),
                "{mode}: {node} not in {seen:?}"
            );
        }
    }
}

/// Init's namespace thread (network and IPC namespaces) has ended before the program starts:
/// init is one thread, and that thread is the restricted one (seccomp filter mode, no_new_privs).
#[test]
fn init_is_one_restricted_thread_when_the_program_runs() {
    for (mode, cmd) in modes() {
        let out = cmd()
            .args([
                "run",
                "--",
                "grep",
                "-E",
                "^(Threads|NoNewPrivs|Seccomp):",
                "/proc/1/status",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "Threads:\t1\nNoNewPrivs:\t1\nSeccomp:\t2\n",
            "{mode}"
        );
    }
}

/// Init is created on the supervisor's CPU and the program on init's (faster on VMs), but both
/// take the caller's CPU affinity back: the program may run on every CPU the caller may.
#[test]
fn the_program_gets_the_callers_cpu_affinity() {
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let cpus = |status: &str| {
        status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list"))
            .map(str::to_string)
    };
    assert!(cpus(&ours).is_some());
    for (mode, cmd) in modes() {
        let out = cmd()
            .args(["run", "--", "cat", "/proc/self/status"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert_eq!(cpus(&stdout(&out)), cpus(&ours), "{mode}");
    }
}
