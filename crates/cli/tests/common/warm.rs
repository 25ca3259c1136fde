//! The warm-suite mode (`BUNKER_TEST_WARM=1`, issue 13: "warm and cold runs give identical
//! results, reports and exit codes"): every `bunker` the tests run is a wrapper that points it
//! at a `bunker serve` of this test process's own, with `BUNKER_WARM=require`, so each `bunker
//! run` is served by the daemon from a prepared sandbox (`prepare` then `launch`, the path a
//! pooled one takes) and fails loudly if it was not. The tests themselves are unchanged.
//!
//! Two daemons, each started on first use: one as this process's uid (root in CI), one as uid
//! 65534 for `bunker_as_nobody()`; the wrapper picks by the uid it runs as. They are started
//! through `setpriv --pdeathsig KILL` from a thread that lives as long as the process, so they
//! die with the test process however it ends (a panic, nextest's timeout kill).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// Tests the warm mode runs as they are (cold, locally), each with why the daemon path cannot
/// carry what it checks.
pub const EXCLUDED: &[(&str, &str)] = &[
    // The sandbox's init is the supervisor's child: through a daemon, the daemon's, not
    // bunker's, so these tests cannot find it (or kill the supervisor) from the CLI's pid.
    // The daemon's side is tested by serve_protocol and serve_pool.
    (
        "init_forwards_sigterm_to_the_program",
        "finds init as the CLI's child",
    ),
    (
        "supervisor_sigkill_leaves_no_sandbox_process",
        "SIGKILLs the supervisor, the daemon here",
    ),
    (
        "concurrent_root_sandboxes_get_distinct_host_ids_and_files_keep_the_grant_owner",
        "finds each init as the CLI's child",
    ),
    // BUNKER_ROOT_IDS sets the host ids of the process that builds the sandboxes: through a
    // daemon, that is its config's `host_ids`, not the CLI's environment.
    (
        "as_root_without_a_user_namespace_the_program_is_its_leased_host_id",
        "BUNKER_ROOT_IDS is the supervisor's setting",
    ),
    (
        "a_stdin_file_the_sandbox_could_change_is_relayed_not_handed_over",
        "BUNKER_ROOT_IDS is the supervisor's setting",
    ),
    // `kernel.tty` on a terminal: `bunker run` through a daemon refuses it (the pty would be
    // the daemon's, which is not in the caller's terminal session; crates/cli/src/connect.rs,
    // docs/cli.md).
    (
        "with_kernel_tty_the_program_gets_a_pty_of_bunkers_and_the_terminal_comes_back",
        "kernel.tty",
    ),
    ("a_resized_terminal_resizes_bunkers_pty", "kernel.tty"),
    (
        "with_kernel_tty_the_program_cannot_open_its_pty_to_other_host_users",
        "kernel.tty",
    ),
    (
        "the_terminal_comes_back_after_a_timeout_or_a_setup_error_and_ctrl_c_reaches_the_program",
        "kernel.tty",
    ),
];

/// Whether the warm-suite mode is on.
pub fn enabled() -> bool {
    std::env::var_os("BUNKER_TEST_WARM").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The test this thread runs (libtest names its thread after it), else the one nextest named
/// on the command line.
fn current_test() -> Option<String> {
    if let Some(name) = std::thread::current().name().filter(|n| *n != "main") {
        return Some(name.to_string());
    }
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

/// Whether the running test is one of [`EXCLUDED`].
pub fn excluded() -> bool {
    current_test().is_some_and(|test| {
        EXCLUDED
            .iter()
            .any(|(name, _)| test == *name || test.ends_with(&format!("::{name}")))
    })
}

struct Place {
    dir: PathBuf,
    wrapper: PathBuf,
}

/// The directory of the daemons' sockets and logs, and the wrapper, made once.
fn place() -> &'static Place {
    static PLACE: OnceLock<Place> = OnceLock::new();
    PLACE.get_or_init(|| {
        remove_dead_places();
        let dir = tempfile::Builder::new()
            .prefix("bunker-warm-test-")
            .tempdir()
            .unwrap()
            .keep();
        // The rootless daemon makes its socket here, and nobody's client must reach it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(dir.join("owner"), std::process::id().to_string()).unwrap();
        let own_uid = own_uid();
        let wrapper = dir.join("bunker");
        let script = format!(
            "#!/bin/sh\n\
             # bunker through this test process's daemons (BUNKER_TEST_WARM=1), by uid.\n\
             case \"$(id -u)\" in\n\
             {own_uid}) BUNKER_SOCKET={own} ;;\n\
             65534) BUNKER_SOCKET={nobody} ;;\n\
             *) echo \"bunker (warm tests): no daemon for uid $(id -u)\" >&2; exit 125 ;;\n\
             esac\n\
             BUNKER_WARM=require\n\
             export BUNKER_SOCKET BUNKER_WARM\n\
             exec {bin} \"$@\"\n",
            own = dir.join("own.sock").display(),
            nobody = dir.join("nobody.sock").display(),
            bin = super::real_bunker_bin().display(),
        );
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Place { dir, wrapper }
    })
}

/// Removes the directories of earlier test processes that are gone (their daemons died with
/// them; only the directory stays behind).
fn remove_dead_places() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("bunker-warm-test-")
        {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner")).unwrap_or_default();
        if owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn own_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .and_then(|uid| uid.parse().ok())
        .unwrap()
}

/// The wrapper, with the daemons it needs running: this uid's (`own`) and nobody's.
pub fn wrapper(own: bool, nobody: bool) -> PathBuf {
    static OWN: OnceLock<()> = OnceLock::new();
    static NOBODY: OnceLock<()> = OnceLock::new();
    let place = place();
    if own {
        OWN.get_or_init(|| start(&place.dir, "own", false));
    }
    if nobody && super::is_root() {
        NOBODY.get_or_init(|| start(&place.dir, "nobody", true));
    }
    place.wrapper.clone()
}

/// Starts `bunker serve` on `dir/<name>.sock` and waits until it answers.
fn start(dir: &Path, name: &str, as_nobody: bool) {
    let socket = dir.join(format!("{name}.sock"));
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new("setpriv");
    cmd.arg("--pdeathsig").arg("KILL");
    if as_nobody {
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    }
    cmd.arg("--")
        .arg(super::real_bunker_bin())
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .current_dir(dir)
        .env_remove("BUNKER_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // The parent-death signal follows the thread that forked: this one outlives every test.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let child = cmd.spawn();
        let failed = child.as_ref().err().map(ToString::to_string);
        tx.send(failed).unwrap();
        let _keep = child;
        loop {
            std::thread::park();
        }
    });
    if let Some(error) = rx.recv().unwrap() {
        panic!("cannot start the warm-test daemon {name}: {error}");
    }
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the warm-test daemon {name} did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
