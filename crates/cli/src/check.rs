//! `bunker check` and `bunker schema`.

use bunker_policy::{HostEnv, LoadSpec, Policy, PolicyDoc, PolicySource};

use crate::cli::{CheckOpts, SchemaOpts};
use crate::exit;
use crate::source;

pub fn main(opts: CheckOpts) -> i32 {
    let loaded = match (&opts.file, &opts.profile) {
        (Some(file), _) => source::policy_source(Some(file), None).and_then(|source| {
            let spec = LoadSpec {
                source,
                ..LoadSpec::default()
            };
            bunker_policy::load_with_origins(&spec, &HostEnv::from_process())
                .map_err(|e| e.to_string())
        }),
        (None, Some(name)) => bunker_policy::builtin(name)
            .map(|p| (p, Vec::new()))
            .map_err(|e| e.to_string()),
        (None, None) => unreachable_args(),
    };
    let policy = match loaded {
        Ok((policy, origins)) => {
            // What `run` would refuse is an error here too; what it would skip, a warning.
            if source::say_grant_findings(&policy, &origins, opts.strict, true, &|line| {
                eprintln!("{line}")
            })
            .is_some()
            {
                return exit::POLICY_ERROR;
            }
            if let Some(refusal) =
                bunker_sandbox::spawn::caller_refusal(&policy, bunker_sys::process::euid() == 0)
            {
                eprintln!("bunker: policy error: {refusal}");
                return exit::POLICY_ERROR;
            }
            policy
        }
        Err(e) => {
            eprintln!("bunker: policy error: {e}");
            return exit::POLICY_ERROR;
        }
    };
    let printed = if opts.document {
        crate::connect::policy_document(&policy)
            .map_err(|e| e.message)
            .and_then(|doc| serde_json::to_string(&doc).map_err(|e| e.to_string()))
    } else {
        serde_json::to_string_pretty(&policy).map_err(|e| e.to_string())
    };
    match printed {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("bunker: cannot print the policy: {e}");
            return exit::POLICY_ERROR;
        }
    }
    let Some(parent_file) = &opts.subset_of else {
        return 0;
    };
    let parent = match load_plain(parent_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bunker: policy error: {e}");
            return exit::POLICY_ERROR;
        }
    };
    match policy.is_subset_of(&parent) {
        Ok(()) => {
            eprintln!(
                "bunker: {} grants nothing beyond {}",
                describe(&opts),
                parent_file.display()
            );
            0
        }
        Err(widenings) => {
            eprintln!(
                "bunker: {} is not a subset of {}:",
                describe(&opts),
                parent_file.display()
            );
            for w in widenings {
                eprintln!("  - {w}");
            }
            1
        }
    }
}

fn load_plain(file: &std::path::Path) -> Result<Policy, bunker_policy::PolicyError> {
    bunker_policy::load(&LoadSpec {
        source: PolicySource::File(file.to_path_buf()),
        overlay: PolicyDoc::default(),
        overlay_base: std::path::PathBuf::from("/"),
    })
}

fn describe(opts: &CheckOpts) -> String {
    match (&opts.file, &opts.profile) {
        (Some(f), _) => f.display().to_string(),
        (None, Some(p)) => format!("profile {p}"),
        (None, None) => String::new(),
    }
}

/// clap guarantees FILE or --profile; keep a defined answer rather than panicking.
fn unreachable_args() -> Result<(Policy, Vec<bunker_policy::GrantOrigin>), String> {
    Err("give a policy FILE or --profile NAME".to_string())
}

pub fn schema(opts: SchemaOpts) -> i32 {
    let schema = if opts.report {
        serde_json::to_value(schemars::schema_for!(bunker_sandbox::RunResult)).unwrap_or_default()
    } else {
        bunker_policy::schema()
    };
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("bunker: cannot print the schema: {e}");
            1
        }
    }
}
