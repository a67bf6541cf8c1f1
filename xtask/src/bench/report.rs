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
absent addresses to solicit. The storm namespace has one veth, eth3 with 198.51.100.10/24 and \
203.0.113.10/24, whose peer eth4 has no address (nobody answers), and cycles UDP datagrams \
(from one unbound socket, port 9) round-robin over the 506 other host addresses of those two \
prefixes. eth3's own neighbour parameters in that namespace are set to one request per \
resolution (`mcast_solicit=1`, `app_solicit=0`) and `retrans_time_ms=10`, the kernel's floor: \
an entry fails about 10 ms after its request, and the next datagram to it (25 ms later at \
20,000/s) puts the FAILED entry back to INCOMPLETE and makes the kernel send a new request at \
once. So every request is a real first solicitation of an absent target, in the sending task's \
context, with its trigger.\n\
- The neighbour table's `gc_thresh1/2/3` are not changed: on this kernel they exist only in \
the root namespace (`net.ipv4.neigh.default.gc_thresh*` is not visible inside a child \
namespace) and apply to the one global ARP table, so raising them would change the root \
namespace. The design keeps the storm's entries at 506, under the default `gc_thresh2` (512) \
and well under `gc_thresh3` (1024), so it never forces garbage collection of other \
namespaces' entries and never makes their resolutions fail.\n\
- The ceiling of this design is 506 targets ÷ the time an entry takes from its request to \
FAILED: at least 10 ms, but with HZ=250 timer granularity about 16-24 ms in practice, i.e. \
roughly 21,000-30,000 requests/s. Above it datagrams reach entries still INCOMPLETE and are \
queued, not solicited, so \"the kernel sent only N requests/s\" in the limit row means this \
generator design gave way, not arp-trace; the CPU per request above says how far arp-trace \
itself would go.\n\
- TCP: when the per-pair ratios spread by more than 20% of their median (a shared or busy \
machine), a TCP row says \"inconclusive\" instead of comparing with the target. The BPF \
run-time line above is then the steadier figure for the hot path: the programs' CPU time per \
second of traffic bounds what the tracer can take from it.\n\
- Counting: tcpdump runs inside the storm namespace on eth3 (`-B 65536`, filter \
`arp[6:2] = 1`, written to a pcap file and counted by xtask); arp-trace runs with \
`--json --netns <storm namespace> -i eth3` to a file, and a request counts as captured and \
attributed when its `trigger.pid` is the generating process. `lost` is arp-trace's own \
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
