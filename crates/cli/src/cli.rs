//! Command-line interface definition.

use std::ffi::OsString;
use std::path::PathBuf;

use bunker_policy::LimitName;
use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};

const ABOUT: &str =
    "Run untrusted code under one deny-by-default policy: namespaces, a fresh root, \
landlock, seccomp, cgroups and an egress proxy.";

const RUN_EXAMPLES: &str = "Examples:
  # The built-in default policy: no network, no files beyond the system's, a private /tmp
  bunker run -- python3 -c 'print(open(\"/etc/hostname\").read())'

  # A policy file, with a tighter timeout and memory limit on top
  bunker run --policy policy.json --timeout 5s --memory 64MB -- bun run app.ts

  # Allow one host through the egress proxy and one directory to write
  bunker run --allow-net api.example.com:443 --allow-write ./out -- curl https://api.example.com

  # A machine-readable result in a file (or on a descriptor: --report-fd 3)
  bunker run --report-file result.json --timeout 1s -- sleep 10

  # Each proxy decision as it happens
  bunker run -v --allow-net example.com -- curl -sI https://example.com

  # A policy from stdin, or inline; relative paths resolve against the current directory
  generate-policy | bunker run --policy - -- python3 agent.py
  bunker run --policy-json '{\"extends\": [\"default\"], \"allow\": {\"read\": [\"./agent.py\"]}}' -- python3 agent.py

  # Through a `bunker serve` daemon (or set BUNKER_SOCKET; --local runs here regardless)
  bunker run --connect /run/bunker.sock -- python3 -c 'print(6*7)'

Exit codes: the program's own code, or 128+N if a signal N killed it; 120 policy error,
121 setup error, 122 limit hit (memory, pids, CPU time, output), 123 the report could not be
written, 124 timeout, 125 the daemon refused, lost or could not be reached (--connect),
126 cannot execute, 127 not found.";

const CHECK_EXAMPLES: &str = "Examples:
  bunker check policy.json            # validate and print the effective merged policy
  bunker check --profile runtime:bun  # print a built-in profile
  bunker check child.json --subset-of parent.json
  bunker check --strict policy.json   # a granted path that does not exist is an error too

Grants that `run` would refuse (an allow.write path that does not exist or is reached through a
symlink) are errors; a missing allow.read/allow.exec path (skipped by `run`) and a symlinked
grant are warnings on stderr.

Exit codes: 0 valid (and a subset, with --subset-of); 1 not a subset; 120 policy error.";

const SCHEMA_EXAMPLES: &str = "Examples:
  bunker schema > policy.schema.json   # JSON Schema of policy files, for editors
  bunker schema --report               # JSON Schema of `bunker run --report json`";

const DOCTOR_EXAMPLES: &str = "Examples:
  bunker doctor            # what this host can enforce, layer by layer
  bunker doctor --json     # the same, as JSON
  bunker doctor --clean    # also remove cgroups left by a killed supervisor

Exit codes: 0 when every layer of the default policy is enforced; 1 otherwise.";

const SERVE_EXAMPLES: &str = "Examples:
  bunker serve --socket /run/bunker.sock                      # only this uid may connect
  bunker serve --socket /run/bunker.sock --config serve.json  # grants, limits, named policies
Signals: SIGTERM/SIGINT drain (no new sandboxes; the running ones finish) and exit 0;
SIGHUP reloads the config. Exit codes: 0 after a drain; 1 when it cannot start.";

#[derive(Debug, Parser)]
#[command(name = "bunker", version, about = ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `bunker run ...` parsed with only `run`'s arguments: building the parser for every
/// subcommand is a tenth of a millisecond of every sandbox's start-up. `None` (the full parser
/// then runs) for anything else, for help, and for any error, so messages stay the same.
pub fn parse_run_fast() -> Option<RunOpts> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "run" {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let command_at = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    if rest[..command_at]
        .iter()
        .any(|a| a == "-h" || a == "--help" || a == "-V" || a == "--version")
    {
        return None;
    }
    let parser = RunOpts::augment_args(clap::Command::new("run").no_binary_name(true));
    let matches = parser.try_get_matches_from(rest).ok()?;
    RunOpts::from_arg_matches(&matches).ok()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command inside a sandbox built from a policy.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunOpts>),
    /// Validate a policy file and print the effective (merged) policy.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckOpts),
    /// Print the JSON Schema of policy files (or of the run report).
    #[command(after_help = SCHEMA_EXAMPLES)]
    Schema(SchemaOpts),
    /// Report what this host can enforce.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorOpts),
    /// Serve sandboxes on a Unix socket (docs/protocol.md).
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeOpts),
    /// Evaluate code in a sandboxed Bun or Python worker; print the result as JSON.
    #[command(after_help = EVAL_EXAMPLES)]
    Eval(Box<EvalOpts>),
}

