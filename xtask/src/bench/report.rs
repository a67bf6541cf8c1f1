//! The report: the machine's description, figure 1's rows, and BENCHMARKS.md itself (with the
//! history kept across reruns and the notes on the storm's design).

use std::process::Command;
use std::thread;

use super::stats::{list, median, opt, too_noisy, Row, Verdict};
use super::system::output;
use super::tcp::StreamPairs;

pub(super) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let kernel = output(Command::new("uname").args(["-srm"])).unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    format!(
        "- Date: {}\n- CPU: {model}, {cores} cores\n- Memory: {:.1} GiB\n- Kernel: {}\n- Load average at start (1, 5, 15 min): {}\n",
        date.trim(),
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
    )
}

/// A row of figure 1: the median of the pair ratios against the target, with the median
/// throughputs (Gbit/s) beside it; too wide a spread makes it inconclusive.
pub(super) fn tcp_row(
    id: &str,
    figure: String,
    ratios: &[f64],
    with_gbit: f64,
    without_gbit: f64,
) -> Row {
    let r = median(ratios);
    Row {
        id: id.into(),
        figure,
        measured: format!(
            "{} (median {with_gbit:.2} vs {without_gbit:.2} Gbit/s)",
            opt(r, 3)
        ),
        target: "≥ 0.98".into(),
        verdict: if too_noisy(ratios, 0.2) {
            Verdict::Inconclusive
        } else {
            Verdict::at_least(r, 0.98)
        },
    }
}

/// Figure 1's row for one stream measurement (rates in Mbit/s).
pub(super) fn stream_row(id: &str, st: &StreamPairs) -> Row {
    let placement = match st.cpu {
        Some(c) => format!("client, server and softirq on CPU {c}, so the transfer is CPU-bound"),
        None => "processes left to the scheduler".to_string(),
    };
    tcp_row(
        id,
        format!(
            "TCP throughput over veth, with ÷ without arp-trace, on one iperf3 stream, {placement} ({} pairs of {} s windows, arp-trace started and stopped between them; per pair: {})",
            st.ratios.len(),
            st.window_secs,
            list(&st.ratios, 3)
        ),
        &st.ratios,
        median(&st.with).unwrap_or(0.0) / 1e3,
        median(&st.without).unwrap_or(0.0) / 1e3,
    )
}

/// Everything from this line on in BENCHMARKS.md (before/after records of improvements) is
/// carried over when the bench rewrites the file.
pub const KEEP_MARKER: &str = "<!-- kept across reruns of cargo xtask bench -->";

/// The new report followed by the kept part of the old file, if it has one.
pub fn keep_history(new: String, old: &str) -> String {
    match old.find(KEEP_MARKER) {
        Some(i) => format!("{}\n{}", new.trim_end(), &old[i..]),
        None => new,
    }
}

pub(super) fn report(machine: &str, table: &str, notes: &str, quick: bool) -> String {
    let mut s = String::from("# Benchmarks\n\n");
    s.push_str(
        "Written by `sudo -E cargo xtask bench` (see the README); rerun it to replace this file. \
         Each figure is a median over several runs; ratios are taken pair by pair \
         (without, with, with, without, ...) so drift of the machine cancels.\n\n",
    );
    if quick {
        s.push_str("**Quick run (`--quick`): fewer, shorter runs; not for the record.**\n\n");
    }
    s.push_str("## Machine\n\n");
    s.push_str(machine);
    s.push_str(
        "- The machine was shared with other build and test jobs while this ran; \
         throughput and CPU figures carry that noise.\n\n",
    );
    s.push_str("## Results\n\n");
    s.push_str(table);
    s.push_str("\n## Notes\n\n");
    s.push_str(notes);
    s.push_str(STORM_DESIGN);
    s
}

