//! A `bunker serve` daemon started for a test, and a blocking client of its protocol
//! (docs/protocol.md), written from the documented framing rather than the daemon's own code.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A daemon of the test's own; SIGKILLed (by pid) when dropped unless it already exited.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    argv: Vec<std::ffi::OsString>,
}

/// How a test daemon runs.
#[derive(Default)]
pub struct DaemonSpec<'a> {
    /// The config file's text, if any.
    pub config: Option<&'a str>,
    /// Run the daemon as uid/gid 65534 (rootless).
    pub as_nobody: bool,
    /// Files written beside the config before the daemon starts (name, text).
    pub files: &'a [(&'a str, &'a str)],
}

impl Daemon {
    /// A daemon as the test's uid, without a config.
    pub fn start() -> Daemon {
        Daemon::start_with(DaemonSpec::default())
    }

    pub fn start_with(spec: DaemonSpec) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("bunker-serve-test-")
            .tempdir()
            .unwrap();
        // The rootless daemon creates its socket here, and nobody's client must reach it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let socket = dir.path().join("bunker.sock");
        let log = dir.path().join("daemon.log");
        for (name, text) in spec.files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        }
        let mut cmd = if spec.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(super::real_bunker_bin());
            c
        } else {
            Command::new(super::real_bunker_bin())
        };
        cmd.arg("serve").arg("--socket").arg(&socket);
        if let Some(text) = spec.config {
            let path = dir.path().join("serve.json");
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            cmd.arg("--config").arg(path);
        }
        let argv: Vec<std::ffi::OsString> = std::iter::once(cmd.get_program().to_owned())
            .chain(cmd.get_args().map(|a| a.to_owned()))
            .collect();
        let child = spawn_logged(&argv, &log);
        let daemon = Daemon {
            child,
            socket,
            dir,
            log,
            argv,
        };
        daemon.wait_ready();
        daemon
    }

    /// SIGKILLs the daemon (and reaps it).
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the daemon again after it ended: same arguments, same socket path.
    pub fn restart(&mut self) {
        self.child = spawn_logged(&self.argv, &self.log);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the daemon did not come up: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A client that has said hello.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the daemon to exit (bounded), returning its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < within,
                "the daemon did not exit: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_logged(argv: &[std::ffi::OsString], log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap()
}

/// One frame: 4-byte big-endian length, then the JSON.
pub fn frame(value: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(value).unwrap();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

/// A connection to a daemon.
pub struct Client {
    pub stream: UnixStream,
    /// Event frames received while waiting for something else.
    pub events: Vec<Value>,
}

impl Client {
    /// Connects and says hello; panics unless the server agrees.
    pub fn connect(socket: &Path) -> Client {
        let mut client = Client::raw(socket);
        client.send(&json!({"op": "hello", "version": 1}));
        let hello = client.recv().expect("no hello reply");
        assert_eq!(hello["ok"]["version"], 1, "{hello}");
        client
    }

    /// Connects without the handshake.
    pub fn raw(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Client {
            stream,
            events: Vec::new(),
        }
    }

    pub fn send(&mut self, value: &Value) {
        self.stream.write_all(&frame(value)).unwrap();
    }

    /// Sends a frame with descriptors on it (SCM_RIGHTS, one sendmsg).
    pub fn send_with_fds(&mut self, value: &Value, fds: &[&dyn AsRawFd]) {
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        bunker_sys::fd::send_with_fds(self.stream.as_raw_fd(), &frame(value), &raw).unwrap();
    }

    /// The next frame; `None` when the server closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        let mut head = [0u8; 4];
        if self.stream.read_exact(&mut head).is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(serde_json::from_slice(&body).unwrap())
    }

    /// The reply to request `id`, keeping the events that come before it.
    pub fn reply(&mut self, id: u64) -> Value {
        loop {
            let frame = self
                .recv()
                .unwrap_or_else(|| panic!("closed before reply {id}"));
            if frame.get("event").is_some() {
                self.events.push(frame);
            } else if frame["id"] == id {
                return frame;
            } else {
                panic!("unexpected frame while waiting for {id}: {frame}");
            }
        }
    }

    /// Sends a request and returns its reply.
    pub fn call(&mut self, request: Value) -> Value {
        let id = request["id"].as_u64().unwrap();
        self.send(&request);
        self.reply(id)
    }

    /// Events of `sandbox` until (and including) its `exit` or `error` event.
    pub fn events_until_end(&mut self, sandbox: &str) -> Vec<Value> {
        let mut mine: Vec<Value> = Vec::new();
        let mut kept = Vec::new();
        for e in self.events.drain(..) {
            if e["sandbox"] == sandbox {
                mine.push(e);
            } else {
                kept.push(e);
            }
        }
        self.events = kept;
        while !mine
            .iter()
            .any(|e| matches!(e["event"]["event"].as_str(), Some("exit" | "error")))
        {
            let frame = self.recv().expect("closed before the sandbox's last event");
            if frame["sandbox"] == sandbox {
                mine.push(frame);
            } else {
                self.events.push(frame);
            }
        }
        mine
    }
}

/// The text of a sandbox's stdout events, in order.
pub fn stdout_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["event"]["event"] == "stdout")
        .map(|e| {
            e["event"]["data"]["utf8"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// A run spec under the `default` profile.
pub fn spec(argv: &[&str]) -> Value {
    json!({"policy": {"name": "default"}, "argv": argv})
}

/// Host pids of every descendant of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                found.push(c);
                todo.push(c);
            }
        }
    }
    found
}

/// Whether a pid is a live (non-zombie) process.
pub fn pid_alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

/// Polls `cond` every 5 ms for up to `within`; whether it became true.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Asserts that every one of `pids` ends within 5 s of the daemon's SIGKILL.
pub fn assert_all_end_after_sigkill(pids: &[i32]) {
    assert!(
        eventually(Duration::from_secs(5), || pids
            .iter()
            .all(|p| !pid_alive(*p))),
        "the daemon's SIGKILL left {:?}",
        pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
}

/// Asserts that no cgroup of the daemon `daemon_pid` (named `bunker-PID-…`) is left under this
/// process's own cgroups: what a restarted daemon's stale sweep must have removed.
pub fn assert_no_cgroups_of(daemon_pid: i32) {
    let layout = bunker_cgroup::Layout::detect().unwrap();
    let leftovers: Vec<String> = layout
        .hierarchies
        .iter()
        .flat_map(|h| std::fs::read_dir(&h.own_dir).into_iter().flatten())
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains(&format!("/bunker-{daemon_pid}-")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
