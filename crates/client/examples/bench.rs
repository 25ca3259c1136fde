//! The service benchmark's client (scripts/bench-serve.sh runs it; docs/benchmarks.md,
//! "Service"). Keeps its connections open and measures, against a running `bunker serve`:
//!
//! - `latency`: `ROUNDS` interleaved rounds, each timing one cold `/bin/true` through the daemon
//!   (request written to reply read, on one connection), one `health` round trip (the protocol's
//!   floor), and, by fork/exec/wait, the one-shot `bunker run -q -- /bin/true` and `bunker check
//!   --profile default` (the one-shot's process cost without a sandbox: exec, arguments, the
//!   policy resolved and printed). Each round also reads the CPU time the daemon's own threads,
//!   the children it reaped, its live helpers (the spawner) and the one-shot spent
//!   (/proc/PID/stat).
//! - `throughput`: sandboxes per second for each client count, each client a connection running
//!   `/bin/true` back to back for `SECONDS`.
//! - `rss`: the daemon's VmRSS idle and with `LIVE` sleeping sandboxes started, beside the
//!   summed RSS of its child processes.
//!
//! Prints one JSON object. Usage:
//! `bench SOCKET DAEMON_PID BUNKER_BIN ROUNDS SECONDS CLIENTS[,CLIENTS...] LIVE`
//!
//! `bench pool SOCKET BUNKER_BIN ROUNDS` (scripts/bench-pool.sh, "Warm pools"): `ROUNDS`
//! interleaved rounds of bare `/bin/true`, `unshare -Urpnmif --mount-proc /bin/true` (each
//! spawned and waited for), a warm `run` of `/bin/true` from the `default` pool of 2 (the pool
//! refilled before each, outside the measured time) and a cold one (a policy no pool fits);
//! then the refill rate after bursts that empty the pool, beside `bunker run -- /bin/true` in a
//! loop.
//!
//! `bench eval SOCKET ROUNDS ENGINE[,ENGINE...]` (scripts/bench-eval.sh, "Warm eval"): for each
//! round and engine, a warm `eval` of `1+1` from the `eval:ENGINE` pool (full round trip, the
//! pool refilled before each outside the measured time), beside `bun -e 1` / `python3 -c 1`
//! spawned bare; then the pools' idle memory per sandbox from `stats`.

use std::error::Error;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunker_api::{PolicyChoice, RunSpec};
use bunker_client::{Client, StdioFds};
use serde_json::{json, Value};

type Outcome<T> = Result<T, Box<dyn Error>>;

