//! `arp-trace doctor`: which hooks this kernel allows and, when one is not, the cause in
//! words a newcomer can act on (what `bpftool feature probe` would tell an expert).

use std::fmt::Write as _;

use anyhow::Result;

use crate::kernel::btf::Btf;
use crate::kernel::hooks::{Role, SolicitPath};
use crate::kernel::kallsyms::Kallsyms;
use crate::kernel::loader::{self, Probe};
use crate::kernel::privileges;

/// One line of the report: a check, whether it passed, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// The kernel's lockdown mode from securityfs (`none [integrity] confidentiality`).
pub fn lockdown_mode(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(&text[start..end])
}

/// `CONFIG_X=y|m` lines of a kernel config, if one is readable for the running kernel.
fn kernel_config(release: &str) -> Option<String> {
    std::fs::read_to_string(format!("/boot/config-{release}")).ok()
}

fn config_value<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    config.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
            .or_else(|| {
                (l.starts_with("# ") && l.contains(&format!("{key} is not set"))).then_some("n")
            })
    })
}

/// Adds the kernel config's word on a setting when the config is readable.
fn with_config(detail: String, config: Option<&str>, key: &str) -> String {
    match config.and_then(|c| config_value(c, key)) {
        Some(v) => format!("{detail} ({key}={v})"),
        None => detail,
    }
}

/// What each failed solicit path's cause means and what would make it work.
fn advice(path: SolicitPath, why: &str) -> &'static str {
    match path {
        SolicitPath::Fentry if why.contains("EPERM") || why.contains("EACCES") => {
            "the kernel or a security policy forbids BPF trampolines here; the next paths \
             give the same answers"
        }
        SolicitPath::Fentry => "needs a kernel with BPF trampolines (x86_64/arm64, 5.5+)",
        SolicitPath::Kprobe if why.contains("CONFIG_KPROBES") => {
            "kprobes are compiled out; nothing to change at run time"
        }
        SolicitPath::Kprobe => "kprobes exist but this one could not be placed",
        SolicitPath::Tracepoint => "the tracepoint path needs only the neighbour tracepoints above",
    }
}

/// The solicit path `--hooks auto` would take, if the hooks every path needs attached.
fn chosen(probes: &[Probe]) -> Option<SolicitPath> {
    SolicitPath::ALL.iter().copied().find(|s| {
        probes
            .iter()
            .any(|p| p.hook.path == Some(*s) && p.result.is_ok())
    })
}

/// Whether arp-trace can trace here, and the verdict in words; text and JSON share it.
fn verdict(checks: &[Check], probes: &[Probe]) -> (bool, String) {
    if probes.is_empty() {
        return (false, "arp-trace cannot run here".into());
    }
    let system_ok = checks.iter().all(|c| c.ok);
    let common_ok = probes
        .iter()
        .filter(|p| p.hook.role != Role::Solicit)
        .all(|p| p.result.is_ok());
    let chosen = chosen(probes);
    let ok = system_ok && common_ok && chosen.is_some();
    let verdict = match (common_ok, chosen) {
        (true, Some(path)) => format!(
            "arp-trace runs here: `--hooks auto` uses the {} path ({}) and attributes every \
             request to its packet and process",
            path.name(),
            path.hook().attach
        ),
        (false, _) => "arp-trace cannot run here: a hook every path needs is missing".into(),
        (true, None) => {
            "arp-trace can show ARP frames but no path sees arp_solicit()'s packet here".into()
        }
    };
    (ok, verdict)
}

/// Renders the report; `probes` is what `loader::probe_hooks` found.
pub fn render(release: &str, checks: &[Check], probes: &[Probe]) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "arp-trace doctor: kernel {release}");
    let _ = writeln!(out, "System:");
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "  {mark} {:<19} {}", c.name, c.detail);
    }
    let (ok, verdict) = verdict(checks, probes);
    if probes.is_empty() {
        let _ = writeln!(
            out,
            "Hooks: not tried (fix the failures above first)\nVerdict: {verdict}"
        );
        return (out, ok);
    }
    let _ = writeln!(out, "Hooks (each attached and detached again):");
    for p in probes {
        let (mark, detail) = match &p.result {
            Ok(()) => ("ok  ", "works".to_string()),
            Err(why) => ("no  ", why.clone()),
        };
        let _ = writeln!(
            out,
            "  {mark} {:<10} {:<30} {detail}",
            p.hook.role.name(),
            p.hook.attach
        );
        if let (Err(why), Some(path)) = (&p.result, p.hook.path) {
            let _ = writeln!(out, "       {:<10} {:<30} -> {}", "", "", advice(path, why));
        }
    }
    let _ = writeln!(out, "Verdict: {verdict}");
    (out, ok)
}

