//! Figures 2c-2e (issue 14): what one solicitation costs, in the kernel (all of arp-trace's
//! BPF programs' run time) and in arp-trace's own process, per solicitation tcpdump saw, for
//! this build and the `--baseline` build side by side, alternating in one run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::stats::{grouped, list, median, opt, Row, Verdict};
use super::storm::{storm_once, Storm, StormRun};
use super::system::{check_interrupt, TmpFiles};
use super::tcp::{stat_sum, ProgStat};

/// The storm rate the per-request targets are stated at.
pub(super) const RATE: u64 = 20_000;
/// A second rate, to show how the user-space figure depends on the rate.
pub(super) const SECOND_RATE: u64 = 40_000;
/// Issue 14's targets, µs per solicitation.
const KERNEL_US: f64 = 2.0;
const USER_US: f64 = 6.0;

/// Storms of one kind for this build and for the baseline.
#[derive(Default)]
pub(super) struct Pair {
    pub(super) rate: u64,
    pub(super) secs: u64,
    pub(super) this: Vec<StormRun>,
    pub(super) base: Vec<StormRun>,
}

impl Pair {
    fn has_base(&self) -> bool {
        !self.base.is_empty()
    }
}

/// `rounds` storms of `secs` at `rate` for each build, with or without BPF statistics.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    rate: u64,
    secs: u64,
    rounds: usize,
    stats: bool,
}

impl Plan {
    pub(super) fn new(rate: u64, secs: u64, rounds: usize) -> Plan {
        Plan {
            rate,
            secs,
            rounds,
            stats: false,
        }
    }
    pub(super) fn with_stats(self) -> Plan {
        Plan {
            stats: true,
            ..self
        }
    }
}

/// The storms of `plan` for this build and the baseline, alternating (this, baseline; then
/// baseline, this) so drift of the machine favours neither.
pub(super) fn alternate(
    bin: &Path,
    baseline: Option<&Path>,
    ns: &Storm,
    plan: Plan,
    files: &mut TmpFiles,
) -> Result<Pair> {
    let Plan {
        rate,
        secs,
        rounds,
        stats,
    } = plan;
    let mut p = Pair {
        rate,
        secs,
        ..Default::default()
    };
    for i in 0..rounds {
        check_interrupt()?;
        let mut order = vec![(bin, true)];
        order.extend(baseline.map(|b| (b, false)));
        if i % 2 == 1 {
            order.reverse();
        }
        for (b, mine) in order {
            let s = storm_once(b, ns, rate, Duration::from_secs(secs), files, stats)?;
            eprintln!(
                "xtask bench: {}: {} µs of arp-trace CPU{} per solicitation seen",
                if mine { "this build" } else { "baseline" },
                opt(user_us(&s), 2),
                if stats {
                    format!(", {} µs of BPF programs", opt(kernel_us(&s), 2))
                } else {
                    String::new()
                }
            );
            if mine {
                p.this.push(s);
            } else {
                p.base.push(s);
            }
        }
    }
    Ok(p)
}

/// `total` spread over `requests`; `None` when there were none.
pub(super) fn per_request(total: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| total / requests as f64)
}

/// All programs' run time per solicitation tcpdump saw, µs.
fn kernel_us(s: &StormRun) -> Option<f64> {
    let ns: u64 = s.prog.0.iter().map(|p| p.run_time_ns).sum();
    per_request(ns as f64 / 1e3, s.tcpdump)
}

/// arp-trace's user + system CPU over its whole life per solicitation tcpdump saw, µs.
fn user_us(s: &StormRun) -> Option<f64> {
    per_request(s.usage.cpu_secs * 1e6, s.tcpdump)
}

/// The same for the storm alone: without the start-up and the pause before the storm, a
/// fixed cost that would otherwise weigh more the shorter the storm.
fn storm_us(s: &StormRun) -> Option<f64> {
    let before = s.cpu_before_storm?;
    per_request((s.usage.cpu_secs - before).max(0.0) * 1e6, s.tcpdump)
}

