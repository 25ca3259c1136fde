//! Path, network and subset decisions on hand-written policies; IDNA; built-in profiles.
// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bunker_policy::{
    builtin_with, load_str_with, normalize_host, Access, HostEnv, NetRule, Policy,
};

fn env() -> HostEnv {
    HostEnv {
        home: Some("/home/u".into()),
        path: Some("/nonexistent-bin".into()),
    }
}

fn policy(text: &str) -> Policy {
    load_str_with(text, Path::new("/srv/app"), "test.json", &env()).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn path_decisions_name_the_rule() {
    let p = policy(
        r#"{
        "allow": {"read": ["/usr", "/data", "/data/public/deep"], "write": ["/tmp/out"], "exec": ["/usr/bin"]},
        "deny": {"read": ["**/*.key", "/data/private"], "write": ["/tmp/out/locked"], "exec": ["/usr/bin/sudo"]}
    }"#,
    );
    let d = |path: &str, access| p.path_decision(Path::new(path), access);
    assert_eq!(d("/data/x", Access::Read).rule, "allow.read[1] (/data)");
    assert!(d("/data/x", Access::Read).allowed);
    assert_eq!(
        d("/data/public/deep/f", Access::Read).rule,
        "allow.read[2] (/data/public/deep)"
    );
    assert_eq!(
        d("/data/tls/a.key", Access::Read).rule,
        "deny.read[0] (**/*.key)"
    );
    assert!(!d("/data/tls/a.key", Access::Read).allowed);
    assert_eq!(
        d("/data/private/x", Access::Read).rule,
        "deny.read[1] (/data/private)"
    );
    // /data does not cover /database: prefixes match on component boundaries.
    assert_eq!(
        d("/database", Access::Read).rule,
        "no allow.read rule covers /database"
    );
    assert!(!d("/database", Access::Read).allowed);
    // Lexical normalization: no escaping through `..`.
    assert!(!d("/data/../etc/shadow", Access::Read).allowed);
    assert_eq!(
        d("/data/./x/../y/", Access::Read).rule,
        "allow.read[1] (/data)"
    );
    // Write implies read; read does not imply write.
    assert_eq!(
        d("/tmp/out/f", Access::Read).rule,
        "allow.write[0] (/tmp/out)"
    );
    assert!(!d("/data/x", Access::Write).allowed);
    assert_eq!(
        d("/tmp/out/locked/f", Access::Write).rule,
        "deny.write[0] (/tmp/out/locked)"
    );
    assert!(
        d("/tmp/out/locked/f", Access::Read).allowed,
        "deny.write leaves reading alone"
    );
    // Exec.
    assert!(d("/usr/bin/ls", Access::Exec).allowed);
    assert_eq!(
        d("/usr/bin/sudo", Access::Exec).rule,
        "deny.exec[0] (/usr/bin/sudo)"
    );
    assert!(d("/usr/bin/sudo", Access::Read).allowed);
    assert!(!d("/usr/lib/x.so", Access::Exec).allowed);
    // deny.read hides a path for every access.
    assert!(!d("/usr/share/ssl/my.key", Access::Exec).allowed);
}

#[test]
fn bare_names_in_deny_lists_mean_anywhere() {
    let p = policy(
        r#"{"allow": {"read": ["/"]}, "deny": {"read": [".env", "*.pem", "secrets/*.txt"]}}"#,
    );
    let read = |path: &str| p.path_decision(Path::new(path), Access::Read).allowed;
    assert!(!read("/srv/app/.env"));
    assert!(!read("/.env"));
    assert!(read("/srv/app/.envrc"));
    assert!(!read("/etc/ssl/private/server.pem"));
    assert!(!read("/srv/app/secrets/a.txt"));
    assert!(
        read("/srv/other/secrets/a.txt"),
        "a relative glob is anchored at the policy's dir"
    );
    assert!(read("/srv/app/secrets/sub/a.txt"), "* does not cross /");
}

