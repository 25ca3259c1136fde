//! The program's stdin: the caller's terminal (or anything else the program could write
//! through) never reaches the sandbox; the supervisor relays its bytes instead.
//!
//! What the program reads is the request's choice ([`ProgramStdin`]): nothing (`/dev/null`), a
//! descriptor the caller hands over (a service's client's pipe or file: the program's fd 0 is
//! that open file itself; the caller chose to give it), or the caller's own stdin, inherited
//! as the table says:
//!
//! | caller's stdin | program's fd 0 |
//! |---|---|
//! | closed, `/dev/null` | `/dev/null` (read-only) |
//! | pipe; regular file or FIFO the sandbox's host uid neither owns nor may write; open read-only | the same open file (seeking, `fstat` work) |
//! | terminal, `kernel.tty` true | the slave of a pty made by bunker (see below) |
//! | terminal, socket, any other file, a file the sandbox's host uid owns or may write, anything open for writing | a pipe the supervisor fills |
//!
//! A read-only descriptor is enough for the file's owner to `fchmod` it, `futimens` it and set
//! its extended attributes, and enough for anyone who may write it to set its times and `user.*`
//! attributes: none of these looks at the open mode, and the host file is on no mount of the
//! sandbox (landlock has no right for them). So a file the sandbox could change that way (the
//! caller's own file rootless) is relayed like a terminal.
//!
//! The relay reads the caller's stdin in the supervisor's event loop (`supervise/machine.rs`)
//! only when poll says it is readable, and never more than `FIONREAD` says is there, so it never
//! blocks and never touches the caller's open file description (no O_NONBLOCK on a shared
//! terminal). End of file on the caller's side closes the pipe: the program sees end of file.
//!
//! With `kernel.tty`, the program's fd 0 (and its fd 1 and 2 when the caller's are terminals)
//! is the slave of a pseudo-terminal from the host's `/dev/ptmx`, with the caller's termios and
//! window size (resizes follow), and the program leads a session whose controlling terminal it
//! is (^C signals the program, not bunker). The caller's terminal is put in raw mode before the
//! clone, so keys pass to the pty unchanged, and restored when the relay is dropped: after the
//! run, however it ended, and on every setup error.
//! What the program writes to the pty comes out of the master and is read as its stdout, through
//! the output cap.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use bunker_sys::tty::{self, StdinKind};
use bunker_sys::{event, fd, SysError};

use crate::error::SandboxError;

/// How long the relay waits before looking again at a terminal whose foreground belongs to
/// another process group (bunker was put in the background: reading would stop it).
const BACKGROUND_RETRY: Duration = Duration::from_millis(100);
/// Largest read from the caller's stdin at once.
const RELAY_CHUNK: usize = 64 * 1024;

/// What the program reads on its fd 0 (`RunRequest::stdin`).
#[derive(Debug, Default)]
pub enum ProgramStdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// This open file, as it is (a pipe or file a service's client passed).
    Fd(OwnedFd),
    /// The calling process's own stdin, passed on or relayed as the module's table says (the
    /// CLI).
    Inherit,
}

/// The program's standard descriptors that come from the caller's side, prepared before the
/// clone (spawn.rs step 3). Init makes `stdin` its own fd 0 before anything else.
#[derive(Debug)]
pub struct PreparedStdin {
    /// Becomes the program's fd 0.
    pub stdin: OwnedFd,
    /// The pty's slave, for the program's fd 1 and fd 2 when the caller's are terminals.
    pub terminal_output: [Option<OwnedFd>; 2],
    /// The program leads a session with `stdin` (a pty) as its controlling terminal.
    pub terminal_session: bool,
    /// The supervisor's side, when the bytes are relayed.
    pub relay: Option<Relay>,
}

fn setup(step: &str) -> impl FnOnce(SysError) -> SandboxError + '_ {
    move |source| SandboxError::Setup {
        step: step.to_string(),
        source,
    }
}

