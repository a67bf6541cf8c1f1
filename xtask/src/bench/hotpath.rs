//! Figure 1d: what the transmit hook costs per frame, from the kernel's own accounting
//! (`run_time_ns ÷ run_cnt` of `net_dev_queue`), on IPv4 TCP and on IPv6 TCP: every frame
//! of both passes the hook, and only ARP and neighbour discovery may cost more than the
//! protocol check. With `--baseline BIN` the same is measured for that binary, alternating
//! with this one in the same run, so a change to the hot path is a difference of two
//! figures taken side by side.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use super::noop::Noop;
use super::stats::{list, median, Row, Verdict};
use super::system::{
    check_interrupt, netns, output, pause, Netns, NetnsExt, Proc, TmpFiles, Tracer,
};
use super::tcp::{stat_delta, stat_sum, BpfStats, ProgStat};

const V4_SERVER: &str = "192.0.2.2";
const V6_SERVER: &str = "2001:db8::2";
const PROGRAM: &str = "net_dev_queue";
/// The most the hook may add per frame before a change counts as measurable, ns.
const ALLOWED_NS: f64 = 10.0;
/// The tracepoints arp-trace hooks that fire for all traffic, not only for neighbour
/// resolution: each is held to the do-nothing program on the same tracepoint (figure 1e).
pub(super) const ALL_TRAFFIC: [&str; 5] = [
    "net_dev_queue",
    "netif_receive_skb",
    "softirq_entry",
    "softirq_exit",
    "kfree_skb",
];
/// Issue 14: a hook for all traffic costs at most this much above the do-nothing program, ns.
pub(super) const ABOVE_NOOP_NS: f64 = 40.0;
/// Fewer runs than this in a round make a per-call figure a guess (one slow call moves it).
pub(super) const MIN_RUNS: u64 = 1000;

/// What every program ran during IPv4 TCP and during IPv6 TCP, in one round.
#[derive(Debug, Clone, Default)]
pub(super) struct Phases {
    pub(super) v4: Vec<ProgStat>,
    pub(super) v6: Vec<ProgStat>,
}

/// Which traffic a per-call figure covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Traffic {
    V4,
    V6,
    Both,
}

impl Phases {
    /// `hook`'s runs and run time during `t`, if it is one of the programs.
    pub(super) fn calls(&self, hook: &str, t: Traffic) -> Option<ProgStat> {
        let of = |v: &[ProgStat]| v.iter().find(|p| p.name == hook).cloned();
        match t {
            Traffic::V4 => of(&self.v4),
            Traffic::V6 => of(&self.v6),
            Traffic::Both => stat_sum(of(&self.v4).iter().chain(of(&self.v6).iter()))
                .into_iter()
                .next(),
        }
    }
}

/// Per-round programs' counters of one binary (or of the do-nothing program).
#[derive(Default)]
pub(super) struct Cost {
    pub(super) rounds: Vec<Phases>,
}

impl Cost {
    /// ns per `net_dev_queue` run, per round (NaN when it did not run).
    pub(super) fn frame_ns(&self, t: Traffic) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|r| {
                r.calls(PROGRAM, t)
                    .filter(|p| p.run_cnt > 0)
                    .map_or(f64::NAN, |p| p.run_time_ns as f64 / p.run_cnt as f64)
            })
            .collect()
    }
}

pub(super) struct HotPath {
    pub(super) this: Cost,
    pub(super) baseline: Option<Cost>,
    pub(super) noop: Cost,
    pub(super) secs: u32,
}

fn iperf(client: &Netns, server: &str, secs: u32) -> Result<()> {
    output(
        client
            .exec("iperf3")
            .args(["-c", server, "-t", &secs.to_string()]),
    )?;
    Ok(())
}

/// IPv4 TCP, then IPv6 TCP, with `read` giving the programs' counters before, between and
/// after.
fn phases(client: &Netns, secs: u32, read: &dyn Fn() -> Result<Vec<ProgStat>>) -> Result<Phases> {
    let start = read()?;
    iperf(client, V4_SERVER, secs)?;
    let mid = read()?;
    iperf(client, V6_SERVER, secs)?;
    let end = read()?;
    Ok(Phases {
        v4: stat_delta(&start, &mid),
        v6: stat_delta(&mid, &end),
    })
}

/// Who a round measures.
#[derive(Clone, Copy)]
enum Who<'a> {
    Tracer(&'a Path),
    Noop,
}

