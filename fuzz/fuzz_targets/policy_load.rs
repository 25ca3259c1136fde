//! Feeds arbitrary bytes to the policy loader. Besides "never panics", it checks invariants of
//! every policy that loads: it serializes, it is a subset of itself, and decisions are total.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use bunker_policy::{load_str_with, Access, HostEnv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A fixed environment keeps runs reproducible: `~` resolves, runtime profiles find nothing.
    let env = HostEnv {
        home: Some("/home/fuzz".into()),
        path: None,
    };
    let Ok(policy) = load_str_with(&text, Path::new("/fuzz/base"), "fuzz.json", &env) else {
        return;
    };
    serde_json::to_string(&policy).expect("an effective policy always serializes");
    assert_eq!(policy.is_subset_of(&policy), Ok(()), "is_subset_of must be reflexive");
    for path in ["/", "/fuzz/base/x", "/home/fuzz/.ssh/id_rsa", "/usr/bin/env", "/a/b/../c"] {
        for access in [Access::Read, Access::Write, Access::Exec] {
            let _ = policy.path_decision(Path::new(path), access);
        }
    }
    for host in ["example.com", "a.b.example.com", "xn--bcher-kva.example", "[::1]", "10.0.0.1"] {
        let _ = policy.net_decision(host, 443);
    }
    for ip in [
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
    ] {
        let v4 = policy.ip_decision(ip, 80);
        // Any range that holds the address: the call must not panic on what the policy holds.
        let whole = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        let _ = policy.ip_explicitly_allowed(ip, 80, whole.parse().unwrap());
        if let IpAddr::V6(v6) = ip {
            if let Some(mapped) = v6.to_ipv4_mapped() {
                assert_eq!(v4.allowed, policy.ip_decision(IpAddr::V4(mapped), 80).allowed);
            }
        }
    }
});
