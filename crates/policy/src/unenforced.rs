//! Settings the language has but `bunker run` cannot honour: refused when a policy is loaded, so
//! `bunker check` catches them, rather than when a run starts.
//!
//! This is the one place that decides it. The loader applies it to every document (so the error
//! names the file and key) and the sandbox to the effective policy it is handed (a library caller
//! may build a `Policy` by hand). When a layer for one of these settings is built, its branch here
//! is deleted and nothing else changes: the types already carry the setting.

use crate::types::{AuditMode, JsOptions, KernelOptions, Namespace};

/// Why a setting cannot be honoured, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key, e.g. `kernel.audit`.
    pub json_path: &'static str,
    /// What was found and what is expected instead.
    pub message: String,
}

/// The first setting of `kernel` or `js` that no layer of this version enforces, if any.
pub fn refusal(kernel: &KernelOptions, js: &JsOptions) -> Option<Refusal> {
    // The new root is built in the mount namespace; /proc and the clean-up (killing init kills
    // the whole sandbox) rely on the pid namespace.
    for (ns, why) in [
        (Namespace::Mount, "the sandbox's new root is built in it"),
        (
            Namespace::Pid,
            "the sandbox's /proc and its clean-up rely on its own pid namespace",
        ),
    ] {
        if !kernel.namespaces.contains(&ns) {
            let name = format!("{ns:?}").to_lowercase();
            return Some(Refusal {
                json_path: "kernel.namespaces",
                message: format!("must include \"{name}\": {why}"),
            });
        }
    }
    // Syscall auditing is not built yet: refusing is the only answer that does not pretend.
    let audit = match kernel.audit {
        AuditMode::Off => None,
        AuditMode::SeccompUnotify => Some("seccomp-unotify"),
        AuditMode::Ebpf => Some("ebpf"),
    };
    if let Some(mode) = audit {
        return Some(Refusal {
            json_path: "kernel.audit",
            message: format!(
                "audit mode \"{mode}\" is not built in this version of bunker (no layer would \
                 enforce it); expected \"off\" or no kernel.audit key"
            ),
        });
    }
    // The `js` options belong to the JavaScript runtime layer, which is not built yet.
    let defaults = JsOptions::default();
    let js_key = if js.eval != defaults.eval {
        Some("js.eval")
    } else if js.max_stack_depth != defaults.max_stack_depth {
        Some("js.max_stack_depth")
    } else if js.max_string_length != defaults.max_string_length {
        Some("js.max_string_length")
    } else {
        None
    };
    js_key.map(|json_path| Refusal {
        json_path,
        message: "the js options are enforced by the JavaScript runtime layer, which is not \
                  built in this version of bunker (nothing would enforce them); remove the key"
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_enforceable() {
        assert_eq!(
            refusal(&KernelOptions::default(), &JsOptions::default()),
            None
        );
    }

    #[test]
    fn each_unbuilt_setting_is_named() {
        let js = JsOptions::default();
        for (audit, mode) in [
            (AuditMode::Ebpf, "ebpf"),
            (AuditMode::SeccompUnotify, "seccomp-unotify"),
        ] {
            let kernel = KernelOptions {
                audit,
                ..KernelOptions::default()
            };
            let r = refusal(&kernel, &js).unwrap();
            assert_eq!(r.json_path, "kernel.audit");
            assert!(r.message.contains(mode), "{}", r.message);
        }
        let kernel = KernelOptions {
            namespaces: vec![Namespace::User, Namespace::Mount],
            ..KernelOptions::default()
        };
        let r = refusal(&kernel, &js).unwrap();
        assert_eq!(r.json_path, "kernel.namespaces");
        assert!(r.message.contains("\"pid\""), "{}", r.message);
        let js = JsOptions {
            max_string_length: Some(10),
            ..JsOptions::default()
        };
        let r = refusal(&KernelOptions::default(), &js).unwrap();
        assert_eq!(r.json_path, "js.max_string_length");
    }
}
