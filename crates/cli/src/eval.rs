//! `bunker eval`: evaluates code in a Bun or Python worker and prints the [`EvalResult`] as one
//! JSON line on stdout (docs/cli.md, "bunker eval"). Without a daemon (`--connect`,
//! `BUNKER_SOCKET`) it runs cold here: the eval profile's sandbox prepared, the worker launched
//! with its channel as fds 3 and 4, the request written and rung, the run supervised to its end
//! while a thread watches the channel (a protocol error kills the sandbox), then the reply
//! and the run's result mapped to the EvalResult (`bunker_sandbox::worker::outcome`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use bunker_api::{
    exit, ApiError, Engine, ErrorCode, EvalLimits, EvalResult, EvalSpec, HttpOptions, PolicyChoice,
    RunResult,
};
use bunker_policy::eval::{
    apply_eval_options, eval_load_spec, spec_policy_source, DEFAULT_CONSOLE_BYTES,
};
use bunker_policy::{HostEnv, Policy, PolicySource};
use bunker_sandbox::console::{Console, Verbosity};
use bunker_sandbox::egress::Egress;
use bunker_sandbox::host::HostContext;
use bunker_sandbox::spawn::{self, Program, Sandbox};
use bunker_sandbox::worker::channel::{Channel, ChannelConfig, ChannelError};
use bunker_sandbox::worker::{outcome, program, WorkerReply, WorkerRequest};
use bunker_sys::{event, fd};

use crate::cli::EvalOpts;
use crate::egress::ProxyEgress;