/// The same report as one JSON object, for scripts and fleet checks: `ok` is the exit
/// status's answer, `hooks` is empty when the system checks stopped doctor before trying them.
pub fn render_json(release: &str, checks: &[Check], probes: &[Probe]) -> (serde_json::Value, bool) {
    let (ok, verdict) = verdict(checks, probes);
    let checks: Vec<_> = checks
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
        .collect();
    let hooks: Vec<_> = probes
        .iter()
        .map(|p| {
            let cause = p.result.as_ref().err();
            serde_json::json!({
                "role": p.hook.role.name(),
                "attach": p.hook.attach,
                "solicit_path": p.hook.path.map(SolicitPath::name),
                "ok": p.result.is_ok(),
                "cause": cause,
                "advice": cause.zip(p.hook.path).map(|(why, path)| advice(path, why)),
            })
        })
        .collect();
    let report = serde_json::json!({
        "ok": ok,
        "version": env!("CARGO_PKG_VERSION"),
        "commit": crate::version::commit(),
        "kernel_release": release,
        "checks": checks,
        "hooks_tried": !probes.is_empty(),
        "hooks": hooks,
        "solicit_path": chosen(probes).filter(|_| ok).map(SolicitPath::name),
        "verdict": verdict,
    });
    (report, ok)
}

