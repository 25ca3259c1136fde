//! A plain child process standing in for the sandbox's init, for the drivers' tests: no
//! sandbox, but real pipes, a real pidfd and (when the host allows) a real cgroup.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use bunker_policy::{Limits, Policy};
use bunker_sys::event;

use super::{OutputMode, Supervised};
use crate::init::InitMessage;
use crate::limits::SandboxCgroup;
use crate::result::Enforced;

pub fn policy(edit: impl FnOnce(&mut Limits)) -> Policy {
    let mut p = bunker_policy::load_str("{}", std::path::Path::new("/"), "test").unwrap();
    edit(&mut p.limits);
    p
}

/// Starts `sh -c script` as a stand-in for init; the returned socket end plays init's side
/// of the control socket. The script waits for a line on stdin before it starts, so the
/// caller can move it into a cgroup first.
pub fn start(script: &str, cgroup: SandboxCgroup) -> (Supervised, UnixDatagram, Child) {
    let (sup, init, child, _stdin) = start_fed(script, cgroup);
    (sup, init, child)
}

/// [`start`], also returning the write end of the script's stdin (after the line it waits
/// for): what the script reads next comes from there.
#[allow(clippy::zombie_processes)] // supervise reaps it through the pidfd
pub fn start_fed(
    script: &str,
    cgroup: SandboxCgroup,
) -> (Supervised, UnixDatagram, Child, OwnedFd) {
    let mut child = Command::new("sh")
        .args(["-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    cgroup.add_process(pid).unwrap();
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    let sup = Supervised {
        init_pid: pid,
        pidfd: event::pidfd_open(pid).unwrap(),
        control: OwnedFd::from(ours),
        stdout: OwnedFd::from(child.stdout.take().unwrap()),
        stderr: OwnedFd::from(child.stderr.take().unwrap()),
        cgroup,
        started: Instant::now(),
        enforced: Enforced::default(),
        output: OutputMode::Capture,
        console: None,
        observer: None,
        stdin: None,
        termination: None,
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    (sup, theirs, child, OwnedFd::from(stdin))
}

pub fn say(sock: &UnixDatagram, msg: &InitMessage) {
    sock.send(&serde_json::to_vec(msg).unwrap()).unwrap();
}

/// A cgroup for the tests that need the kernel's accounting; None when this host (or user)
/// cannot make one.
pub fn cgroup_for(p: &Policy) -> Option<SandboxCgroup> {
    let mut e = Enforced::default();
    SandboxCgroup::prepare(p, &mut e).ok()
}

/// An observer that keeps every event, in order.
#[derive(Debug, Default)]
pub struct Recorder(std::sync::Mutex<Vec<crate::events::RunEvent>>);

impl crate::events::Observer for Recorder {
    fn event(&self, event: &crate::events::RunEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<crate::events::RunEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The bytes of every `Stdout` (0) or `Stderr` (1) event, joined.
    pub fn stream(&self, index: usize) -> Vec<u8> {
        use crate::events::RunEvent;
        let mut bytes = Vec::new();
        for event in self.events() {
            match (index, event) {
                (0, RunEvent::Stdout { data }) | (1, RunEvent::Stderr { data }) => {
                    bytes.extend(data.to_bytes().unwrap())
                }
                _ => {}
            }
        }
        bytes
    }
}