#[test]
fn net_decisions_name_the_rule() {
    let p = policy(
        r#"{
        "allow": {"net": ["example.com:443", "*.example.com", "10.0.0.0/8", "[::1]:8080", "127.0.0.1"]},
        "deny": {"net": ["ads.example.com", "10.9.0.0/16"]}
    }"#,
    );
    let n = |h: &str, port| p.net_decision(h, port);
    assert_eq!(n("example.com", 443).rule, "allow.net[0] (example.com:443)");
    assert!(n("example.com", 443).allowed);
    assert_eq!(
        n("example.com", 80).rule,
        "no allow.net rule matches example.com:80"
    );
    assert_eq!(
        n("API.Example.COM.", 1).rule,
        "allow.net[1] (*.example.com)"
    );
    assert_eq!(
        n("ads.example.com", 443).rule,
        "deny.net[0] (ads.example.com)"
    );
    assert!(
        n("x.ads.example.com", 443).allowed,
        "a deny of one name leaves its subdomains"
    );
    assert!(!n("evilexample.com", 443).allowed);
    assert!(!n("example.com.evil.net", 443).allowed);
    // IP literals go through the address rules.
    assert_eq!(n("10.1.2.3", 22).rule, "allow.net[2] (10.0.0.0/8)");
    assert_eq!(n("10.9.1.1", 22).rule, "deny.net[1] (10.9.0.0/16)");
    assert_eq!(n("[::1]", 8080).rule, "allow.net[3] ([::1]:8080)");
    assert!(!n("[::1]", 8081).allowed);
    assert_eq!(
        p.ip_decision(ip("::ffff:10.1.2.3"), 5).rule,
        "allow.net[2] (10.0.0.0/8)"
    );
    assert_eq!(
        p.ip_decision(ip("11.0.0.1"), 5).rule,
        "no allow.net rule matches 11.0.0.1:5"
    );
    assert_eq!(
        p.ip_decision(ip("fe80::1"), 5).rule,
        "no allow.net rule matches [fe80::1]:5"
    );
    let loopback: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
    let private10: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(p.ip_explicitly_allowed(ip("127.0.0.1"), 3000, loopback));
    assert!(p.ip_explicitly_allowed(ip("::ffff:127.0.0.1"), 3000, loopback));
    assert!(!p.ip_explicitly_allowed(ip("127.0.0.2"), 3000, loopback));
    assert!(p.ip_explicitly_allowed(ip("10.1.0.1"), 3000, private10));
    assert!(
        !p.ip_explicitly_allowed(ip("10.9.0.1"), 3000, private10),
        "a deny beats the CIDR allow"
    );
    // Malformed names are denied with the reason.
    assert!(!n("exa mple.com", 443).allowed);
    assert!(!n("", 443).allowed);
}