const STORM_DESIGN: &str = "\
- Storm design. Only TEST-NET addresses may be used, so there are not 200,000 distinct \
absent addresses to solicit, and the ARP and ND tables are each global, shared by every \
namespace. The storm runs in 4 namespaces. Each has one veth, eth3 with 198.51.100.10/24, \
203.0.113.10/24 and 2001:db8:14:i::1/64 (i = 0..3; `nodad`, no link-local address, so no DAD \
or router solicitations of its own), whose peer eth4 has no address and IPv6 off (nobody \
answers). One sending thread per namespace (it enters the namespace with setns) sends UDP \
datagrams to port 9 from two unbound sockets, round-robin over its 112 IPv4 targets (a slice \
of the 506 host addresses of the two /24s other than .10, disjoint between namespaces) \
alternating with 112 IPv6 targets 2001:db8:14:i:0:h:0:100. The IPv6 targets differ only \
above their low 24 bits, so they share one solicited-node group (ff02::1:ff00:100): each \
solicitation's multicast destination has its own ND entry, and distinct groups doubled the \
storm's share of that table (901 entries) in a first version. eth3's own neighbour \
parameters in each namespace, for both families, are one solicitation per resolution \
(`mcast_solicit=1`, `app_solicit=0`) and `retrans_time_ms=1`, stored as one jiffy; the \
kernel waits max(retrans_time, HZ/100), so an entry fails 2 jiffies after its timer was \
armed, 4-8 ms after the request at HZ=250 (the floor: 10 ms at HZ=100 or 1000). The next \
datagram to it puts the FAILED entry back to INCOMPLETE and makes the kernel solicit again \
at once. So every solicitation is a real first solicitation of an absent target, in the \
sending task's context, with its trigger.\n\
- A thread never sends to a target less than the floor plus one jiffy (12 ms here) after its \
last datagram: a thread that was descheduled (2 CPUs, shared) catches up only as fast as \
entries fail, instead of queueing datagrams behind INCOMPLETE entries, which solicits \
nothing (the log counts these waits as \"held back\"). A late timer softirq still makes an \
occasional datagram wait on an entry not yet failed, which is why the kernel sends a few \
per cent fewer solicitations than datagrams near the ceiling.\n\
- The tables' `gc_thresh1/2/3` are not changed: on this kernel they exist only in the root \
namespace (`net.ipv4.neigh.default.gc_thresh*` is not visible inside a child namespace) and \
apply to the one global table, so raising them would change the root namespace. The storm \
keeps its entries at 448 per table (112 per namespace and family, plus one multicast ND \
entry per namespace), under the default `gc_thresh2` (512) with room for the rest of the \
machine's entries, so on its own it never forces garbage collection of other namespaces' \
entries and never makes their resolutions fail. The note above gives the tables' peaks and \
the forced collections counted during the storms; another storm running at the same time \
(another user of the machine) can still push a table over 512.\n\
- The ceiling of this design is 2 × 448 targets ÷ 12 ms ≈ 74,700 solicitations/s. Below \
it, CPU is the limit: every datagram costs the sending thread ~5-7 µs (its own send, the \
solicitation it triggers and the peer's receive, which veth runs inline), four tcpdumps \
read every frame, and arp-trace's programs run in the sending thread too. Row 2b first runs \
the generator without arp-trace, so \"the kernel sent only N requests/s\" with arp-trace \
running can be told apart from the generator's own limit; arp-trace's CPU per request at \
each step says how far arp-trace itself would go on one core.\n\
- TCP: when the per-pair ratios spread by more than 20% of their median (a shared or busy \
machine), a TCP row says \"inconclusive\" instead of comparing with the target. The BPF \
run-time line above is then the steadier figure for the hot path: the programs' CPU time per \
second of traffic bounds what the tracer can take from it.\n\
- Counting: one tcpdump runs inside each storm namespace on eth3 (`-B 65536`, filter \
`(arp and arp[6:2] = 1) or (icmp6 and ip6[40] = 135)`, written to a pcap file and counted \
by xtask: ARP requests and neighbour solicitations), and is stopped 1.2 s after the storm: \
it reads its capture ring in blocks handed over when full or after 1 s, and loses the block \
in progress when stopped (3 % of a 3 s storm when stopped 0.3 s after it, with no drop \
counted). arp-trace runs with `--json --netns <ns> ...` (each storm namespace) `-i eth3` to \
a file, and an ARP request or neighbour solicitation counts as captured and attributed when \
its `trigger.pid` is the generating process. `lost` is arp-trace's own \
ring-buffer loss counter. CPU seconds are wait4()'s rusage of the arp-trace process (user + \
system, JSON output included); peak RSS is its VmHWM read just before it is stopped \
(ru_maxrss would also count the pre-exec copy of xtask).\n\
- Start-up: cold = right after `echo 3 > /proc/sys/vm/drop_caches` (a cache drop, not a \
configuration change); warm = the run right after it. Timed from spawn to the ready file's \
appearance (polled every 0.5 ms).\n\
- The TCP figures run iperf3 between two namespaces over a veth pair (192.0.2.1 → 192.0.2.2), \
arp-trace tracing every namespace with `-q`; on this path its programs run on every frame \
queued to a device (`net_dev_queue`) and every dropped skb (`kfree_skb`). Rows 1 and 1b \
keep one iperf3 connection open (`-i 0.25 --forceflush`, lines timestamped as they arrive) \
and start and stop arp-trace beside it; a window counts the intervals wholly inside it, from \
0.3 s after the ready file (or after arp-trace exited) for 3 s. Row 1 binds client and server \
to one CPU (`iperf3 -A`), where the veth softirq runs too: the transfer is CPU-bound there, \
so whatever the hooks cost is taken from throughput, and no scheduler placement varies \
between windows. Row 1 is the figure of record: the worst case for the \
tracer. Rows 1b and 1c leave placement to the scheduler, \
which moves throughput by ±10-30% between seconds here; row 1c starts a new \
iperf3 client for every run (first second omitted), so each ratio also carries the \
difference between two connections' set-up and placement.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_survives_a_rewrite() {
        let old = format!("# old table\n{KEEP_MARKER}\n## Before/after\nx\n");
        let doc = keep_history("# new table\n".into(), &old);
        assert_eq!(
            doc,
            format!("# new table\n{KEEP_MARKER}\n## Before/after\nx\n")
        );
        assert_eq!(keep_history("n".into(), "no marker"), "n");
    }
}