fn values(runs: &[StormRun], f: fn(&StormRun) -> Option<f64>) -> Vec<f64> {
    runs.iter().map(|s| f(s).unwrap_or(f64::NAN)).collect()
}

/// Each program's run time per solicitation over several storms (programs summed over the
/// storms, divided by all their solicitations), ns: `name X ns`, largest first.
pub(super) fn per_program_text(runs: &[(Vec<ProgStat>, u64)]) -> String {
    let requests: u64 = runs.iter().map(|r| r.1).sum();
    let mut progs = stat_sum(runs.iter().flat_map(|r| r.0.iter()));
    progs.sort_by_key(|p| std::cmp::Reverse(p.run_time_ns));
    let v: Vec<String> = progs
        .iter()
        .filter_map(|p| {
            let ns = per_request(p.run_time_ns as f64, requests)?;
            Some(format!(
                "{} {ns:.0} ns ({:.2} runs)",
                p.name,
                p.run_cnt as f64 / requests as f64
            ))
        })
        .collect();
    if v.is_empty() {
        "n/a".into()
    } else {
        v.join(", ")
    }
}

/// A per-request row: this build's median against the target, the baseline's beside it.
/// `complete` says, for this build and the baseline, whether every run captured every
/// solicitation tcpdump saw: a build that lost some did less work per solicitation seen, so
/// its figure is low, neither a met target nor a fair comparison.
pub(super) fn per_request_row(
    id: &str,
    what: String,
    this: &[f64],
    base: Option<&[f64]>,
    target_us: f64,
    complete: (bool, bool),
) -> Row {
    let m = median(this);
    let mut figure = format!("{what}; this build per run (µs): {}", list(this, 2));
    let mut measured = format!("{} µs", opt(m, 2));
    if let Some(b) = base {
        let bm = median(b);
        let _ = write!(
            figure,
            "; baseline (--baseline) per run, alternating with this build: {}",
            list(b, 2)
        );
        let ratio = if complete.0 && complete.1 {
            format!(
                "{}× less",
                opt(bm.zip(m).filter(|(_, m)| *m > 0.0).map(|(b, m)| b / m), 1)
            )
        } else {
            "not comparable: events lost".to_string()
        };
        let _ = write!(measured, " (baseline {} µs; {ratio})", opt(bm, 2));
    }
    let mut verdict = Verdict::at_most(m, target_us);
    if !complete.0 {
        measured.push_str("; this build lost events, so the figure is low");
        if verdict == Verdict::Met {
            verdict = Verdict::Incomplete;
        }
    }
    Row {
        id: id.into(),
        figure,
        measured,
        target: format!("≤ {target_us} µs"),
        verdict,
    }
}

