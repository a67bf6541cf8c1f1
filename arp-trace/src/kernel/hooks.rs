//! The hook table: every place arp-trace attaches, what it is for, which BPF program runs
//! there and what the kernel must offer for it. The loader attaches from it and `doctor`
//! reports from it, so the two cannot disagree about what exists.

use std::fmt;

use super::btf::Btf;
use super::kallsyms::Kallsyms;

/// What a hook is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Every frame handed to a device: the ARP frame itself.
    Transmit,
    /// Every frame a device hands up to the stack: ARP frames from the other end of the wire.
    Receive,
    /// Each update of a neighbour entry: what received frames, `ip neigh` and the kernel
    /// change in the table.
    Table,
    /// The neighbour entry after a solicit (state, attempt, queue and its owner).
    Neighbour,
    /// Packets dropped from a neighbour's queue.
    Drops,
    /// The packet `arp_solicit()` is called with: one of the [`SolicitPath`]s.
    Solicit,
    /// Whether a CPU is in a softirq, so `current` is known to be a packet's sender or not:
    /// attached only where the programs cannot read the preempt count instead
    /// (`super::context`).
    Context,
}

impl Role {
    /// What the receive side adds, which `--direction out` leaves unattached.
    pub fn receive_side(self) -> bool {
        matches!(self, Role::Receive | Role::Table)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Transmit => "transmit",
            Role::Receive => "receive",
            Role::Table => "table",
            Role::Neighbour => "neighbour",
            Role::Drops => "drops",
            Role::Solicit => "solicit",
            Role::Context => "context",
        }
    }
}

/// What the kernel must offer for a hook, checked before trying it where that is possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requires {
    /// A BTF tracepoint (`tp_btf`, Linux 5.5+).
    BtfTracepoint,
    /// fentry on a function: the function in BTF, and BPF trampolines allowed.
    Fentry(&'static str),
    /// A kprobe on a function: CONFIG_KPROBES and the function in /proc/kallsyms.
    Kprobe(&'static str),
    /// The neighbour tracepoints of this table, already attached.
    NeighbourHooks,
}

/// A way to see the packet `arp_solicit()` is called with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolicitPath {
    /// `fentry/arp_solicit`: the call itself, through a BPF trampoline.
    Fentry,
    /// `kprobe/arp_solicit`: the call itself, through a breakpoint.
    Kprobe,
    /// The neighbour tracepoints every path attaches read the newest packet on the entry's
    /// queue, which `neigh_probe()` cloned for the solicit. Nothing on the per-packet path
    /// beyond `net_dev_queue`; another CPU queueing to the same unresolved entry in the
    /// microseconds between the solicit and the tracepoint would be named instead.
    Tracepoint,
}

/// One entry of [`HOOKS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    pub role: Role,
    /// The BPF program attached; `None` for the tracepoint solicit path, which switches the
    /// neighbour programs to read the queue instead.
    pub program: Option<&'static str>,
    /// `kind/target`, as aya and the start-up line name it.
    pub attach: &'static str,
    pub requires: Requires,
    /// For the solicit role: which path this is.
    pub path: Option<SolicitPath>,
}

const fn common(role: Role, program: &'static str, attach: &'static str) -> Hook {
    Hook {
        role,
        program: Some(program),
        attach,
        requires: Requires::BtfTracepoint,
        path: None,
    }
}

/// Every hook: first those every solicit path needs (in attach order), then the solicit
/// paths in order of preference, exact and cheapest first.
pub static HOOKS: &[Hook] = &[
    // First, so a softirq under way while they attach has ended before any program reads
    // the flag they keep.
    common(Role::Context, "softirq_entry", "tp_btf/softirq_entry"),
    common(Role::Context, "softirq_exit", "tp_btf/softirq_exit"),
    common(Role::Neighbour, "neigh_update", "tp_btf/neigh_update"),
    common(Role::Transmit, "net_dev_queue", "tp_btf/net_dev_queue"),
    common(Role::Drops, "kfree_skb", "tp_btf/kfree_skb"),
    common(
        Role::Receive,
        "netif_receive_skb",
        "tp_btf/netif_receive_skb",
    ),
    common(Role::Table, "neigh_change_before", "tp_btf/neigh_update"),
    common(Role::Table, "neigh_update_done", "tp_btf/neigh_update_done"),
    common(
        Role::Neighbour,
        "neigh_event_send_done",
        "tp_btf/neigh_event_send_done",
    ),
    common(
        Role::Neighbour,
        "neigh_timer_handler",
        "tp_btf/neigh_timer_handler",
    ),
    common(
        Role::Neighbour,
        "neigh_update_failed",
        "tp_btf/neigh_update_done",
    ),
    Hook {
        role: Role::Solicit,
        program: Some("solicit_fentry"),
        attach: "fentry/arp_solicit",
        requires: Requires::Fentry("arp_solicit"),
        path: Some(SolicitPath::Fentry),
    },
    Hook {
        role: Role::Solicit,
        program: Some("solicit_kprobe"),
        attach: "kprobe/arp_solicit",
        requires: Requires::Kprobe("arp_solicit"),
        path: Some(SolicitPath::Kprobe),
    },
    Hook {
        role: Role::Solicit,
        program: None,
        attach: "tp_btf/neigh_*",
        requires: Requires::NeighbourHooks,
        path: Some(SolicitPath::Tracepoint),
    },
];

