//! `diff`'s text output: both sides, the groups, the snapshot and recorded changes, the
//! conflicts and the verdict, every line through `visible`.

use std::io::Write;

use arp_trace_model::{visible, Family};

use super::compared::{short, Comparison, Side};
use crate::sinks::text::describe_change;

/// One line of text output, every character a terminal would act on shown as an escape
/// (names and snapshot values come from the traces).
fn put(w: &mut impl Write, line: &str) -> std::io::Result<()> {
    writeln!(w, "{}", visible(line))
}

pub(super) fn write_text(
    w: &mut impl Write,
    b: &Side,
    a: &Side,
    c: &Comparison,
) -> std::io::Result<()> {
    for (label, s) in [("before", b), ("after", a)] {
        put(
            w,
            &format!(
                "{label}: {} ({}, {}): {} ARP requests",
                s.file,
                s.header.hostname,
                s.header.start_time.rfc3339(),
                s.groups.values().sum::<u64>()
            ),
        )?;
    }
    for (label, s) in [("before", b), ("after", a)] {
        if s.folded > 0 {
            put(
                w,
                &format!(
                    "{label}: {} requests in groups beyond the summary's caps ({} rows, {} \
                     MiB) not compared",
                    s.folded,
                    crate::sinks::summary::MAX_ROWS,
                    crate::sinks::summary::MAX_BYTES >> 20
                ),
            )?;
        }
    }
    put(w, "requests per namespace/interface, sender IP, reason:")?;
    for r in &c.rows {
        put(
            w,
            &format!(
                "  {:<9} {}/{} {} {} reason {}{}: {} -> {}",
                r.change,
                r.key.netns,
                r.key.ifname,
                match r.key.family {
                    Family::Ipv4 => "tell",
                    Family::Ipv6 => "ND from",
                },
                r.key.sender_ip,
                r.key.reason.as_deref().unwrap_or("unknown"),
                match r.foreign {
                    Some(true) => " [foreign sender]",
                    _ => "",
                },
                r.before,
                r.after
            ),
        )?;
    }
    if c.changes.is_empty() {
        put(w, "no sysctl or address changes between the snapshots")?;
    } else {
        put(w, "sysctl and address changes between the snapshots:")?;
        for ch in &c.changes {
            let p = ch.path.strip_prefix("namespaces.").unwrap_or(&ch.path);
            put(
                w,
                &format!("  {p}: {} -> {}", short(&ch.before), short(&ch.after)),
            )?;
        }
    }
    for (label, s) in [("before", b), ("after", a)] {
        if s.recorded.is_empty() {
            continue;
        }
        put(w, &format!("changes recorded during {label}:"))?;
        for ch in &s.recorded {
            put(
                w,
                &format!(
                    "  {} {}",
                    ch.time.rfc3339(),
                    describe_change(ch, s.header.own_netns)
                ),
            )?;
        }
        if s.recorded_omitted > 0 {
            put(w, &format!("  and {} more, not kept", s.recorded_omitted))?;
        }
    }
    if !c.conflicts.is_empty() {
        put(w, "conflicts per namespace/interface, address, kind:")?;
        for r in &c.conflicts {
            put(
                w,
                &format!(
                    "  {:<9} {}/{} {} {}: {} -> {}",
                    r.change, r.key.netns, r.key.ifname, r.key.ip, r.key.kind, r.before, r.after
                ),
            )?;
        }
    }
    put(w, &format!("verdict: {}", c.verdict))
}