const EVAL_EXAMPLES: &str = "Examples:
  bunker eval '1+1'
  bunker eval --engine python 'sum(range(10))'
  bunker eval --timeout 2s --memory 64MB --console-max 1KB 'console.log(\"hi\"); 42'
  bunker eval --globals '{\"x\": 41}' 'x + 1'
  bunker eval --function add --args '[1, 2]' 'function add(a, b) { return a + b }'
  bunker eval --allow-net example.com 'fetch(\"https://example.com\").then(r => r.status)'
  bunker eval --spec '{\"engine\": \"python\", \"code\": \"6*7\"}'
  echo '{\"engine\": \"bun\", \"code\": \"1+1\", \"http\": {\"allowlist\": [\"example.com\"]}}' | bunker eval --spec -

Prints the result as one JSON line (docs/api.md, \"Eval\"; docs/workers.md); exit 0 when `error`
is null.";

#[derive(Debug, Args)]
pub struct EvalOpts {
    /// Evaluate through the `bunker serve` daemon on this socket (default: `BUNKER_SOCKET`;
    /// neither: cold, here).
    #[arg(long, value_name = "SOCKET")]
    pub connect: Option<PathBuf>,
    /// Evaluate here even when `BUNKER_SOCKET` is set.
    #[arg(long, conflicts_with = "connect")]
    pub local: bool,
    /// The whole request as JSON (an EvalSpec, as the daemon's op `eval` takes it: engine,
    /// code, function, args, globals, limits, http, policy), or `-` to read it from stdin.
    /// Replaces every flag below and CODE: giving one of them too is a usage error.
    #[arg(
        long,
        value_name = "JSON",
        conflicts_with_all = [
            "engine", "timeout", "memory", "console_max", "allow_net", "policy", "globals",
            "function", "args", "code",
        ]
    )]
    pub spec: Option<String>,
    /// The engine: bun or python.
    #[arg(long, value_name = "ENGINE", default_value = "bun")]
    pub engine: String,
    /// Wall-clock timeout, e.g. 2s, 250ms (only lowers the profile's 10s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Memory limit, e.g. 64MB (only lowers the profile's 256MiB).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Console output kept in the result, e.g. 1KB (default 64KiB).
    #[arg(long, value_name = "SIZE")]
    pub console_max: Option<String>,
    /// Allow a host through the egress proxy (the eval's `http.allowlist`); repeatable.
    #[arg(long = "allow-net", value_name = "HOST")]
    pub allow_net: Vec<String>,
    /// A policy file extending the engine's profile (`eval:bun`, `eval:python`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Globals set before the code runs, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub globals: Option<String>,
    /// Then call this global function with `--args`; its return is the value.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// The function's arguments, as a JSON array.
    #[arg(long, value_name = "JSON", requires = "function")]
    pub args: Option<String>,
    /// The code: a script whose value is that of its last expression.
    #[arg(value_name = "CODE", required_unless_present = "spec")]
    pub code: Option<String>,
}

/// How the result of a run is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One JSON object (see docs/report.md).
    Json,
}