/// One round for one binary, or for the do-nothing programs.
fn round(who: Who, client: &Netns, secs: u32, files: &mut TmpFiles) -> Result<Phases> {
    match who {
        Who::Tracer(bin) => {
            let t = Tracer::start(bin, &["-q"], files, "hotpath")?;
            pause(Duration::from_millis(300))?;
            let pid = t.proc.pid();
            let measured = BpfStats::enable()
                .and_then(|stats| phases(client, secs, &|| Ok(stats.read(pid)?.0)));
            t.stop()?;
            measured
        }
        Who::Noop => {
            let noop = Noop::attach(&ALL_TRAFFIC)?;
            pause(Duration::from_millis(300))?;
            let stats = BpfStats::enable()?;
            let measured = phases(client, secs, &|| noop.read());
            drop(stats);
            measured
        }
    }
}

pub(super) fn bench_hot_path(
    bin: &Path,
    baseline: Option<&Path>,
    quick: bool,
    files: &mut TmpFiles,
) -> Result<HotPath> {
    let (rounds, secs) = if quick { (1, 1) } else { (5, 2) };
    let a = netns("ha")?;
    let b = netns("hb")?;
    for ns in [&a, &b] {
        // IPv6 back on, without link-local addresses: no DAD or router solicitations of
        // their own, and a solicitation for the peer still leaves from the global address.
        for (k, v) in [
            ("net/ipv6/conf/default/addr_gen_mode", "1"),
            ("net/ipv6/conf/default/accept_dad", "0"),
            ("net/ipv6/conf/all/disable_ipv6", "0"),
            ("net/ipv6/conf/default/disable_ipv6", "0"),
        ] {
            ns.try_sysctl(k, v)?;
        }
    }
    a.try_ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b.name(),
    ])?;
    for (ns, v4, v6) in [
        (&a, "192.0.2.1/24", "2001:db8::1/64"),
        (&b, "192.0.2.2/24", "2001:db8::2/64"),
    ] {
        ns.try_ip(&["addr", "add", v4, "dev", "eth0"])?;
        ns.try_ip(&["-6", "addr", "add", v6, "dev", "eth0", "nodad"])?;
        ns.try_ip(&["link", "set", "eth0", "up"])?;
    }
    // A veth has carrier only once both ends are up.
    a.wait_up("eth0")?;
    b.wait_up("eth0")?;
    let _server = Proc::spawn(
        b.exec("iperf3")
            .args(["-s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        "iperf3 server",
    )?;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while iperf(&a, V4_SERVER, 1).is_err() || iperf(&a, V6_SERVER, 1).is_err() {
        if std::time::Instant::now() > end {
            bail!(
                "iperf3 server in {} did not answer on both families",
                b.name()
            );
        }
        pause(Duration::from_millis(200))?;
    }
    let mut this = Cost::default();
    let mut base: Option<Cost> = None;
    let mut noop = Cost::default();
    for i in 0..rounds {
        check_interrupt()?;
        // This, baseline, do-nothing; then the reverse: drift of the machine favours none.
        let mut order = vec![(Who::Tracer(bin), 0)];
        order.extend(baseline.map(|b| (Who::Tracer(b), 1)));
        order.push((Who::Noop, 2));
        if i % 2 == 1 {
            order.reverse();
        }
        for (who, slot) in order {
            let p = round(who, &a, secs, files)?;
            match slot {
                0 => this.rounds.push(p),
                1 => base.get_or_insert_with(Cost::default).rounds.push(p),
                _ => noop.rounds.push(p),
            }
        }
        let f = |c: &Cost, t| c.frame_ns(t).last().copied().unwrap_or(f64::NAN);
        eprintln!(
            "xtask bench: hot path round {}/{rounds}: net_dev_queue IPv4 {:.0} ns, IPv6 {:.0} ns per frame (do-nothing {:.0}, {:.0})",
            i + 1,
            f(&this, Traffic::V4),
            f(&this, Traffic::V6),
            f(&noop, Traffic::V4),
            f(&noop, Traffic::V6),
        );
    }
    Ok(HotPath {
        this,
        baseline: base,
        noop,
        secs,
    })
}

/// Row 1d.
pub(super) fn hot_path_row(h: &HotPath) -> Row {
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let (tv4, tv6) = (h.this.frame_ns(Traffic::V4), h.this.frame_ns(Traffic::V6));
    let (v4, v6) = (m(&tv4), m(&tv6));
    let rounds = tv4.len();
    let mut figure = format!(
        "{PROGRAM} cost per frame (BPF run time ÷ runs, `kernel.bpf_stats_enabled=1` for these \
         runs only) on IPv4 TCP and on IPv6 TCP over veth, {rounds} rounds of {s} s each; this \
         build per round: IPv4 {} ns, IPv6 {} ns",
        list(&tv4, 0),
        list(&tv6, 0),
        s = h.secs
    );
    let Some(b) = &h.baseline else {
        return Row {
            id: "1d".into(),
            figure,
            measured: format!("IPv4 {v4:.0} ns, IPv6 {v6:.0} ns"),
            target: format!("≤ baseline + {ALLOWED_NS:.0} ns (run with --baseline)"),
            verdict: Verdict::Report,
        };
    };
    let (bv4, bv6) = (b.frame_ns(Traffic::V4), b.frame_ns(Traffic::V6));
    let (b4, b6) = (m(&bv4), m(&bv6));
    figure.push_str(&format!(
        "; baseline (--baseline) per round: IPv4 {} ns, IPv6 {} ns, alternating with this build",
        list(&bv4, 0),
        list(&bv6, 0)
    ));
    let worst = (v4 - b4).max(v6 - b6);
    Row {
        id: "1d".into(),
        figure,
        measured: format!(
            "IPv4 {v4:.0} ns (baseline {b4:.0}), IPv6 {v6:.0} ns (baseline {b6:.0}): {:+.0} and {:+.0} ns",
            v4 - b4,
            v6 - b6
        ),
        target: format!("≤ baseline + {ALLOWED_NS:.0} ns, both families"),
        verdict: Verdict::at_most((!worst.is_nan()).then_some(worst), ALLOWED_NS),
    }
}

/// One line of row 1e: a hook on the traffic it is measured on.
const HOOK_LINES: [(&str, Traffic, &str); 6] = [
    ("net_dev_queue", Traffic::V4, "net_dev_queue on IPv4 TCP"),
    ("net_dev_queue", Traffic::V6, "net_dev_queue on IPv6 TCP"),
    ("netif_receive_skb", Traffic::Both, "netif_receive_skb"),
    ("softirq_entry", Traffic::Both, "softirq_entry"),
    ("softirq_exit", Traffic::Both, "softirq_exit"),
    ("kfree_skb", Traffic::Both, "kfree_skb"),
];

/// ns per call of `hook` in each round; `None` for a round where it ran fewer than
/// [`MIN_RUNS`] times, and no list at all when the build does not hook it.
fn per_call(c: &Cost, hook: &str, t: Traffic) -> Option<Vec<Option<f64>>> {
    let calls: Vec<Option<ProgStat>> = c.rounds.iter().map(|r| r.calls(hook, t)).collect();
    calls.iter().any(Option::is_some).then(|| {
        calls
            .iter()
            .map(|p| {
                p.as_ref()
                    .filter(|p| p.run_cnt >= MIN_RUNS)
                    .map(|p| p.run_time_ns as f64 / p.run_cnt as f64)
            })
            .collect()
    })
}

fn fewest_runs(c: &Cost, hook: &str, t: Traffic) -> u64 {
    c.rounds
        .iter()
        .map(|r| r.calls(hook, t).map_or(0, |p| p.run_cnt))
        .min()
        .unwrap_or(0)
}

/// Row 1e: each hook for all traffic against the do-nothing program on its tracepoint.
pub(super) fn hook_cost_row(h: &HotPath) -> Row {
    let show = |v: &[Option<f64>]| {
        v.iter()
            .map(|x| x.map_or("-".to_string(), |x| format!("{x:.0}")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut rounds_text = Vec::new();
    let mut measured = Vec::new();
    let mut worst: Option<f64> = None;
    for (hook, t, label) in HOOK_LINES {
        let Some(this) = per_call(&h.this, hook, t) else {
            measured.push(format!("{label}: not hooked by this build"));
            continue;
        };
        let noop = per_call(&h.noop, hook, t).unwrap_or_default();
        let diffs: Vec<f64> = this
            .iter()
            .zip(&noop)
            .filter_map(|(a, b)| Some((*a)? - (*b)?))
            .collect();
        let base = h
            .baseline
            .as_ref()
            .and_then(|b| per_call(b, hook, t))
            .map_or(String::new(), |b| format!("; baseline {}", show(&b)));
        rounds_text.push(format!(
            "{label}: this build {}; do-nothing {}; difference {}{base}",
            show(&this),
            show(&noop),
            list(&diffs, 0)
        ));
        // Every round must count: a hook measured in some rounds only is not measured.
        if diffs.len() < this.len() || diffs.is_empty() {
            measured.push(format!(
                "{label}: not measured (fewest runs in a round: {} this build, {} do-nothing; {MIN_RUNS} needed)",
                fewest_runs(&h.this, hook, t),
                fewest_runs(&h.noop, hook, t)
            ));
            continue;
        }
        let m = |v: &[Option<f64>]| median(&v.iter().flatten().copied().collect::<Vec<_>>());
        let d = median(&diffs).unwrap_or(f64::NAN);
        worst = Some(worst.map_or(d, |w: f64| w.max(d)));
        measured.push(format!(
            "{label} {:+.0} ns ({} vs {} ns)",
            d,
            super::stats::opt(m(&this), 0),
            super::stats::opt(m(&noop), 0)
        ));
    }
    Row {
        id: "1e".into(),
        figure: format!(
            "per-call cost of each hook that runs for all traffic against a do-nothing program \
             (`r0 = 0; exit`, a raw tracepoint program xtask attaches to the same tracepoints) \
             during the same iperf3 TCP runs as 1d, alternating with them, {} rounds; BPF run \
             time ÷ runs, ns per call per round: {}",
            h.this.rounds.len(),
            rounds_text.join("; ")
        ),
        measured: measured.join("; "),
        target: format!("≤ do-nothing + {ABOVE_NOOP_NS:.0} ns, each hook"),
        verdict: match worst {
            Some(w) if w.is_nan() => Verdict::Report,
            w => Verdict::at_most(w, ABOVE_NOOP_NS),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::tcp::ps;
    use super::*;

    fn cost(rounds: &[(&[ProgStat], &[ProgStat])]) -> Cost {
        Cost {
            rounds: rounds
                .iter()
                .map(|(v4, v6)| Phases {
                    v4: v4.to_vec(),
                    v6: v6.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn hook_costs_against_the_do_nothing_program() {
        let this = cost(&[(
            &[
                ps("net_dev_queue", 10_000, 700_000),
                ps("netif_receive_skb", 20_000, 1_000_000),
                ps("softirq_entry", 1_000, 30_000),
                ps("kfree_skb", 3, 900),
                ps("neigh_update", 0, 0),
            ],
            &[
                ps("net_dev_queue", 10_000, 800_000),
                ps("netif_receive_skb", 20_000, 1_000_000),
                ps("softirq_entry", 1_000, 40_000),
                ps("kfree_skb", 2, 600),
            ],
        )]);
        let noop = cost(&[(
            &[
                ps("net_dev_queue", 10_000, 300_000),
                ps("netif_receive_skb", 20_000, 600_000),
                ps("softirq_entry", 2_000, 40_000),
                ps("softirq_exit", 2_000, 40_000),
                ps("kfree_skb", 1, 20),
            ],
            &[
                ps("net_dev_queue", 10_000, 300_000),
                ps("netif_receive_skb", 20_000, 600_000),
                ps("softirq_entry", 0, 0),
                ps("softirq_exit", 0, 0),
                ps("kfree_skb", 1, 20),
            ],
        )]);
        assert_eq!(this.frame_ns(Traffic::V4), vec![70.0]);
        let h = HotPath {
            this,
            baseline: None,
            noop,
            secs: 2,
        };
        let r = hook_cost_row(&h);
        assert_eq!(
            r.measured,
            "net_dev_queue on IPv4 TCP +40 ns (70 vs 30 ns); \
             net_dev_queue on IPv6 TCP +50 ns (80 vs 30 ns); \
             netif_receive_skb +20 ns (50 vs 30 ns); \
             softirq_entry +15 ns (35 vs 20 ns); \
             softirq_exit: not hooked by this build; \
             kfree_skb: not measured (fewest runs in a round: 5 this build, 2 do-nothing; 1000 needed)"
        );
        assert!(r
            .figure
            .contains("net_dev_queue on IPv4 TCP: this build 70; do-nothing 30; difference 40; "));
        assert!(r
            .figure
            .ends_with("kfree_skb: this build -; do-nothing -; difference "));
        // IPv6's +50 ns is over the 40 ns allowed.
        assert_eq!(r.verdict, Verdict::Missed);
    }
}
