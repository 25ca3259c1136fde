//! Where `check` and `run` get the policy from, and what they say about its grants.

use std::io::Read;
use std::path::{Path, PathBuf};

use bunker_policy::{GrantOrigin, Policy, PolicySource};
use bunker_sandbox::preflight::{self, Severity};

/// What `--policy FILE` (`-`: stdin) or `--policy-json TEXT` names. A document given as text has
/// no directory of its own: its relative paths resolve against the current directory.
pub fn policy_source(file: Option<&Path>, json: Option<&str>) -> Result<PolicySource, String> {
    let text_source = |text: String, name: &str| -> Result<PolicySource, String> {
        let base = std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?;
        Ok(PolicySource::Text {
            text,
            name: name.to_string(),
            base,
        })
    };
    match (file, json) {
        (_, Some(json)) => text_source(json.to_string(), "--policy-json"),
        (Some(file), None) if file == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("stdin: cannot read the policy: {e}"))?;
            text_source(text, "stdin")
        }
        (Some(file), None) => Ok(PolicySource::File(PathBuf::from(file))),
        (None, None) => Ok(PolicySource::Default),
    }
}

/// Says through `say` what is wrong with the policy's grants on this host: warnings as
/// `bunker: warning: ...` (a missing path only when `missing_too`: `run` reports those in
/// `enforced.notes`), errors as `bunker: policy error: ...`. Returns the first error, for the
/// report, when `run` would refuse the policy (with `strict`, a missing path is one too).
pub fn say_grant_findings(
    policy: &Policy,
    origins: &[GrantOrigin],
    strict: bool,
    missing_too: bool,
    say: &dyn Fn(&str),
) -> Option<String> {
    let mut first_error = None;
    for finding in preflight::check_grants(policy, origins) {
        let error = finding.severity == Severity::Error || (strict && finding.missing);
        if error {
            say(&format!("bunker: policy error: {finding}"));
            first_error.get_or_insert(finding.to_string());
        } else if missing_too || !finding.missing {
            say(&format!("bunker: warning: {finding}"));
        }
    }
    first_error
}
