//! What `--version` says: the release, the commit built, and the BPF hooks and solicit paths
//! compiled in, so a bug report names exactly the binary it is about.

use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::kernel::hooks::{self, SolicitPath};
use crate::kernel::loader;

/// The commit the binary was built from (`arp-trace/build.rs`), if it was built from one.
pub fn commit() -> Option<&'static str> {
    option_env!("ARP_TRACE_COMMIT").filter(|c| !c.is_empty())
}

/// `--version`'s text after the program name: one line per fact.
pub fn long() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut s = String::new();
        let _ = writeln!(s, "{}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(
            s,
            "commit: {}",
            commit().unwrap_or("unknown (not built from a git checkout)")
        );
        let paths: Vec<String> = SolicitPath::ALL
            .iter()
            .map(|p| format!("{} ({})", p.name(), p.hook().attach))
            .collect();
        let _ = writeln!(
            s,
            "solicit paths, as --hooks auto tries them: {}",
            paths.join(", ")
        );
        let common: Vec<&str> = hooks::common_hooks().map(|h| h.attach).collect();
        let _ = writeln!(s, "hooks every path attaches: {}", common.join(", "));
        let _ = write!(
            s,
            "eBPF programs: {}",
            if loader::has_programs() {
                "built in"
            } else {
                "left out (AYA_BUILD_SKIP): this binary cannot trace"
            }
        );
        s
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_long_version_names_the_release_commit_and_every_hook() {
        let v = super::long();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        for h in crate::kernel::hooks::HOOKS {
            assert!(v.contains(h.attach), "{v} lacks {}", h.attach);
        }
        for p in ["fentry", "kprobe", "tracepoint"] {
            assert!(v.contains(&format!("{p} (")), "{v} lacks the {p} path");
        }
        assert!(v.contains("commit: "), "{v}");
    }
}