/// From which kernel `net_dev_queue` reads the skb, its device and the device's addresses
/// with direct loads (`Config::xmit_direct`), about half its cost per ARP frame. Verified on 6.12 (VM suite)
/// and 6.18; 6.1's verifier gives up on them (E2BIG after ~80 s) and the kernels between
/// are untested, so those read with the helper as 6.1 does.
pub const XMIT_DIRECT_FROM: (u32, u32) = (6, 12);

/// Whether the kernel `release` (`uname -r`) gets `net_dev_queue`'s direct loads.
pub fn xmit_direct(release: &str) -> bool {
    let mut n = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|s| s.parse::<u32>().ok());
    matches!((n.next().flatten(), n.next().flatten()), (Some(a), Some(b)) if (a, b) >= XMIT_DIRECT_FROM)
}

/// The running kernel's release, as `uname -r` prints it; "unknown" when unreadable.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The hooks every solicit path needs.
pub fn common_hooks() -> impl Iterator<Item = &'static Hook> {
    HOOKS.iter().filter(|h| h.path.is_none())
}

impl SolicitPath {
    /// In order of preference: exact and cheapest first.
    pub const ALL: [SolicitPath; 3] = [
        SolicitPath::Fentry,
        SolicitPath::Kprobe,
        SolicitPath::Tracepoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SolicitPath::Fentry => "fentry",
            SolicitPath::Kprobe => "kprobe",
            SolicitPath::Tracepoint => "tracepoint",
        }
    }

    /// This path's entry in [`HOOKS`].
    pub fn hook(self) -> &'static Hook {
        HOOKS
            .iter()
            .find(|h| h.path == Some(self))
            .expect("HOOKS has every solicit path")
    }
}

/// How `arp_solicit()`'s packet is caught (`--hooks`): one of the solicit paths, or the best
/// this kernel allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookChoice {
    /// fentry, else kprobe, else the tracepoint path.
    Auto,
    /// fentry on arp_solicit() (BPF trampoline; refused by some kernels' policy).
    Fentry,
    /// kprobe on arp_solicit() (needs CONFIG_KPROBES).
    Kprobe,
    /// Neighbour tracepoints only: the packet is read from the neighbour's queue.
    Tracepoint,
}

impl HookChoice {
    /// The solicit paths to try, best first.
    pub fn candidates(self) -> Vec<SolicitPath> {
        match self {
            HookChoice::Auto => SolicitPath::ALL.to_vec(),
            HookChoice::Fentry => vec![SolicitPath::Fentry],
            HookChoice::Kprobe => vec![SolicitPath::Kprobe],
            HookChoice::Tracepoint => vec![SolicitPath::Tracepoint],
        }
    }
}

/// What the kernel offers for each requirement, read without loading anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    btf_funcs: Vec<(&'static str, bool)>,
    kallsyms_funcs: Vec<(&'static str, bool)>,
    /// `/sys/bus/event_source/devices/kprobe` exists: the kernel has CONFIG_KPROBES.
    pub kprobe_pmu: bool,
}

impl Features {
    pub fn gather(btf: &Btf, syms: &Kallsyms) -> Features {
        let mut f = Features {
            btf_funcs: Vec::new(),
            kallsyms_funcs: Vec::new(),
            kprobe_pmu: std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists(),
        };
        for h in HOOKS {
            match h.requires {
                Requires::Fentry(func) => f.btf_funcs.push((func, btf.has_func(func))),
                Requires::Kprobe(func) => {
                    f.kallsyms_funcs.push((func, !syms.ranges(func).is_empty()))
                }
                _ => {}
            }
        }
        f
    }

    /// Why `hook` cannot work on this kernel, when that is known before trying it.
    pub fn precheck(&self, hook: &Hook) -> Option<String> {
        let has = |list: &[(&str, bool)], func: &str| list.iter().any(|(f, ok)| *f == func && *ok);
        match hook.requires {
            Requires::Fentry(func) if !has(&self.btf_funcs, func) => {
                Some(format!("{func} is not in the kernel's BTF"))
            }
            Requires::Kprobe(_) if !self.kprobe_pmu => {
                Some("kernel built without kprobes (CONFIG_KPROBES)".into())
            }
            Requires::Kprobe(func) if !has(&self.kallsyms_funcs, func) => {
                Some(format!("{func} is not in /proc/kallsyms"))
            }
            _ => None,
        }
    }
}

/// A hook in use, for the start-up line and trace headers: `transmit=tp_btf/net_dev_queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub role: &'static str,
    pub name: &'static str,
}

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.role, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_transmit_loads_only_from_the_first_kernel_verified_to_take_them() {
        for (release, direct) in [
            ("6.1.0-57-amd64", false),
            ("6.11.9", false),
            ("6.12.117+deb12-amd64", true),
            ("6.18.44-fc-v1098", true),
            ("7.0.1", true),
            ("5.15.0-91-generic", false),
            ("unknown", false),
            ("", false),
        ] {
            assert_eq!(xmit_direct(release), direct, "{release}");
        }
    }

    #[test]
    fn every_solicit_path_has_one_entry_and_the_common_hooks_come_first() {
        for p in SolicitPath::ALL {
            assert_eq!(HOOKS.iter().filter(|h| h.path == Some(p)).count(), 1);
            assert_eq!(p.hook().role, Role::Solicit);
        }
        let first_solicit = HOOKS.iter().position(|h| h.path.is_some()).unwrap();
        assert!(HOOKS[first_solicit..].iter().all(|h| h.path.is_some()));
        assert_eq!(common_hooks().count(), 11);
        assert_eq!(
            HOOKS[0].role,
            Role::Context,
            "the context flag is kept before it is read"
        );
        assert_eq!(SolicitPath::Tracepoint.hook().attach, "tp_btf/neigh_*");
    }
}
