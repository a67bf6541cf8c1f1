//! What arp-trace needs from the kernel's permission checks, one capability at a time, with
//! what each is for, so a refusal names the missing one instead of "run as root".
//!
//! Found by running the tracer as an unprivileged user with exactly a set of ambient
//! capabilities (`setpriv --ambient-caps`) and removing one at a time:
//! - CAP_BPF and CAP_PERFMON load and attach the tracing programs and let them read kernel
//!   memory;
//! - CAP_SYSLOG shows kernel addresses in /proc/kallsyms (unless `kernel.kptr_restrict` is 0
//!   and `kernel.perf_event_paranoid` at most 1, when anyone sees them; with kptr_restrict 2
//!   no one does): arp-trace reads the softirq entry points there;
//! - CAP_SYS_ADMIN lets a thread setns() into another network namespace to read its addresses
//!   and sysctls: without it no request is explained;
//! - CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH read /proc/PID/fd and /proc/PID/ns/net of other
//!   users' processes: without them a socket owned by another user is not named when the
//!   packet was sent from softirq, and a namespace held only by another user's process has
//!   no path to enter. Useful, not required.
//!
//! root normally has all of them; a service confined with a capability bounding set may not.

/// One capability arp-trace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub name: &'static str,
    pub bit: u32,
    /// What it is for, in words for the user.
    pub why: &'static str,
    /// Tracing refuses to start without it (else it warns).
    pub required: bool,
}

pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

pub const NEEDS: &[Need] = &[
    Need {
        name: "CAP_BPF",
        bit: CAP_BPF,
        why: "load the BPF programs",
        required: true,
    },
    Need {
        name: "CAP_PERFMON",
        bit: CAP_PERFMON,
        why: "attach tracing programs that read kernel memory",
        required: true,
    },
    Need {
        name: "CAP_SYSLOG",
        bit: CAP_SYSLOG,
        why: "see kernel addresses in /proc/kallsyms",
        required: true,
    },
    Need {
        name: "CAP_SYS_ADMIN",
        bit: CAP_SYS_ADMIN,
        why: "enter other network namespaces to read the addresses and sysctls requests are \
              explained with",
        required: true,
    },
    Need {
        name: "CAP_SYS_PTRACE",
        bit: CAP_SYS_PTRACE,
        why: "name other users' processes behind sockets (/proc/PID/fd, /proc/PID/ns/net)",
        required: false,
    },
    Need {
        name: "CAP_DAC_READ_SEARCH",
        bit: CAP_DAC_READ_SEARCH,
        why: "list other users' /proc/PID/fd directories",
        required: false,
    },
];

/// The effective capabilities of this process (`CapEff` in /proc/self/status).
pub fn effective() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn read_int(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether this host shows kallsyms addresses without CAP_SYSLOG (kallsyms_show_value()).
pub fn kallsyms_open_to_all() -> bool {
    read_int("/proc/sys/kernel/kptr_restrict") == Some(0)
        && read_int("/proc/sys/kernel/perf_event_paranoid").is_some_and(|p| p <= 1)
}

/// The capabilities missing from `eff`, required ones first; CAP_SYSLOG only where the host
/// hides kallsyms addresses from those without it.
pub fn missing(eff: u64, kallsyms_open: bool) -> Vec<&'static Need> {
    let mut m: Vec<&Need> = NEEDS
        .iter()
        .filter(|n| eff & (1u64 << n.bit) == 0)
        .filter(|n| !(n.bit == CAP_SYSLOG && kallsyms_open))
        .collect();
    m.sort_by_key(|n| !n.required);
    m
}

/// The names of `needs`, `CAP_BPF, CAP_SYSLOG`.
pub fn names(needs: &[&Need]) -> String {
    needs.iter().map(|n| n.name).collect::<Vec<_>>().join(", ")
}

/// Fails early, naming each missing capability and what it is for, when tracing cannot work;
/// returns the useful ones that are missing (for a warning).
pub fn check() -> Result<Vec<&'static Need>, String> {
    let missing = missing(effective(), kallsyms_open_to_all());
    let required: Vec<&Need> = missing.iter().copied().filter(|n| n.required).collect();
    if !required.is_empty() {
        let what: Vec<String> = required
            .iter()
            .map(|n| format!("{} ({})", n.name, n.why))
            .collect();
        return Err(format!(
            "permission denied: tracing needs {}; run it with sudo, or grant the capabilities \
             (`arp-trace doctor` lists each)",
            what.join(", ")
        ));
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_missing_capability_required_first() {
        let all: u64 = NEEDS.iter().map(|n| 1u64 << n.bit).sum();
        assert!(missing(all, false).is_empty());
        let no_admin_ptrace = all & !(1 << CAP_SYS_ADMIN) & !(1 << CAP_SYS_PTRACE);
        let m = missing(no_admin_ptrace, false);
        assert_eq!(names(&m), "CAP_SYS_ADMIN, CAP_SYS_PTRACE");
        let no_syslog = all & !(1 << CAP_SYSLOG);
        assert_eq!(names(&missing(no_syslog, false)), "CAP_SYSLOG");
        assert!(missing(no_syslog, true).is_empty());
        assert_eq!(
            parse_cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            0x1ff_ffff_ffff
        );
    }
}