/// Runs every check: the kernel release, the system checks and the hooks tried.
fn gather() -> (String, Vec<Check>, Vec<Probe>) {
    let release = crate::kernel::hooks::kernel_release();
    let config = kernel_config(&release);
    let mut checks = Vec::new();
    let privileged = privileges::check();
    checks.push(match &privileged {
        Ok(_) => Check::new("privileges", true, "every capability tracing needs"),
        Err(e) => Check::new("privileges", false, e.clone()),
    });
    let eff = privileges::effective();
    let open = privileges::kallsyms_open_to_all();
    let missing = privileges::missing(eff, open);
    for need in privileges::NEEDS {
        let lacking = missing.iter().any(|m| m.bit == need.bit);
        let detail = match (lacking, need.required) {
            (false, _) => format!("present: {}", need.why),
            (true, true) => format!("MISSING: cannot {}", need.why),
            (true, false) => format!("missing (optional): cannot {}", need.why),
        };
        checks.push(Check::new(need.name, !(lacking && need.required), detail));
    }
    let btf = Btf::from_sys_fs();
    checks.push(match &btf {
        Ok(_) => Check::new("BTF", true, "/sys/kernel/btf/vmlinux"),
        Err(e) => Check::new(
            "BTF",
            false,
            with_config(
                crate::one_line(e),
                config.as_deref(),
                "CONFIG_DEBUG_INFO_BTF",
            ),
        ),
    });
    let syms = if privileged.is_ok() {
        Kallsyms::load()
    } else {
        Err(anyhow::anyhow!("needs root to show addresses"))
    };
    checks.push(match &syms {
        Ok(_) => Check::new("kallsyms", true, "kernel addresses visible"),
        Err(e) => Check::new("kallsyms", false, crate::one_line(e)),
    });
    match std::fs::read_to_string("/sys/kernel/security/lockdown") {
        Ok(text) => {
            let mode = lockdown_mode(&text).unwrap_or("unknown").to_string();
            let ok = mode != "confidentiality";
            let detail = if ok {
                format!("{mode} (BPF may read kernel memory)")
            } else {
                "confidentiality: BPF may not read kernel memory; boot with lockdown=integrity \
                 or none"
                    .to_string()
            };
            checks.push(Check::new("lockdown", ok, detail));
        }
        Err(_) => checks.push(Check::new(
            "lockdown",
            true,
            "not enforced (no securityfs entry)",
        )),
    }
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    checks.push(Check::new(
        "kprobes",
        true,
        with_config(
            if kprobes {
                "available".to_string()
            } else {
                "not in this kernel (only matters if fentry is refused)".to_string()
            },
            config.as_deref(),
            "CONFIG_KPROBES",
        ),
    ));

    if let Ok(btf) = &btf {
        checks.push(ipv6_check(btf, syms.as_ref().ok()));
        checks.push(context_check(btf));
    }

    // The BTF is handed over, not lent: probe_hooks drops it before aya parses its copies.
    let probes = match (btf, &syms) {
        (Ok(btf), Ok(syms)) if privileged.is_ok() => match loader::probe_hooks(btf, syms) {
            Ok(p) => p,
            Err(e) => {
                checks.push(Check::new("eBPF object", false, crate::one_line(&e)));
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    (release, checks, probes)
}

/// Whether IPv6 neighbour discovery is traced in full: the device's IPv6 addresses are
/// readable (BTF), and the packets a failed entry drops can be told from other drops
/// (kallsyms). Never fails the report: ARP is traced either way.
fn ipv6_check(btf: &Btf, syms: Option<&Kallsyms>) -> Check {
    let fields = [
        ("net_device", "ip6_ptr"),
        ("inet6_dev", "addr_list"),
        ("inet6_ifaddr", "if_list"),
        ("inet6_ifaddr", "flags"),
    ];
    if let Some((s, f)) = fields.iter().find(|(s, f)| btf.field(s, f).is_err()) {
        return Check::new(
            "IPv6 neighbour discovery",
            true,
            format!("frames traced without explanations: this kernel's BTF has no {s}.{f} (built without IPv6?)"),
        );
    }
    // One site is enough: the tail call lands in whichever of them the compiler left.
    let report = syms.is_some_and(|k| {
        crate::kernel::kallsyms::NDISC_DROP_SITES
            .iter()
            .any(|f| k.ranges(f).len() == 1)
    });
    let detail = if report {
        "traced and explained; a failed entry's dropped packets are named"
    } else {
        "traced and explained; a failed entry's dropped packets are not named (ndisc_error_report() and its callers are not in kallsyms)"
    };
    Check::new("IPv6 neighbour discovery", true, detail)
}

/// How the programs tell a softirq from the sender's task here (see the README): never fails
/// the report, both ways are exact.
fn context_check(btf: &Btf) -> Check {
    let mut config = arp_trace_common::Config::UNSET;
    let detail = match crate::kernel::context::preempt_context(btf, &mut config) {
        Ok(()) => "from the preempt count (found through current's runqueue); softirq_entry \
                   and softirq_exit stay unattached"
            .to_string(),
        Err(why) => format!(
            "from a flag softirq_entry and softirq_exit keep, at two hook runs per softirq \
             (the preempt count cannot be located: {why})"
        ),
    };
    Check::new("task or softirq", true, detail)
}

/// Prints the report, as text or one JSON object; exit status 0 when arp-trace can trace here.
pub fn main(json: bool) -> Result<bool> {
    let (release, checks, probes) = gather();
    if json {
        let (report, ok) = render_json(&release, &checks, &probes);
        println!("{report}");
        Ok(ok)
    } else {
        let (text, ok) = render(&release, &checks, &probes);
        print!("{text}");
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lockdown_and_config() {
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality\n"),
            Some("integrity")
        );
        assert_eq!(lockdown_mode("garbage"), None);
        let cfg = "CONFIG_KPROBES=y\n# CONFIG_FOO is not set\n";
        assert_eq!(config_value(cfg, "CONFIG_KPROBES"), Some("y"));
        assert_eq!(config_value(cfg, "CONFIG_FOO"), Some("n"));
        assert_eq!(config_value(cfg, "CONFIG_BAR"), None);
    }

    fn probe(attach: &'static str, ok: bool) -> Probe {
        let hook = crate::kernel::hooks::HOOKS
            .iter()
            .find(|h| h.attach == attach)
            .unwrap();
        Probe {
            hook,
            result: if ok {
                Ok(())
            } else {
                Err("refused by kernel (EPERM)".into())
            },
        }
    }

    #[test]
    fn verdict_names_the_path_auto_would_take() {
        let checks = [Check::new("BTF", true, "x")];
        let probes = [
            probe("tp_btf/net_dev_queue", true),
            probe("fentry/arp_solicit", false),
            probe("kprobe/arp_solicit", false),
            probe("tp_btf/neigh_*", true),
        ];
        let (text, ok) = render("6.18", &checks, &probes);
        assert!(ok, "{text}");
        assert!(text.contains("uses the tracepoint path"), "{text}");
        assert!(text.contains("forbids BPF trampolines"), "{text}");

        let probes = [
            probe("tp_btf/net_dev_queue", true),
            probe("fentry/arp_solicit", false),
        ];
        let (text, ok) = render("6.18", &checks, &probes);
        assert!(!ok && text.contains("no path sees"), "{text}");

        let probes = [probe("tp_btf/net_dev_queue", false)];
        let (text, ok) = render("6.18", &checks, &probes);
        assert!(!ok && text.contains("cannot run here"), "{text}");

        let failed = [Check::new("privileges", false, "permission denied")];
        let (text, ok) = render("6.18", &failed, &[]);
        assert!(!ok && text.contains("FAIL privileges"), "{text}");
    }

    #[test]
    fn the_json_report_agrees_with_the_text() {
        let checks = [Check::new("BTF", true, "x")];
        let probes = [
            probe("tp_btf/net_dev_queue", true),
            probe("fentry/arp_solicit", false),
            probe("tp_btf/neigh_*", true),
        ];
        let (v, ok) = render_json("6.18", &checks, &probes);
        assert!(ok && v["ok"] == true, "{v}");
        assert_eq!(v["kernel_release"], "6.18");
        assert_eq!(v["solicit_path"], "tracepoint");
        assert_eq!(v["checks"][0]["name"], "BTF");
        assert_eq!(v["hooks"][1]["attach"], "fentry/arp_solicit");
        assert_eq!(v["hooks"][1]["ok"], false);
        assert_eq!(v["hooks"][1]["cause"], "refused by kernel (EPERM)");
        assert!(v["hooks"][1]["advice"]
            .as_str()
            .unwrap()
            .contains("forbids BPF trampolines"));
        assert_eq!(v["hooks"][0]["advice"], serde_json::Value::Null);
        let (text, _) = render("6.18", &checks, &probes);
        assert!(
            text.contains(&format!("Verdict: {}", v["verdict"].as_str().unwrap())),
            "{text}"
        );

        let failed = [Check::new("privileges", false, "permission denied")];
        let (v, ok) = render_json("6.18", &failed, &[]);
        assert!(!ok && v["ok"] == false && v["hooks_tried"] == false, "{v}");
        assert_eq!(v["solicit_path"], serde_json::Value::Null);
        assert_eq!(v["checks"][0]["ok"], false);
    }
}
