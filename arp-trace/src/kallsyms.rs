//! Kernel text symbols from /proc/kallsyms: the address ranges of the neighbour functions the
//! tracepoint path filters `consume_skb` on, and names for kernel stack frames.
//!
//! Inlining differs per kernel build (`neigh_probe` is inlined into its callers on some), so the
//! ranges are resolved on the running kernel at start-up, never compiled in.

use anyhow::{bail, Context, Result};

pub struct Kallsyms {
    /// Text symbols sorted by address.
    syms: Vec<(u64, String)>,
}

/// Functions `neigh_probe()` may live in: itself, or inlined into these callers.
pub const NEIGH_PROBE_SITES: &[&str] =
    &["neigh_probe", "__neigh_event_send", "neigh_timer_handler"];

/// Softirq entry points: a trigger whose kernel stack passes through one of these was sent
/// from softirq, where `current` is whatever task was interrupted, not the sender.
pub const SOFTIRQ_FRAMES: &[&str] = &[
    "handle_softirqs",
    "__do_softirq",
    "do_softirq",
    "run_ksoftirqd",
    "net_rx_action",
    "run_timer_softirq",
    "call_timer_fn",
    "__run_timers",
    "tasklet_action_common",
];

impl Kallsyms {
    pub fn load() -> Result<Kallsyms> {
        let text =
            std::fs::read_to_string("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
        let k = Kallsyms::parse(&text);
        if k.syms.is_empty() || k.syms.iter().all(|(a, _)| *a == 0) {
            bail!(
                "/proc/kallsyms shows no addresses (kernel.kptr_restrict): run arp-trace as root"
            );
        }
        Ok(k)
    }

    pub fn parse(text: &str) -> Kallsyms {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let ty = it.next()?;
                let name = it.next()?;
                matches!(ty, "t" | "T" | "w" | "W").then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable();
        Kallsyms { syms }
    }

    /// `[start, end)` of every copy of function `name` (static functions may repeat).
    pub fn ranges(&self, name: &str) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (i, (addr, n)) in self.syms.iter().enumerate() {
            if n == name {
                let end = self.syms[i + 1..]
                    .iter()
                    .find(|(a, _)| a > addr)
                    .map(|(a, _)| *a);
                if let Some(end) = end {
                    out.push((*addr, end));
                }
            }
        }
        out
    }

    /// The function containing `addr`.
    pub fn symbolize(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        (i > 0).then(|| self.syms[i - 1].1.as_str())
    }

    /// Whether a kernel stack passes through softirq processing.
    pub fn in_softirq(&self, stack: &[u64]) -> bool {
        stack
            .iter()
            .filter_map(|a| self.symbolize(*a))
            .any(|s| SOFTIRQ_FRAMES.contains(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81e73000 t neigh_flush
ffffffff81e730f0 t neigh_probe
ffffffff81e73200 t neigh_add_timer
ffffffff81e77840 t neigh_timer_handler
ffffffff81e77c60 T __neigh_event_send
ffffffff81e78000 T neigh_update
ffffffff81000000 T handle_softirqs
ffffffff82000000 d some_data
ffffffff81000100 T run_timer_softirq [kernel]
";

    #[test]
    fn finds_function_ranges_and_names() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(
            k.ranges("neigh_probe"),
            vec![(0xffffffff81e730f0, 0xffffffff81e73200)]
        );
        assert_eq!(
            k.ranges("__neigh_event_send"),
            vec![(0xffffffff81e77c60, 0xffffffff81e78000)]
        );
        assert_eq!(k.ranges("missing"), vec![]);
        assert_eq!(k.symbolize(0xffffffff81e730f5), Some("neigh_probe"));
        assert_eq!(k.symbolize(0x10), None);
        // Data symbols are not text: they neither end ranges nor name addresses.
        assert_eq!(k.symbolize(0xffffffff82000010), Some("neigh_update"));
    }

    #[test]
    fn tells_softirq_stacks_from_task_stacks() {
        let k = Kallsyms::parse(SAMPLE);
        assert!(k.in_softirq(&[0xffffffff81e77c70, 0xffffffff81000010]));
        assert!(!k.in_softirq(&[0xffffffff81e77c70, 0xffffffff81e73000]));
        assert!(!k.in_softirq(&[]));
    }

    #[test]
    fn running_kernel_has_the_neighbour_functions() {
        // Root sees real addresses; elsewhere Kallsyms::load reports the cause instead.
        let Ok(k) = Kallsyms::load() else { return };
        let found: usize = NEIGH_PROBE_SITES.iter().map(|n| k.ranges(n).len()).sum();
        assert!(
            found >= 1,
            "none of {NEIGH_PROBE_SITES:?} in /proc/kallsyms"
        );
    }
}