#[derive(Debug, Args)]
pub struct RunOpts {
    /// Policy file, or `-` to read it from stdin (default: the built-in `default` profile).
    /// Relative paths in a policy from stdin resolve against the current directory.
    #[arg(long, visible_alias = "sandbox", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The policy as a JSON string (relative paths against the current directory).
    #[arg(long, value_name = "JSON", conflicts_with = "policy")]
    pub policy_json: Option<String>,
    /// Built-in profiles to extend, e.g. `runtime:bun` (added to the policy's `extends`).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Wall-clock timeout, e.g. 5s, 250ms.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Hard memory limit, e.g. 64MB.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// CPU share in cores, e.g. 0.5.
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<f64>,
    /// Total CPU time, e.g. 2s.
    #[arg(long, value_name = "DURATION")]
    pub cpu_time: Option<String>,
    /// Bytes of stdout+stderr passed through, e.g. 10KB (default 1MiB).
    #[arg(long, value_name = "SIZE")]
    pub output: Option<String>,
    /// Allow a host (`example.com`, `*.example.com`, `host:port`, an IP or CIDR) through the proxy.
    #[arg(long = "allow-net", value_name = "HOST")]
    pub allow_net: Vec<String>,
    /// Allow reading a path.
    #[arg(long = "allow-read", value_name = "PATH")]
    pub allow_read: Vec<String>,
    /// Allow writing (and reading) a path.
    #[arg(long = "allow-write", value_name = "PATH")]
    pub allow_write: Vec<String>,
    /// Allow executing files under a path.
    #[arg(long = "allow-exec", value_name = "PATH")]
    pub allow_exec: Vec<String>,
    /// Pass an environment variable through from the caller.
    #[arg(long = "allow-env", value_name = "NAME")]
    pub allow_env: Vec<String>,
    /// Set an environment variable inside the sandbox (like the policy's `set_env`).
    #[arg(long = "set-env", value_name = "NAME=VALUE")]
    pub set_env: Vec<String>,
    /// Limits that may be skipped, with a warning, where the host cannot enforce them:
    /// memory, pids, cpu, cpu_time (comma-separated; added to `limits.best_effort`).
    #[arg(long = "best-effort", value_name = "LIMITS", value_delimiter = ',', value_parser = parse_limit_name)]
    pub best_effort: Vec<LimitName>,
    /// Pin a host name to an address for the egress proxy (like curl's --resolve), e.g.
    /// `api.test:127.0.0.1`. The address is still checked against the policy.
    #[arg(long = "resolve", value_name = "NAME:IP")]
    pub resolve: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    // What bunker says, and where the report goes (docs/cli.md, "Messages and the report").
    /// Print each decision as it happens: proxy requests, skipped grants, layers enforced.
    #[arg(short = 'v', long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print none of bunker's own lines (a report asked for is still written).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print the run's result as one JSON line on stderr when it ends (for people and old
    /// callers; programs should use --report-fd or --report-file, which the sandbox cannot forge).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub report: Option<ReportFormat>,
    /// Write the report to this file descriptor (pipe, FIFO, socket or file) instead of stderr.
    #[arg(long, value_name = "N")]
    pub report_fd: Option<i32>,
    /// Write the report to this file (created or truncated before the run) instead of stderr.
    #[arg(long, value_name = "PATH")]
    pub report_file: Option<PathBuf>,
    /// Run through the `bunker serve` daemon listening on this socket (default: the
    /// `BUNKER_SOCKET` environment variable; neither: run here). Same output, report and exit
    /// codes as a local run.
    #[arg(long, value_name = "SOCKET")]
    pub connect: Option<PathBuf>,
    /// Run here even when `BUNKER_SOCKET` is set.
    #[arg(long, conflicts_with = "connect")]
    pub local: bool,
    /// Through a daemon, start in a prepared sandbox: a pooled one that fits, else one the
    /// daemon prepares for this run as it prepares a pooled one; a run served cold is an error.
    /// Also set by `BUNKER_WARM=require`. For checking that warm runs behave as cold ones.
    #[arg(long, conflicts_with = "local")]
    pub warm: bool,
    /// The command to run and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct CheckOpts {
    /// Policy file to check, or `-` to read it from stdin.
    #[arg(value_name = "FILE", required_unless_present = "profile")]
    pub file: Option<PathBuf>,
    /// Treat warnings (a granted path that does not exist) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print a built-in profile instead (`default`, `runtime:bun`, `runtime:python`).
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    pub profile: Option<String>,
    /// Also check that the policy grants nothing beyond this one.
    #[arg(long, value_name = "FILE")]
    pub subset_of: Option<PathBuf>,
    /// Print the effective policy as a policy document to send inline (one line: no `sources`,
    /// no null values), as `bunker run --connect` sends it.
    #[arg(long)]
    pub document: bool,
}

/// A `--best-effort` name, spelled as in `limits.best_effort`.
fn parse_limit_name(name: &str) -> Result<LimitName, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| "expected one of memory, pids, cpu, cpu_time".to_string())
}

#[derive(Debug, Args)]
pub struct SchemaOpts {
    /// Print the schema of the `--report json` result instead of the policy.
    #[arg(long)]
    pub report: bool,
}

#[derive(Debug, Args)]
pub struct DoctorOpts {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Remove cgroups left behind by supervisors that were killed.
    #[arg(long)]
    pub clean: bool,
}

/// How `bunker serve` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct ServeOpts {
    /// The Unix socket to listen on (a stale one is replaced; a live one is an error).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The daemon's config (JSON): grants, named policies, limits (docs/protocol.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How the daemon logs on stderr.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Keep N sandboxes of this policy (a built-in profile or a config policy name) built
    /// ahead of the requests (default N: 2). Repeatable; wins over the config's `pools`.
    #[arg(long = "pool", value_name = "NAME[=N]", value_parser = parse_pool)]
    pub pools: Vec<(String, usize)>,
}

fn parse_pool(arg: &str) -> Result<(String, usize), String> {
    match arg.rsplit_once('=') {
        Some((name, n)) => n
            .parse::<usize>()
            .map(|n| (name.to_string(), n))
            .map_err(|_| format!("{n:?} is not a pool size (NAME=N, N a number)")),
        None => Ok((arg.to_string(), bunker_serve::DEFAULT_POOL_SIZE)),
    }
}