/// Decides what the program's fd 0 is (see the module's table). `pty` is the policy's
/// `kernel.tty`; `sandbox_uid` is the host uid the sandbox runs as.
pub fn prepare(
    choice: &ProgramStdin,
    pty: bool,
    sandbox_uid: u32,
) -> Result<PreparedStdin, SandboxError> {
    let caller = std::io::stdin();
    let caller = caller.as_fd();
    let kind = match choice {
        ProgramStdin::Null => StdinKind::Nothing,
        ProgramStdin::Inherit => tty::stdin_kind(caller, sandbox_uid),
        ProgramStdin::Fd(given) => {
            let stdin =
                fd::dup_above_stdio(given.as_raw_fd()).map_err(setup("pass the given stdin on"))?;
            return Ok(PreparedStdin {
                stdin,
                terminal_output: [None, None],
                terminal_session: false,
                relay: None,
            });
        }
    };
    let plain = |stdin: OwnedFd, relay: Option<Relay>| PreparedStdin {
        stdin,
        terminal_output: [None, None],
        terminal_session: false,
        relay,
    };
    match kind {
        StdinKind::Nothing => {
            let null =
                fd::open_dev_null().map_err(setup("open /dev/null for the program's stdin"))?;
            let null = fd::dup_above_stdio(null.as_raw_fd())
                .map_err(setup("open /dev/null for the program's stdin"))?;
            Ok(plain(null, None))
        }
        StdinKind::ReadOnlyData => Ok(plain(
            fd::dup_above_stdio(caller.as_raw_fd()).map_err(setup("pass stdin on"))?,
            None,
        )),
        StdinKind::Terminal if pty => prepare_pty(caller),
        StdinKind::Terminal | StdinKind::Other => {
            let step = "create the stdin relay pipe";
            let (r, w) = fd::pipe().map_err(setup(step))?;
            let r = fd::dup_above_stdio(r.as_raw_fd()).map_err(setup(step))?;
            let relay = Relay::new(caller, File::from(w), kind == StdinKind::Terminal, None)?;
            Ok(plain(r, Some(relay)))
        }
    }
}

fn prepare_pty(caller: BorrowedFd<'_>) -> Result<PreparedStdin, SandboxError> {
    let step = "create the program's pseudo-terminal";
    let (master, slave) = tty::open_pty().map_err(setup(step))?;
    let slave = fd::dup_above_stdio(slave.as_raw_fd()).map_err(setup(step))?;
    // The pty behaves as the caller's terminal did: same modes, same size.
    let saved = tty::termios(caller).map_err(setup(step))?;
    tty::set_termios(slave.as_fd(), &saved).map_err(setup(step))?;
    if let Ok(size) = tty::window_size(caller) {
        tty::set_window_size(master.as_fd(), &size).map_err(setup(step))?;
    }
    let mut terminal_output = [None, None];
    for (out, caller_fd) in terminal_output
        .iter_mut()
        .zip([std::io::stdout().as_fd(), std::io::stderr().as_fd()])
    {
        if tty::is_terminal(caller_fd) {
            *out = Some(fd::dup_above_stdio(slave.as_raw_fd()).map_err(setup(step))?);
        }
    }
    let output = File::from(fd::dup_above_stdio(master.as_raw_fd()).map_err(setup(step))?);
    let relay = Relay::new(caller, File::from(master), true, Some((saved, output)))?;
    Ok(PreparedStdin {
        stdin: slave,
        terminal_output,
        terminal_session: true,
        relay: Some(relay),
    })
}

/// The supervisor's side of the program's stdin: the caller's stdin copied into the pipe (or
/// the pty's master) as the program takes it.
#[derive(Debug)]
pub struct Relay {
    /// The caller's stdin (a duplicate: the same open file description, whose status flags are
    /// never changed).
    source: Option<File>,
    source_is_terminal: bool,
    /// The pipe's write end, or the pty's master; non-blocking (our own open file).
    sink: Option<File>,
    /// Read from the source, not yet taken by the sink.
    pending: Vec<u8>,
    /// Reading the terminal would stop bunker until then (it is in the background).
    paused_until: Option<Instant>,
    /// The sink is a pty's master: it stays open after the caller's end of file, since the
    /// program's output comes out of it too.
    pty: bool,
    /// Pty mode: the master's duplicate the program's output is read from, until handed to the
    /// loop.
    pty_output: Option<File>,
    /// Pty mode, once raw mode is on: the caller's terminal and the modes to put back.
    restore: Option<(File, libc::termios)>,
}

impl Relay {
    fn new(
        caller: BorrowedFd<'_>,
        sink: File,
        source_is_terminal: bool,
        pty: Option<(libc::termios, File)>,
    ) -> Result<Relay, SandboxError> {
        let step = "set up the stdin relay";
        let source = File::from(fd::dup_above_stdio(caller.as_raw_fd()).map_err(setup(step))?);
        event::set_nonblocking(sink.as_fd()).map_err(setup(step))?;
        let (modes, pty_output) = match pty {
            Some((modes, output)) => (Some(modes), Some(output)),
            None => (None, None),
        };
        let mut relay = Relay {
            source: Some(source),
            source_is_terminal,
            sink: Some(sink),
            pending: Vec::new(),
            paused_until: None,
            pty: pty_output.is_some(),
            pty_output,
            restore: None,
        };
        if let Some(modes) = modes {
            relay.raw_mode(modes);
        }
        Ok(relay)
    }