fn spec(argv: &[&str]) -> RunSpec {
    RunSpec {
        policy: PolicyChoice::Name("default".into()),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        cwd: None,
        env: Default::default(),
        stdin: Default::default(),
        options: Default::default(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p99 (nearest rank) of `samples`, in ms.
fn percentiles(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    json!({"p50": rank(0.50), "p99": rank(0.99), "n": samples.len()})
}

/// Times one fork/exec/wait of `argv` with its output discarded; fails unless it exits 0.
fn time_process(argv: &[&str]) -> Outcome<f64> {
    let started = Instant::now();
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = ms(started.elapsed());
    if !status.success() {
        return Err(format!("{argv:?} ended with {status}").into());
    }
    Ok(took)
}

/// CPU time of `pid`'s own threads and of its reaped children, in ms (/proc/PID/stat `utime +
/// stime`, `cutime + cstime`; clock ticks of 10 ms).
fn cpu_ms(pid: u32) -> Outcome<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<f64> = stat
        .rsplit_once(") ")
        .ok_or("no comm in /proc/PID/stat")?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let [utime, stime, cutime, cstime] = fields.as_slice() else {
        return Err("short /proc/PID/stat".into());
    };
    Ok(((utime + stime) * 10.0, (cutime + cstime) * 10.0))
}

/// CPU time (ms) of the live descendants of `pid`: between runs, the daemon's long-lived helpers
/// (its spawner), which no one reaps, so they are not in `cutime`.
fn helpers_cpu_ms(pid: u32) -> f64 {
    descendants(pid)
        .into_iter()
        .filter_map(|p| cpu_ms(p).ok())
        .map(|(own, _)| own)
        .sum()
}

fn latency(socket: &str, daemon_pid: u32, bunker: &str, rounds: usize) -> Outcome<Value> {
    let mut client = Client::connect(socket)?;
    let mut daemon_cpu = 0.0;
    let mut children_cpu = 0.0;
    let mut oneshot_cpu = 0.0;
    let mut helpers_cpu = 0.0;
    let truth = spec(&["/bin/true"]);
    let (mut daemon, mut health, mut oneshot, mut check, mut beyond_wall) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 10 {
        let helpers_before = helpers_cpu_ms(daemon_pid);
        let cpu_before = cpu_ms(daemon_pid)?;
        let started = Instant::now();
        let result = client.run(&truth)?;
        let run = ms(started.elapsed());
        let cpu_after = cpu_ms(daemon_pid)?;
        let helpers_after = helpers_cpu_ms(daemon_pid);
        if result.exit_code != Some(0) {
            return Err(format!("/bin/true through the daemon: {result:?}").into());
        }
        let started = Instant::now();
        client.health()?;
        let hello = ms(started.elapsed());
        let own_before = cpu_ms(std::process::id())?;
        let cli = time_process(&[bunker, "run", "-q", "--", "/bin/true"])?;
        let own_after = cpu_ms(std::process::id())?;
        let bare = time_process(&[bunker, "check", "--profile", "default"])?;
        // The first rounds warm caches; they are not counted.
        if round >= 10 {
            daemon_cpu += cpu_after.0 - cpu_before.0;
            children_cpu += cpu_after.1 - cpu_before.1;
            oneshot_cpu += own_after.1 - own_before.1;
            helpers_cpu += helpers_after - helpers_before;
            daemon.push(run);
            beyond_wall.push(run - result.wall_ms);
            health.push(hello);
            oneshot.push(cli);
            check.push(bare);
        }
    }
    Ok(json!({
        "daemon_run": percentiles(daemon),
        "daemon_run_minus_wall_ms": percentiles(beyond_wall),
        "health": percentiles(health),
        "oneshot_run": percentiles(oneshot),
        "oneshot_check": percentiles(check),
        "daemon_cpu_ms_per_run": daemon_cpu / rounds as f64,
        "children_cpu_ms_per_run": children_cpu / rounds as f64,
        "oneshot_cpu_ms_per_run": oneshot_cpu / rounds as f64,
        "helpers_cpu_ms_per_run": helpers_cpu / rounds as f64,
    }))
}

fn throughput(socket: &str, clients: usize, seconds: f64) -> Outcome<Value> {
    let truth = spec(&["/bin/true"]);
    let deadline = Duration::from_secs_f64(seconds);
    let mut connections = (0..clients)
        .map(|_| Client::connect(socket))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let counts: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = connections
            .iter_mut()
            .map(|c| {
                let truth = &truth;
                s.spawn(move || {
                    let mut done = 0u64;
                    while started.elapsed() < deadline {
                        let result = c.run(truth).map_err(|e| e.to_string())?;
                        if result.exit_code != Some(0) {
                            return Err(format!("{result:?}"));
                        }
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    Ok(
        json!({"clients": clients, "runs": total, "seconds": elapsed,
              "per_second": total as f64 / elapsed}),
    )
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Pids of every descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(c);
                todo.push(c);
            }
        }
    }
    found
}

fn rss(socket: &str, daemon_pid: u32, live: usize) -> Outcome<Value> {
    let mut client = Client::connect(socket)?;
    let idle = status_kib(daemon_pid, "VmRSS:").ok_or("no VmRSS for the daemon")?;
    let sleeper = spec(&["sleep", "60"]);
    let mut sandboxes = Vec::new();
    for _ in 0..live {
        sandboxes.push(client.start(&sleeper, StdioFds::default())?);
    }
    let started = Instant::now();
    while client.stats()?.live < live as u64 {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("{live} sandboxes did not come up").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let every sandbox reach its program before reading.
    std::thread::sleep(Duration::from_millis(500));
    let busy = status_kib(daemon_pid, "VmRSS:").ok_or("no VmRSS for the daemon")?;
    let hwm = status_kib(daemon_pid, "VmHWM:").ok_or("no VmHWM for the daemon")?;
    let children = descendants(daemon_pid);
    let children_kib: u64 = children
        .iter()
        .filter_map(|p| status_kib(*p, "VmRSS:"))
        .sum();
    for sandbox in &sandboxes {
        client.kill(sandbox)?;
    }
    Ok(
        json!({"live": live, "daemon_idle_kib": idle, "daemon_live_kib": busy,
              "daemon_hwm_kib": hwm, "descendants": children.len(),
              "descendants_kib": children_kib}),
    )
}

fn main() -> Outcome<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pool") => return pool::main(&args[1..]),
        Some("eval") => return eval::main(&args[1..]),
        _ => {}
    }
    let [socket, pid, bunker, rounds, seconds, clients, live] = args.as_slice() else {
        return Err(
            "usage: bench SOCKET DAEMON_PID BUNKER_BIN ROUNDS SECONDS CLIENTS[,CLIENTS...] LIVE"
                .into(),
        );
    };
    let pid: u32 = pid
        .parse()
        .map_err(|e| format!("DAEMON_PID {pid:?}: {e}"))?;
    let rounds: usize = rounds
        .parse()
        .map_err(|e| format!("ROUNDS {rounds:?}: {e}"))?;
    let seconds: f64 = seconds
        .parse()
        .map_err(|e| format!("SECONDS {seconds:?}: {e}"))?;
    let live: usize = live.parse().map_err(|e| format!("LIVE {live:?}: {e}"))?;
    let latency = latency(socket, pid, bunker, rounds)?;
    let mut rates = Vec::new();
    for n in clients.split(',') {
        let n: usize = n.parse().map_err(|e| format!("CLIENTS {n:?}: {e}"))?;
        rates.push(throughput(socket, n, seconds)?);
    }
    let rss = rss(socket, pid, live)?;
    println!(
        "{}",
        json!({"latency": latency, "throughput": rates, "rss": rss})
    );
    Ok(())
}

/// Waits (outside the measured time) until `pool` has `size` ready sandboxes.
fn pool_full(client: &mut Client, pool: &str, size: u64) -> Outcome<()> {
    let started = Instant::now();
    while client.stats()?.pools.get(pool).map(|p| p.ready) != Some(size) {
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!("the pool {pool} never refilled").into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// `bench pool`: warm `/bin/true` beside its anchors, and the refill rate.
mod pool {
    use super::*;

    const POOL: &str = "default";
    const SIZE: u64 = 2;

    fn warm_run(client: &mut Client, spec: &RunSpec, want_warm: bool) -> Outcome<f64> {
        let started = Instant::now();
        let result = client.run(spec)?;
        let took = ms(started.elapsed());
        if result.exit_code != Some(0) || result.warm != want_warm {
            return Err(
                format!("/bin/true (warm {want_warm}) through the daemon: {result:?}").into(),
            );
        }
        Ok(took)
    }

    pub fn main(args: &[String]) -> Outcome<()> {
        let [socket, bunker, rounds] = args else {
            return Err("usage: bench pool SOCKET BUNKER_BIN ROUNDS".into());
        };
        let rounds: usize = rounds
            .parse()
            .map_err(|e| format!("ROUNDS {rounds:?}: {e}"))?;
        let mut client = Client::connect(socket)?;
        let warm = spec(&["/bin/true"]);
        // No pool fits a higher memory limit than its own (`default`: 1GiB): a cold run
        // through the same daemon.
        let mut cold = warm.clone();
        cold.policy = serde_json::from_value(
            json!({"inline": {"extends": ["default"], "limits": {"memory": "2GiB"}}}),
        )?;
        let unshare = which("unshare")?;
        let unshare = [unshare.as_str(), "-Urpnmif", "--mount-proc", "/bin/true"];
        let (mut bare, mut ns, mut warm_ms, mut cold_ms) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds + 10 {
            let b = time_process(&["/bin/true"])?;
            let u = time_process(&unshare)?;
            pool_full(&mut client, POOL, SIZE)?;
            let w = warm_run(&mut client, &warm, true)?;
            pool_full(&mut client, POOL, SIZE)?;
            let c = warm_run(&mut client, &cold, false)?;
            // Warm-up rounds are dropped.
            if round >= 10 {
                bare.push(b);
                ns.push(u);
                warm_ms.push(w);
                cold_ms.push(c);
            }
        }
        // The refill rate: a burst takes the whole pool (2 warm runs back to back); builds
        // are serial and the first starts when the burst's first run ends, so the pool is
        // full 2 builds after that (the second run's own work competes with the first build,
        // as it would in use). Beside it: cold `bunker run -- /bin/true` in a loop, each a
        // full build, run and teardown.
        let bursts = (rounds / 10).max(10);
        let mut refill = Vec::new();
        for burst in 0..bursts + 2 {
            pool_full(&mut client, POOL, SIZE)?;
            warm_run(&mut client, &warm, true)?;
            let first_end = Instant::now();
            warm_run(&mut client, &warm, true)?;
            pool_full(&mut client, POOL, SIZE)?;
            if burst >= 2 {
                refill.push(SIZE as f64 / first_end.elapsed().as_secs_f64());
            }
        }
        let mut run_loop = Vec::new();
        for i in 0..bursts + 2 {
            let took = time_process(&[bunker, "run", "--", "/bin/true"])?;
            if i >= 2 {
                run_loop.push(1000.0 / took);
            }
        }
        println!(
            "{}",
            json!({"bare": percentiles(bare), "unshare": percentiles(ns),
                   "warm": percentiles(warm_ms), "cold": percentiles(cold_ms),
                   "refill_per_s": rates(refill), "run_loop_per_s": rates(run_loop)})
        );
        Ok(())
    }
}

/// p50 and p1 (nearest rank) of rates: the slow end of a rate is its low one.
fn rates(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    json!({"p50": rank(0.50), "p1": rank(0.01), "n": samples.len()})
}

/// The absolute path of `tool` on PATH.
fn which(tool: &str) -> Outcome<String> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .ok_or_else(|| format!("{tool} is not on PATH").into())
}

/// `bench eval`: warm evals of `1+1` beside the bare runtimes, and idle memory per pooled
/// sandbox.
mod eval {
    use super::*;
    use bunker_api::eval::{Engine, EvalSpec};

    /// Times one warm eval of `1+1`; fails unless it was warm and gave 2.
    fn warm_eval(client: &mut Client, spec: &EvalSpec) -> Outcome<(f64, f64)> {
        let started = Instant::now();
        let result = client.eval(spec)?;
        let took = ms(started.elapsed());
        if result.value != json!(2) || result.error.is_some() || !result.warm {
            return Err(format!("1+1 through a pre-started worker: {result:?}").into());
        }
        Ok((took, result.wall_ms))
    }

    pub fn main(args: &[String]) -> Outcome<()> {
        let [socket, rounds, engines, plain] = args else {
            return Err("usage: bench eval SOCKET ROUNDS ENGINE[,ENGINE...] PLAIN_POOL".into());
        };
        let rounds: usize = rounds
            .parse()
            .map_err(|e| format!("ROUNDS {rounds:?}: {e}"))?;
        let engines = engines
            .split(',')
            .map(|e| Engine::parse(e).ok_or_else(|| format!("no engine {e:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut client = Client::connect(socket)?;
        let bun = which("bun")?;
        let python = which("python3")?;
        let bare = |engine: Engine| -> Vec<&str> {
            match engine {
                Engine::Bun => vec![bun.as_str(), "-e", "1"],
                Engine::Python => vec![python.as_str(), "-c", "1"],
            }
        };
        let mut out = serde_json::Map::new();
        let mut samples: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
            engines.iter().map(|_| Default::default()).collect();
        for round in 0..rounds + 10 {
            for (i, &engine) in engines.iter().enumerate() {
                let pool = engine.profile();
                let spec = EvalSpec::new(engine, "1+1");
                let b = time_process(&bare(engine))?;
                pool_full(&mut client, pool, 1)?;
                // Time for the pre-started runtime to reach its wait for `R`.
                std::thread::sleep(Duration::from_millis(150));
                let (w, wall) = warm_eval(&mut client, &spec)?;
                // Warm-up rounds are dropped.
                if round >= 10 {
                    samples[i].0.push(w);
                    samples[i].1.push(wall);
                    samples[i].2.push(b);
                }
            }
        }
        for (i, engine) in engines.iter().enumerate() {
            let (warm, wall, bare) = std::mem::take(&mut samples[i]);
            out.insert(
                engine.as_str().into(),
                json!({"warm": percentiles(warm), "wall_ms": percentiles(wall),
                       "bare": percentiles(bare)}),
            );
        }
        // Idle memory per ready sandbox, each pool full and settled.
        let mut memory = serde_json::Map::new();
        let pools: Vec<String> = engines
            .iter()
            .map(|e| e.profile().to_string())
            .chain([plain.clone()])
            .collect();
        for pool in &pools {
            pool_full(&mut client, pool, 1)?;
        }
        std::thread::sleep(Duration::from_millis(500));
        for (name, pool) in client.stats()?.pools {
            if let (Some(bytes), true) = (pool.idle_memory_bytes, pool.ready > 0) {
                memory.insert(name, json!(bytes / pool.ready));
            }
        }
        out.insert(
            "idle_memory_bytes_per_sandbox".into(),
            Value::Object(memory),
        );
        println!("{}", Value::Object(out));
        Ok(())
    }
}