/// Rows 2c (kernel) and 2d, 2e (user space at two rates), and their notes.
pub(super) fn per_request_rows(
    kernel: &Pair,
    user: &[(Pair, &str)],
    rows: &mut Vec<Row>,
    notes: &mut String,
) {
    let base = |p: &Pair, f| p.has_base().then(|| values(&p.base, f));
    let all = |runs: &[StormRun]| runs.iter().all(|s| s.captured >= s.tcpdump);
    // A build that lost events did less work per solicitation seen: the row says so.
    let captured = |p: &Pair| {
        let r = |runs: &[StormRun]| {
            list(
                &runs
                    .iter()
                    .map(|s| s.captured as f64 / s.tcpdump.max(1) as f64)
                    .collect::<Vec<_>>(),
                3,
            )
        };
        let mut t = format!("; captured ÷ seen per run: this build {}", r(&p.this));
        if p.has_base() {
            let _ = write!(t, ", baseline {}", r(&p.base));
        }
        t
    };
    rows.push(per_request_row(
        "2c",
        format!(
            "kernel CPU per solicitation: all of arp-trace's BPF programs' run time \
             (`kernel.bpf_stats_enabled=1` for these storms only) ÷ ARP requests + neighbour \
             solicitations tcpdump saw, storm at {}/s for {} s, {} runs{}",
            grouped(kernel.rate),
            kernel.secs,
            kernel.this.len(),
            captured(kernel)
        ),
        &values(&kernel.this, kernel_us),
        base(kernel, kernel_us).as_deref(),
        KERNEL_US,
        // The programs run, and are counted, whether or not the ring buffer had room.
        (true, true),
    ));
    let progs = |runs: &[StormRun]| {
        per_program_text(
            &runs
                .iter()
                .map(|s| (s.prog.0.clone(), s.tcpdump))
                .collect::<Vec<_>>(),
        )
    };
    let _ = writeln!(
        notes,
        "- Kernel CPU per solicitation by program (row 2c; run time summed over the storms ÷ \
         their solicitations, with runs per solicitation): this build {}{}. The programs run \
         for the whole machine's traffic, so other users' frames add to `net_dev_queue` and \
         the softirq hooks.",
        progs(&kernel.this),
        if kernel.has_base() {
            format!("; baseline {}", progs(&kernel.base))
        } else {
            String::new()
        }
    );
    let mut why_rate = Vec::new();
    for (i, (p, source)) in user.iter().enumerate() {
        let target = if p.rate == RATE {
            format!(", storm at {}/s", grouped(p.rate))
        } else {
            format!(
                ", storm at {}/s (a second rate: the figure depends on it)",
                grouped(p.rate)
            )
        };
        let whole = |runs: &[StormRun]| list(&values(runs, user_us), 2);
        rows.push(per_request_row(
            &format!("2{}", (b'd' + i as u8) as char),
            format!(
                "user-space CPU per solicitation: arp-trace's user + system CPU during the \
                 storm (wait4 rusage less the CPU it had used when the storm began, `--json` \
                 to a file) ÷ solicitations tcpdump saw{target} for {} s, {} runs ({source}){}; \
                 over the process's whole life, start-up included: this build {}{}",
                p.secs,
                p.this.len(),
                captured(p),
                whole(&p.this),
                if p.has_base() {
                    format!(", baseline {}", whole(&p.base))
                } else {
                    String::new()
                }
            ),
            &values(&p.this, storm_us),
            base(p, storm_us).as_deref(),
            USER_US,
            (all(&p.this), all(&p.base)),
        ));
        let why = |runs: &[StormRun]| {
            runs.iter()
                .map(|s| {
                    why_text(
                        s.usage.cpu_secs,
                        s.cpu_before_storm,
                        s.sys_before_storm.map(|b| (s.usage.sys_secs - b).max(0.0)),
                        s.tcpdump,
                        s.captured,
                        s.usage.wakeups,
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        why_rate.push(format!(
            "at {}/s, this build: {}{}",
            grouped(p.rate),
            why(&p.this),
            if p.has_base() {
                format!("; baseline: {}", why(&p.base))
            } else {
                String::new()
            }
        ));
    }
    let _ = writeln!(
        notes,
        "- User-space CPU per solicitation, per run, taken apart (rows 2d, 2e): {}. wait4's \
         figure covers the process's whole life, so it includes start-up (reading BTF, loading \
         and attaching the programs) and the 0.3 s pause before the storm (CPU read from \
         `/proc/<pid>/stat` as the storm began): a fixed cost spread over the storm's \
         solicitations, which weighs more the shorter the storm and the lower the rate. The \
         rows' figure leaves it out (what each further solicitation costs); the whole-life \
         figure is beside it. \
         Wake-ups (voluntary context switches) carry a fixed cost each too (the wait, the \
         reads, the scheduler), spread over the events that piled up meanwhile. A build that \
         lost events (captured < seen) did less work per solicitation seen.",
        why_rate.join(". ")
    );
}

/// One storm run's user-space CPU taken apart: the start-up share, the rest per solicitation
/// and the system time in it (the kernel's work for the tracer: reading the ring, writing the
/// output, faults), solicitations per wake-up, and how many of those seen were captured.
pub(super) fn why_text(
    cpu_secs: f64,
    before_storm: Option<f64>,
    storm_sys: Option<f64>,
    seen: u64,
    captured: u64,
    wakeups: u64,
) -> String {
    format!(
        "{} of {cpu_secs:.2} CPU s before the storm, {} µs per solicitation without it ({} µs \
         of it system time), {} solicitations per wake-up, {captured}/{seen} captured",
        opt(before_storm, 2),
        opt(
            before_storm.and_then(|b| per_request((cpu_secs - b) * 1e6, seen)),
            2
        ),
        opt(storm_sys.and_then(|s| per_request(s * 1e6, seen)), 2),
        opt(per_request(seen as f64, wakeups), 0)
    )
}

#[cfg(test)]
mod tests {
    use super::super::tcp::ps;
    use super::*;

    #[test]
    fn per_request_arithmetic() {
        assert_eq!(per_request(3.0, 0), None);
        assert_eq!(per_request(60_000.0, 20_000), Some(3.0));
        let runs = vec![
            (vec![ps("a", 100, 1_000), ps("b", 200, 9_000)], 100),
            (vec![ps("b", 200, 11_000), ps("a", 100, 3_000)], 100),
        ];
        assert_eq!(
            per_program_text(&runs),
            "b 100 ns (2.00 runs), a 20 ns (1.00 runs)"
        );
        assert_eq!(per_program_text(&[]), "n/a");
        assert_eq!(
            why_text(1.5, Some(0.3), Some(0.24), 60_000, 59_000, 600),
            "0.30 of 1.50 CPU s before the storm, 20.00 µs per solicitation without it (4.00 µs \
             of it system time), 100 solicitations per wake-up, 59000/60000 captured"
        );
        assert_eq!(
            why_text(1.5, None, None, 0, 0, 0),
            "n/a of 1.50 CPU s before the storm, n/a µs per solicitation without it (n/a µs of \
             it system time), n/a solicitations per wake-up, 0/0 captured"
        );
    }

    #[test]
    fn per_request_row_compares_with_target_and_baseline() {
        let r = per_request_row(
            "2c",
            "x".into(),
            &[1.0, 3.0, 1.5],
            Some(&[15.0, 16.0]),
            2.0,
            (true, true),
        );
        assert_eq!(r.measured, "1.50 µs (baseline 15.50 µs; 10.3× less)");
        assert_eq!(
            r.figure,
            "x; this build per run (µs): 1.00 3.00 1.50; baseline (--baseline) per run, \
             alternating with this build: 15.00 16.00"
        );
        assert_eq!(r.target, "≤ 2 µs");
        assert_eq!(r.verdict, Verdict::Met);
        let r = per_request_row("2d", "y".into(), &[7.0], None, 6.0, (true, true));
        assert_eq!(r.measured, "7.00 µs");
        assert_eq!(r.verdict, Verdict::Missed);
        // A run with no solicitations seen makes the figure unknown, not zero.
        let r = per_request_row("2d", "y".into(), &[f64::NAN], None, 6.0, (true, true));
        assert_eq!(r.verdict, Verdict::Report);
        // Lost events: under the target is not a met target, and no ratio is drawn.
        let r = per_request_row("2e", "z".into(), &[5.0], Some(&[3.0]), 6.0, (false, false));
        assert_eq!(
            r.measured,
            "5.00 µs (baseline 3.00 µs; not comparable: events lost); this build lost events, \
             so the figure is low"
        );
        assert_eq!(r.verdict, Verdict::Incomplete);
        let r = per_request_row("2e", "z".into(), &[9.0], Some(&[3.0]), 6.0, (false, true));
        assert_eq!(r.verdict, Verdict::Missed);
    }
}