/// Where `bunker eval` finds a daemon: `--connect`, else `BUNKER_SOCKET` (not with `--local`).
fn daemon_socket(opts: &EvalOpts) -> Option<PathBuf> {
    if opts.local {
        return None;
    }
    opts.connect.clone().or_else(|| {
        std::env::var_os(crate::connect::SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

pub fn main(opts: EvalOpts) -> i32 {
    let spec = match spec_of(&opts) {
        Ok(spec) => spec,
        Err(e) => return refuse(&e),
    };
    let evaluated = match daemon_socket(&opts) {
        Some(socket) => crate::connect::eval(&socket, &spec),
        None => eval_cold(&spec),
    };
    match evaluated {
        Ok(result) => print_result(&result),
        Err(e) => refuse(&e),
    }
}

/// The exit code of an eval: 0 without an error, else its kind's (docs/cli.md).
fn exit_code(result: &EvalResult) -> i32 {
    result.error.as_ref().map_or(0, |e| e.kind.cli_exit_code())
}

fn print_result(result: &EvalResult) -> i32 {
    match serde_json::to_string(result) {
        Ok(line) => {
            println!("{line}");
            exit_code(result)
        }
        Err(e) => refuse(&ApiError::new(
            ErrorCode::InternalError,
            format!("cannot encode the result: {e}"),
        )),
    }
}

/// A request-level error: no result; the error as one JSON line on stderr (docs/cli.md), the
/// exit code of its code.
fn refuse(e: &ApiError) -> i32 {
    let line = serde_json::to_string(e).unwrap_or_else(|_| e.message.clone());
    eprintln!("bunker: eval: {}", e.message);
    eprintln!("{line}");
    e.code.cli_exit_code().unwrap_or(exit::SETUP_ERROR)
}

fn usage(message: String) -> ApiError {
    ApiError::new(ErrorCode::RequestInvalid, message)
}

/// The EvalSpec of the command line: `--spec` as it is, or the flags filling one. Either way
/// the result is the spec the daemon's op `eval` takes, complete: `--connect` sends it as it is,
/// the cold path composes its policy as the daemon does ([`eval_policy`]).
fn spec_of(opts: &EvalOpts) -> Result<EvalSpec, ApiError> {
    match &opts.spec {
        Some(text) => parse_spec(text),
        None => spec_of_flags(opts),
    }
}

/// `--spec JSON`, or `--spec -`: the JSON read from stdin (so that large code need not go
/// through argv). A spec that does not parse is `request_invalid`, naming the field.
fn parse_spec(arg: &str) -> Result<EvalSpec, ApiError> {
    let text = if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| usage(format!("--spec -: cannot read the spec from stdin: {e}")))?;
        text
    } else {
        arg.to_string()
    };
    let mut de = serde_json::Deserializer::from_str(&text);
    let spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field == "." {
            usage(format!("--spec: not an eval spec: {inner}"))
        } else {
            usage(format!("--spec: field `{field}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| usage(format!("--spec: text after the spec: {e}")))?;
    Ok(spec)
}

/// The flags' EvalSpec. `--policy FILE` is loaded here (relative to the caller, with the
/// engine's profile in its `extends`) and carried inline as its effective document, as a
/// `--spec` would carry it.
fn spec_of_flags(opts: &EvalOpts) -> Result<EvalSpec, ApiError> {
    let engine = Engine::parse(&opts.engine).ok_or_else(|| {
        usage(format!(
            "--engine {:?}: expected one of bun, python",
            opts.engine
        ))
    })?;
    let mut spec = EvalSpec::new(engine, opts.code.clone().unwrap_or_default());
    let ms = |d: std::time::Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
    spec.limits = EvalLimits {
        timeout_ms: (opts.timeout.as_deref())
            .map(|t| bunker_policy::units::parse_duration(t).map(ms))
            .transpose()
            .map_err(|e| usage(format!("--timeout: {e}")))?,
        memory_bytes: (opts.memory.as_deref())
            .map(bunker_policy::units::parse_size)
            .transpose()
            .map_err(|e| usage(format!("--memory: {e}")))?,
        console_bytes: (opts.console_max.as_deref())
            .map(bunker_policy::units::parse_size)
            .transpose()
            .map_err(|e| usage(format!("--console-max: {e}")))?,
    };
    if !opts.allow_net.is_empty() {
        spec.http = Some(HttpOptions {
            allowlist: opts.allow_net.clone(),
            ..HttpOptions::default()
        });
    }
    if let Some(json) = &opts.globals {
        spec.globals = serde_json::from_str(json)
            .map_err(|e| usage(format!("--globals: expected a JSON object: {e}")))?;
    }
    spec.function = opts.function.clone();
    if let Some(json) = &opts.args {
        spec.args = serde_json::from_str(json)
            .map_err(|e| usage(format!("--args: expected a JSON array: {e}")))?;
    }
    if let Some(file) = &opts.policy {
        let load = eval_load_spec(
            engine,
            Some(PolicySource::File(file.clone())),
            current_dir()?,
        );
        let policy = bunker_policy::load(&load).map_err(|e| ApiError::from(&e))?;
        spec.policy = Some(PolicyChoice::Inline(crate::connect::policy_document(
            &policy,
        )?));
    }
    Ok(spec)
}

fn current_dir() -> Result<PathBuf, ApiError> {
    std::env::current_dir().map_err(|e| {
        ApiError::new(
            ErrorCode::SetupFailed,
            format!("cannot read the current directory: {e}"),
        )
    })
}

/// The policy a cold eval runs under, composed as the daemon composes it
/// (`bunker_serve::eval::effective_policy`): the engine's profile, extended by `spec.policy` (an
/// inline document, relative paths against the current directory, or a built-in profile by
/// name: there is no daemon config here), then the spec's `http` and `limits` applied
/// (`bunker_policy::eval::apply_eval_options`, the one place of that mapping).
fn eval_policy(spec: &EvalSpec) -> Result<Policy, ApiError> {
    let policy_error = |e: bunker_policy::PolicyError| ApiError::from(&e);
    let cwd = current_dir()?;
    let source = match &spec.policy {
        None => None,
        Some(choice) => Some(spec_policy_source(choice, &cwd, |_| None).ok_or_else(|| {
            let name = match choice {
                PolicyChoice::Name(name) => name.as_str(),
                PolicyChoice::Inline(_) => "",
            };
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "spec.policy: no policy named {name:?} (without a daemon only the built-in profiles have names)"
                ),
            )
        })?),
    };
    let load = eval_load_spec(spec.engine, source, cwd.clone());
    let mut policy = bunker_policy::load_with_origins(&load, &HostEnv::from_process())
        .map(|(policy, _)| policy)
        .map_err(policy_error)?;
    apply_eval_options(&mut policy, spec.http.as_ref(), &spec.limits).map_err(policy_error)?;
    Ok(policy)
}

fn setup_error(step: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::SetupFailed, format!("{step}: {detail}"))
}

/// The cold path: a sandbox built for this eval, its worker started, supervised to its end.
/// Must run while the process is single-threaded (it clones).
fn eval_cold(spec: &EvalSpec) -> Result<EvalResult, ApiError> {
    if let Some(worker) = &spec.worker {
        return Err(usage(format!(
            "spec.worker {worker:?}: opened workers live in a daemon; evaluate through one (--connect / BUNKER_SOCKET)"
        )));
    }
    let policy = eval_policy(spec)?;
    let console_bytes = spec.limits.console_bytes.unwrap_or(DEFAULT_CONSOLE_BYTES);
    let (mut channel, worker_fds) = Channel::new(ChannelConfig::default())
        .map_err(|e| setup_error("create the worker channel", e))?;
    let request = WorkerRequest::from_spec(spec, console_bytes, false);
    channel.send_request(&request).map_err(|e| match e {
        ChannelError::RequestTooLarge { .. } => usage(e.to_string()),
        e => setup_error("write the request", e),
    })?;
    let host = HostContext::of_this_process().map_err(|e| e.to_api_error())?;
    let prepared = spawn::prepare(&policy, &host).map_err(|f| f.error.to_api_error())?;
    let started = Instant::now();
    let sandbox = prepared
        .launch(
            &policy,
            Program {
                argv: program::argv(spec.engine),
                env: Vec::new(),
                cwd: Some(PathBuf::from("/tmp")),
                caller_cwd: None,
                stdin: None,
                extra_fds: worker_fds.into_extra_fds(),
            },
        )
        .map_err(|e| e.to_api_error())?;
    let (reply, run) = supervise(sandbox, &policy, channel)?;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(outcome::eval_result(
        reply.as_ref().map(Clone::clone),
        Some(&run),
        wall_ms,
        false,
    ))
}

type Reply = Result<Option<WorkerReply>, ChannelError>;

/// Supervises the launched worker to its end with the egress proxy on its listeners, while a
/// thread waits for its reply and kills the sandbox on a protocol error.
fn supervise(
    sandbox: Sandbox,
    policy: &Policy,
    mut channel: Channel,
) -> Result<(Reply, RunResult), ApiError> {
    let Sandbox {
        mut supervised,
        lifeline,
        proxy_listeners,
    } = sandbox;
    let kill = |pidfd: &OwnedFd| {
        let _ = event::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    };
    let pidfd = fd::dup_cloexec(supervised.pidfd.as_raw_fd())
        .map_err(|e| setup_error("hold the worker's pidfd", e))?;
    let quiet = Console::new(Verbosity::Quiet).map_err(|e| setup_error("set up output", e))?;
    let mut egress = ProxyEgress::new(policy, Vec::new(), &quiet);
    let proxied = proxy_listeners.is_some();
    if let Some((http, socks)) = proxy_listeners {
        if let Err(detail) = egress.start(http, socks) {
            kill(&pidfd);
            let _ = event::wait_pidfd(pidfd.as_fd(), true);
            return Err(setup_error("start the egress proxy", detail));
        }
    }
    let watcher = std::thread::spawn(move || {
        let reply = channel.wait_reply(None);
        if matches!(&reply, Err(e) if e.is_protocol_error()) {
            kill(&pidfd);
        }
        reply
    });
    supervised.termination = event::termination_fd();
    let run = bunker_sandbox::supervise::supervise(supervised, policy);
    drop(lifeline);
    let records = if proxied { egress.finish() } else { Vec::new() };
    let reply = watcher.join().unwrap_or(Err(ChannelError::Closed));
    let mut run = run.map_err(|e| e.to_api_error())?;
    run.http = bunker_api::HttpReport::from_records(records);
    Ok((reply, run))
}