    /// Pty mode: the caller's terminal goes raw, before the sandbox exists (so before the program
    /// can print a prompt), until the relay is dropped.
    fn raw_mode(&mut self, modes: libc::termios) {
        let Some(source) = self.source.as_ref() else {
            return;
        };
        // From the background, changing the terminal's modes would stop bunker (SIGTTOU).
        if tty::read_would_stop(source.as_fd()) {
            return;
        }
        let Ok(terminal) = source.try_clone() else {
            return;
        };
        if tty::set_termios(terminal.as_fd(), &tty::raw_mode(&modes)).is_ok() {
            self.restore = Some((terminal, modes));
        }
        // Best effort: without it the pty keeps the size it started with.
        let _ = event::watch_window_changes();
    }

    /// Init's copy, after the clone: closes its descriptors — the caller's terminal among them —
    /// without touching the terminal's modes, which are the supervisor's to restore.
    pub fn close_in_child(mut self) {
        self.restore = None;
    }

    /// The caller's terminal was resized: the pty takes its new size (and the kernel sends the
    /// program SIGWINCH).
    pub fn window_changed(&mut self) {
        if let (Some((terminal, _)), Some(master)) = (self.restore.as_ref(), self.sink.as_ref()) {
            if let Ok(size) = tty::window_size(terminal.as_fd()) {
                let _ = tty::set_window_size(master.as_fd(), &size);
            }
        }
    }

    /// Pty mode: the master, to be read as the program's stdout.
    pub fn take_output(&mut self) -> Option<File> {
        self.pty_output.take()
    }

    /// The caller's stdin, when the loop should wait for it to be readable.
    pub fn wants_read(&self, now: Instant) -> Option<BorrowedFd<'_>> {
        if !self.pending.is_empty() || self.sink.is_none() {
            return None;
        }
        if self.paused_until.is_some_and(|t| now < t) {
            return None;
        }
        self.source.as_ref().map(AsFd::as_fd)
    }

    /// The sink, when bytes wait for it to be writable.
    pub fn wants_write(&self) -> Option<BorrowedFd<'_>> {
        if self.pending.is_empty() {
            return None;
        }
        self.sink.as_ref().map(AsFd::as_fd)
    }

    /// When the loop must wake to look at a paused terminal again.
    pub fn wake_at(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.source.is_some())
    }

    /// The caller's stdin is readable: takes what is there without blocking.
    pub fn read_source(&mut self) {
        let Some(source) = self.source.as_mut() else {
            return;
        };
        if self.source_is_terminal && tty::read_would_stop(source.as_fd()) {
            self.paused_until = Some(Instant::now() + BACKGROUND_RETRY);
            return;
        }
        self.paused_until = None;
        // Never more than is there: a read past it would block the loop. Zero bytes ready yet
        // readable is end of file, which a one-byte read returns at once.
        let ready = tty::readable_bytes(source.as_fd()).unwrap_or(RELAY_CHUNK);
        let want = ready.clamp(1, RELAY_CHUNK);
        let mut buf = vec![0u8; want];
        match source.read(&mut buf) {
            Ok(0) => self.source_ended(),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.write_sink();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            // EIO: the terminal hung up. Whatever it is, the caller's stdin has nothing more.
            Err(_) => self.source_ended(),
        }
    }

    fn source_ended(&mut self) {
        self.source = None;
        // A pipe's reader sees end of file once the pending bytes are in; a pty's master also
        // carries the program's output and stays.
        if !self.pty && self.pending.is_empty() {
            self.sink = None;
        }
    }

    /// The sink is writable: hands it what it takes.
    pub fn write_sink(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            self.pending.clear();
            return;
        };
        match sink.write(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => {
                // The program closed its stdin (EPIPE): stop taking the caller's input.
                self.sink = None;
                self.source = None;
                self.pending.clear();
            }
        }
        if self.pending.is_empty() && self.source.is_none() && !self.pty {
            self.sink = None;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some((terminal, modes)) = self.restore.take() {
            let _ = tty::set_termios(terminal.as_fd(), &modes);
        }
    }
}
