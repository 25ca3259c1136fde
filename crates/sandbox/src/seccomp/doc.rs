//! The profile in words: the table of docs/seccomp.md.

use super::profile::{Action, ArgCheck, PROFILE};

impl ArgCheck {
    /// The check in words, for the documentation.
    pub fn describe(&self) -> String {
        match self {
            ArgCheck::NoBits { arg, names, .. } => format!("arg{arg} has none of {names}"),
            ArgCheck::OneOf { arg, names, .. } => format!("arg{arg} is {names}"),
            ArgCheck::NoneOf { arg, names, .. } => format!("arg{arg} is not {names}"),
            ArgCheck::NoBitsWhen {
                when_arg,
                when_names,
                arg,
                names,
                ..
            } => format!("arg{arg} has none of {names} when arg{when_arg} has {when_names}"),
        }
    }
}

/// The profile as a Markdown table (the body of docs/seccomp.md).
pub fn markdown_table() -> String {
    let mut out = String::from("| nr | syscall | action | reason |\n|---:|---|---|---|\n");
    for e in PROFILE {
        let action = match e.action {
            Action::Allow => "allow".to_string(),
            Action::Deny => "EPERM".to_string(),
            Action::NoSys => "ENOSYS".to_string(),
            Action::AllowIf(check) => format!("allow if {}, else EPERM", check.describe()),
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            e.nr, e.name, action, e.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_table_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/seccomp.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let (begin, end) = (
            "<!-- BEGIN GENERATED TABLE -->\n",
            "<!-- END GENERATED TABLE -->",
        );
        let table = markdown_table();
        if std::env::var_os("BUNKER_BLESS").is_some() {
            let start = doc.find(begin).expect("begin marker") + begin.len();
            let stop = doc.find(end).expect("end marker");
            let new = format!("{}{}{}", &doc[..start], table, &doc[stop..]);
            std::fs::write(&path, new).unwrap();
            return;
        }
        let start = doc
            .find(begin)
            .expect("docs/seccomp.md lacks the begin marker")
            + begin.len();
        let stop = doc.find(end).expect("docs/seccomp.md lacks the end marker");
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/seccomp.md is stale: run BUNKER_BLESS=1 cargo test -p bunker-sandbox docs_table"
        );
    }
}