#[test]
fn star_allows_names_not_addresses_and_denies_everything() {
    let p = policy(r#"{"allow": {"net": ["*"]}}"#);
    assert!(p.net_decision("anything.example", 1).allowed);
    assert!(!p.ip_decision(ip("1.1.1.1"), 1).allowed);
    let q = policy(r#"{"allow": {"net": ["1.1.1.1"]}, "deny": {"net": ["*"]}}"#);
    assert_eq!(q.ip_decision(ip("1.1.1.1"), 1).rule, "deny.net[0] (*)");
}

#[test]
fn idna_names_compare_as_punycode() {
    assert_eq!(
        normalize_host("bücher.example").unwrap(),
        "xn--bcher-kva.example"
    );
    assert_eq!(
        normalize_host("BÜCHER.example.").unwrap(),
        "xn--bcher-kva.example"
    );
    let p = policy(r#"{"allow": {"net": ["*.bücher.example"]}}"#);
    assert!(p.net_decision("shop.xn--bcher-kva.example", 443).allowed);
    assert!(p.net_decision("shop.bücher.example", 443).allowed);
    assert!(!p.net_decision("xn--bcher-kva.example", 443).allowed);
    let q = policy(r#"{"allow": {"net": ["xn--bcher-kva.example"]}}"#);
    assert!(q.net_decision("Bücher.Example", 443).allowed);
    assert_eq!(
        NetRule::parse("*.BÜCHER.example:443").unwrap().to_string(),
        "*.xn--bcher-kva.example:443"
    );
}

#[test]
fn subset_reports_each_widening() {
    let parent = policy(
        r#"{
        "allow": {"read": ["/data"], "write": ["/tmp/out"], "net": ["*.example.com:443"], "env": ["TERM"]},
        "deny": {"read": ["/data/secret", "**/*.key"], "net": ["ads.example.com"]},
        "limits": {"memory": "64MB", "timeout": "5s"},
        "http": {"max_requests": 10},
        "kernel": {"landlock": "required"}
    }"#,
    );
    // `js` is refused at load time until its layer exists; the subset check still covers it.
    let mut parent = parent;
    parent.js.eval = false;
    let child = policy(
        r#"{
        "allow": {"read": ["/data/public"], "write": ["/tmp/out/x"], "net": ["api.example.com:443"], "env": ["TERM"]},
        "deny": {"read": ["**/*.key"], "net": ["ads.example.com"]},
        "limits": {"memory": "32MB", "timeout": "1s"},
        "http": {"max_requests": 3}
    }"#,
    );
    let mut child = child;
    child.js.eval = false;
    assert_eq!(child.is_subset_of(&parent), Ok(()));
    assert_eq!(parent.is_subset_of(&parent), Ok(()));

    let wide = policy(
        r#"{
        "allow": {"read": ["/data", "/etc"], "net": ["*.example.com", "10.0.0.1"], "env": ["TERM", "AWS_SECRET"]},
        "limits": {"memory": "128MB"},
        "kernel": {"landlock": "best-effort", "seccomp": "off", "namespaces": ["user", "pid", "mount"]}
    }"#,
    );
    let widenings = wide.is_subset_of(&parent).unwrap_err();
    let expected = [
        "allow.read[1] (/etc) is not within any allow.read or allow.write path of the other policy",
        "the other policy's deny.read[0] (/data/secret) is missing",
        "the other policy's deny.read[1] (**/*.key) is missing",
        "allow.net[0] (*.example.com) is not covered by any allow.net rule of the other policy",
        "allow.net[1] (10.0.0.1) is not covered by any allow.net rule of the other policy",
        "the other policy's deny.net[0] (ads.example.com) is missing",
        "allow.env[1] (AWS_SECRET) is not in the other policy's allow.env",
        "limits.memory: 128000000 is looser than the other policy's 64000000",
        "limits.timeout: no limit is looser than the other policy's 5s",
        "http.max_requests: no limit is looser than the other policy's 10",
        "js.eval: true is looser than the other policy's false",
        "kernel.namespaces: \"net\" is created by the other policy but not here",
        "kernel.namespaces: \"ipc\" is created by the other policy but not here",
        "kernel.namespaces: \"uts\" is created by the other policy but not here",
        "kernel.namespaces: \"cgroup\" is created by the other policy but not here",
        "kernel.seccomp: off is weaker than the other policy's default",
        "kernel.landlock: \"best-effort\" is weaker than the other policy's \"required\"",
    ];
    assert_eq!(widenings, expected);
}

#[test]
fn subset_across_address_forms() {
    let parent = policy(r#"{"allow": {"net": ["10.0.0.0/8", "::/0"]}}"#);
    let child = policy(
        r#"{"allow": {"net": ["::ffff:10.1.0.0/112", "[2001:db8::1]:443", "192.168.1.1"]}}"#,
    );
    assert_eq!(
        child.is_subset_of(&parent),
        Ok(()),
        "::/0 contains every v4-mapped address"
    );
    let narrow_parent = policy(r#"{"allow": {"net": ["10.0.0.0/8"]}}"#);
    assert!(child.is_subset_of(&narrow_parent).is_err());
}

#[test]
fn default_profile_is_minimal() {
    let p = builtin_with("default", &env()).unwrap();
    for dir in ["/usr", "/etc/ld.so.cache"] {
        assert!(p.allow.read.contains(&PathBuf::from(dir)), "{dir}");
    }
    assert!(p.allow.exec.contains(&PathBuf::from("/usr")));
    assert!(p.allow.write.is_empty());
    assert!(p.allow.net.is_empty());
    assert!(p.allow.env.is_empty());
    for secret in [
        "/etc/shadow",
        "/etc/passwd",
        "/root",
        "/home",
        "/proc/1/environ",
        "/var",
    ] {
        assert!(
            !p.path_decision(Path::new(secret), Access::Read).allowed,
            "{secret}"
        );
    }
    assert!(
        !p.path_decision(Path::new("/etc/ld.so.cache"), Access::Exec)
            .allowed
    );
    assert_eq!(p.limits.pids, Some(512));
    assert_eq!(p.limits.memory, Some(1 << 30));
    assert_eq!(p.limits.output, 1 << 20);
    assert_eq!(p.limits.tmp_size, 64 << 20);
    assert_eq!(p.set_env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(p.set_env["HOME"], "/tmp");
    assert_eq!(p.set_env["LANG"], "C.UTF-8");
}

#[test]
fn runtime_profiles_resolve_binaries_on_path() {
    // A fake PATH with a symlinked "bun" that is a real ELF file (a copy of /bin/true's target).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let real_dir = d.join("opt/bun/bin");
    std::fs::create_dir_all(&real_dir).unwrap();
    let true_bin = std::fs::canonicalize("/bin/true").unwrap();
    std::fs::copy(&true_bin, real_dir.join("bun")).unwrap();
    let link_dir = d.join("links");
    std::fs::create_dir_all(&link_dir).unwrap();
    std::os::unix::fs::symlink(real_dir.join("bun"), link_dir.join("bun")).unwrap();
    // A wrapper script earlier on PATH is skipped.
    let shim_dir = d.join("shims");
    std::fs::create_dir_all(&shim_dir).unwrap();
    std::fs::write(shim_dir.join("bun"), "#!/bin/sh\nexec real-bun \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shim_dir.join("bun"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let env = HostEnv {
        home: None,
        path: Some(format!("{}:{}", shim_dir.display(), link_dir.display()).into()),
    };
    let p = builtin_with("runtime:bun", &env).unwrap();
    for granted in [link_dir.join("bun"), real_dir.join("bun"), real_dir.clone()] {
        assert!(p.allow.read.contains(&granted), "{}", granted.display());
        assert!(p.allow.exec.contains(&granted), "{}", granted.display());
        assert!(p.path_decision(&granted, Access::Exec).allowed);
    }
    assert!(!p.allow.read.contains(&shim_dir.join("bun")));
    assert_eq!(p.set_env["BUN_INSTALL_CACHE_DIR"], "/tmp/.bun-cache");
    assert_eq!(
        p.set_env["PATH"],
        format!("{}:/usr/local/bin:/usr/bin:/bin", link_dir.display())
    );
    assert_eq!(p.sources, ["default", "runtime:bun"]);
    assert_eq!(p.limits.pids, Some(512), "runtime profiles extend default");

    // python3 outside /usr: <prefix>/bin and <prefix>/lib.
    let py_bin = d.join("py/bin");
    std::fs::create_dir_all(&py_bin).unwrap();
    std::fs::copy(&true_bin, py_bin.join("python3")).unwrap();
    let env = HostEnv {
        home: None,
        path: Some(py_bin.clone().into_os_string()),
    };
    let p = builtin_with("runtime:python", &env).unwrap();
    assert!(p.allow.read.contains(&d.join("py/bin")));
    assert!(p.allow.read.contains(&d.join("py/lib")));
    assert!(
        p.path_decision(&d.join("py/lib/python3.12/os.py"), Access::Read)
            .allowed
    );
    assert_eq!(p.set_env["PYTHONDONTWRITEBYTECODE"], "1");
    assert_eq!(p.set_env["PYTHONUNBUFFERED"], "1");
}

#[test]
fn runtime_profiles_on_this_host() {
    // bun and python3 are installed on the project's machines.
    let env = HostEnv {
        home: None,
        path: Some("/usr/local/bin:/usr/bin:/bin".into()),
    };
    let bun = builtin_with("runtime:bun", &env).unwrap();
    let real = std::fs::canonicalize("/usr/local/bin/bun").unwrap();
    assert!(bun.path_decision(&real, Access::Exec).allowed);
    assert!(
        bun.path_decision(Path::new("/usr/local/bin/bun"), Access::Exec)
            .allowed
    );
    let py = builtin_with("runtime:python", &env).unwrap();
    assert!(
        py.path_decision(Path::new("/usr/bin/python3"), Access::Exec)
            .allowed
    );
    assert!(!py.allow.read.iter().any(|p| p.starts_with("/root")));
}

#[test]
fn the_effective_policy_serializes_cleanly() {
    let p = policy(
        r#"{
        "allow": {"net": ["Bücher.example:443", "[::ffff:10.0.0.1]:80"], "read": ["data/../in"]},
        "deny": {"read": [".env"]},
        "limits": {"timeout": 1.5, "cpu_time": "250ms", "memory": "64MiB"},
        "http": {"request_timeout": "2m"}
    }"#,
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json["allow"]["net"],
        serde_json::json!(["xn--bcher-kva.example:443", "10.0.0.1:80"])
    );
    assert_eq!(json["allow"]["read"], serde_json::json!(["/srv/app/in"]));
    assert_eq!(json["deny"]["read"], serde_json::json!(["**/.env"]));
    assert_eq!(json["limits"]["timeout"], "1.5s");
    assert_eq!(json["limits"]["cpu_time"], "250ms");
    assert_eq!(json["limits"]["memory"], 64 << 20);
    assert_eq!(json["limits"]["pids"], serde_json::Value::Null);
    assert_eq!(json["limits"]["output"], 1 << 20);
    assert_eq!(json["http"]["request_timeout"], "120s");
    assert_eq!(json["http"]["block_private_ips"], true);
    assert_eq!(json["kernel"]["landlock"], "required");
    assert_eq!(json["sources"], serde_json::json!(["test.json"]));
}

#[test]
fn broad_cidrs_do_not_open_special_purpose_ranges() {
    let p = policy(r#"{"allow": {"net": ["0.0.0.0/0", "::/0", "169.0.0.0/8", "127.0.0.1:80"]}}"#);
    let metadata_range: ipnet::IpNet = "169.254.169.254/32".parse().unwrap();
    let link_local: ipnet::IpNet = "169.254.0.0/16".parse().unwrap();
    let loopback: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
    let ula: ipnet::IpNet = "fc00::/7".parse().unwrap();
    // The address matches the broad rules ...
    assert!(p.ip_decision(ip("169.254.169.254"), 80).allowed);
    // ... but none of them was written for the special range.
    assert!(!p.ip_explicitly_allowed(ip("169.254.169.254"), 80, metadata_range));
    assert!(!p.ip_explicitly_allowed(ip("169.254.1.1"), 80, link_local));
    assert!(!p.ip_explicitly_allowed(ip("127.0.0.2"), 80, loopback));
    assert!(!p.ip_explicitly_allowed(ip("fd00::1"), 80, ula));
    // The exact address written in a rule does open it.
    assert!(p.ip_explicitly_allowed(ip("127.0.0.1"), 80, loopback));
    assert!(p.ip_explicitly_allowed(ip("::ffff:127.0.0.1"), 80, loopback));
}
