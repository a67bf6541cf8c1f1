//! Kernel text symbols from /proc/kallsyms: whether `arp_solicit` can take a kprobe, and where
//! the functions that free a failed IPv6 neighbour's packets lie.
//!
//! Addresses differ per boot (KASLR) and per build, so they are read on the running kernel at
//! start-up, never compiled in.

use anyhow::{bail, Context, Result};

pub struct Kallsyms {
    /// `[start, end)` and name of the few functions arp-trace asks about (see `wanted`),
    /// sorted by start. Keeping only these, not every text symbol, saves ~9 MB of peak heap.
    syms: Vec<(u64, u64, String)>,
}

/// Every function name arp-trace looks up.
/// Frees a failed IPv6 neighbour's queued packets (the kfree_skb program keeps its drops).
pub const NDISC_ERROR_REPORT: &str = "ndisc_error_report";
/// Its caller, where those drops are seen when the free is a tail call, and the timer that
/// calls that (where it lands when the compiler inlined it).
pub const NEIGH_INVALIDATE: &str = "neigh_invalidate";
pub const NEIGH_TIMER_HANDLER: &str = "neigh_timer_handler";
/// Where the packets of a failed IPv6 neighbour are freed, as `kfree_skb`'s location names it.
pub const NDISC_DROP_SITES: [&str; 3] = [NDISC_ERROR_REPORT, NEIGH_INVALIDATE, NEIGH_TIMER_HANDLER];

fn wanted(name: &str) -> bool {
    name == "arp_solicit" || NDISC_DROP_SITES.contains(&name)
}

impl Kallsyms {
    pub fn load() -> Result<Kallsyms> {
        use std::io::BufRead;
        // Streamed: the file is ~5 MB of text that need not be held at once.
        let f = std::fs::File::open("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
        let k = Kallsyms::from_lines(std::io::BufReader::new(f).lines().map_while(Result::ok));
        if k.syms.is_empty() || k.syms.iter().all(|(a, _, _)| *a == 0) {
            let int = |p: &str| {
                std::fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into())
            };
            let restrict = int("/proc/sys/kernel/kptr_restrict");
            let why = if restrict == "2" {
                "kernel.kptr_restrict=2 hides them from everyone; set it to 1 (sysctl -w \
                 kernel.kptr_restrict=1) and run with CAP_SYSLOG"
                    .to_string()
            } else {
                format!(
                    "with kernel.kptr_restrict={restrict} and kernel.perf_event_paranoid={} \
                     they need CAP_SYSLOG; run arp-trace with sudo or grant CAP_SYSLOG",
                    int("/proc/sys/kernel/perf_event_paranoid")
                )
            };
            bail!("/proc/kallsyms shows no addresses: {why}");
        }
        Ok(k)
    }

    pub fn parse(text: &str) -> Kallsyms {
        Kallsyms::from_lines(text.lines())
    }

    fn from_lines<S: AsRef<str>>(lines: impl Iterator<Item = S>) -> Kallsyms {
        let mut starts: Vec<u64> = Vec::new();
        let mut keep: Vec<(u64, String)> = Vec::new();
        for l in lines {
            let mut it = l.as_ref().split_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if !matches!(ty, "t" | "T" | "w" | "W") {
                continue;
            }
            starts.push(addr);
            if wanted(name) {
                keep.push((addr, name.to_string()));
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut syms: Vec<(u64, u64, String)> = keep
            .into_iter()
            .filter_map(|(a, n)| {
                let end = *starts.get(starts.partition_point(|s| *s <= a))?;
                Some((a, end, n))
            })
            .collect();
        syms.sort_unstable();
        Kallsyms { syms }
    }

    /// `[start, end)` of every copy of function `name` (static functions may repeat).
    pub fn ranges(&self, name: &str) -> Vec<(u64, u64)> {
        self.syms
            .iter()
            .filter(|(_, _, n)| n == name)
            .map(|(s, e, _)| (*s, *e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81e73000 t neigh_flush
ffffffff81e730f0 t arp_solicit
ffffffff81e73200 t neigh_add_timer
ffffffff81e77840 t neigh_timer_handler
ffffffff81e77c60 T __do_softirq
ffffffff81e78000 T neigh_update
ffffffff81000000 T handle_softirqs
ffffffff82000000 d some_data
ffffffff81000100 T run_timer_softirq [kernel]
";

    #[test]
    fn finds_function_ranges_and_names() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(
            k.ranges("arp_solicit"),
            vec![(0xffffffff81e730f0, 0xffffffff81e73200)]
        );
        assert_eq!(
            k.ranges("neigh_timer_handler"),
            vec![(0xffffffff81e77840, 0xffffffff81e77c60)]
        );
        assert_eq!(k.ranges("missing"), vec![]);
        // Only the functions arp-trace asks about are kept.
        assert_eq!(k.ranges("neigh_update"), vec![]);
        assert_eq!(k.ranges("some_data"), vec![]);
    }

    #[test]
    fn running_kernel_has_arp_solicit() {
        // Root sees real addresses; elsewhere Kallsyms::load reports the cause instead.
        let Ok(k) = Kallsyms::load() else { return };
        assert_eq!(
            k.ranges("arp_solicit").len(),
            1,
            "arp_solicit in /proc/kallsyms"
        );
    }
}
