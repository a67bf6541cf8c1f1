//! Records in words, as the terminal, the summary, pcapng comments and `diff` print them:
//! tcpdump-like descriptions, the `netns/interface` label, the trigger, the explanation lines
//! under a request, a change of facts, and local wall-clock time.

use arp_trace_model::{
    ArpEvent, ArpOp, ChangeCause, ChangeKind, Conflict, ConflictKind, FactsChange, Mac, NdiscEvent,
    NdiscOp, NeighChange, NeighFailed, NudState, Origin, Task, Trigger, Verdict,
};

/// `srv/eth3` for a named namespace, `eth3` in the tracer's own, `4026532281/eth3` otherwise;
/// `own` is the tracer's namespace.
pub fn label(netns_name: Option<&str>, netns: u32, ifname: &str, own: Option<u32>) -> String {
    match netns_name {
        Some(n) => format!("{n}/{ifname}"),
        None if own == Some(netns) => ifname.to_string(),
        None => format!("{netns}/{ifname}"),
    }
}

/// The label of an event's interface.
pub fn where_label(ev: &ArpEvent<'_>, own: Option<u32>) -> String {
    label(ev.netns_name.as_deref(), ev.netns, &ev.ifname, own)
}

/// The event in tcpdump's words, without the timestamp; `received ARP ...` for a frame that
/// came in from the wire.
pub fn describe(ev: &ArpEvent<'_>) -> String {
    let what = describe_frame(ev);
    if ev.received() {
        format!("received {what}")
    } else {
        what
    }
}

fn describe_frame(ev: &ArpEvent<'_>) -> String {
    match ev.op {
        ArpOp::Request if ev.unicast => format!(
            "ARP who-has {} ({}) tell {} ({}), unicast",
            ev.target_ip, ev.target_mac, ev.sender_ip, ev.sender_mac
        ),
        ArpOp::Request => {
            format!(
                "ARP who-has {} tell {} ({})",
                ev.target_ip, ev.sender_ip, ev.sender_mac
            )
        }
        ArpOp::Reply => format!(
            "ARP reply {} is-at {} to {} ({})",
            ev.sender_ip, ev.sender_mac, ev.target_ip, ev.target_mac
        ),
    }
}

/// A conflict without time and place:
/// `CONFLICT ip_on_two_links 203.0.113.10 at 02:00:00:00:00:13 (at 02:00:00:00:00:15 on eth5)`.
pub fn describe_conflict(c: &Conflict<'_>) -> String {
    let other = c.other_ifname.as_deref().unwrap_or("?");
    let detail = match c.kind {
        ConflictKind::IpMoved => format!(
            "was at {}{}{}",
            c.other_mac.map_or("?".to_string(), |m| m.to_string()),
            if c.gratuitous { ", gratuitous" } else { "" },
            match c.overwritten {
                Some(true) => ", the kernel's entry overwritten",
                Some(false) => ", the kernel's entry not overwritten",
                None => "",
            }
        ),
        ConflictKind::IpOnTwoLinks => format!(
            "at {} on {other}",
            c.other_mac.map_or("?".to_string(), |m| m.to_string())
        ),
        ConflictKind::ForeignSenderReceived => match &c.other_ifname {
            Some(o) => format!("in none of {}'s subnets; in {o}'s", c.ifname),
            None => format!("in none of {}'s subnets", c.ifname),
        },
        ConflictKind::DuplicateAddress => format!(
            "this namespace's own address on {other}{}",
            if c.probe { ", probed for" } else { "" }
        ),
    };
    let seen = if c.frames > 1 {
        format!(", {} frames", c.frames)
    } else {
        String::new()
    };
    format!("CONFLICT {} {} at {} ({detail}{seen})", c.kind, c.ip, c.mac)
}

/// A neighbour entry the kernel changed: before, after, and why.
pub fn describe_neigh_change(c: &NeighChange<'_>) -> String {
    let side = |mac: Option<Mac>, state: NudState| match mac {
        Some(m) => format!("{m} ({})", state.name()),
        None => state.name().to_string(),
    };
    let by = match (c.cause, &c.frame, &c.task) {
        (ChangeCause::ReceivedArp, Some(f), _) => format!(
            "received {} {} is-at {}{}",
            match f.op {
                ArpOp::Request => "request from",
                ArpOp::Reply => "reply:",
            },
            f.sender_ip,
            f.sender_mac,
            if f.gratuitous { " (gratuitous)" } else { "" }
        ),
        (ChangeCause::Timer, _, _) => "its timer (the unicast probes went unanswered)".into(),
        (cause, _, task) => by_whom(cause, task.as_ref()),
    };
    format!(
        "NEIGH {} {} -> {}, by {by}",
        c.ip,
        side(c.old_mac, c.old_state),
        side(c.new_mac, c.new_state)
    )
}

/// The line under a conflict that names this host's own request behind it.
pub fn conflict_cause_lines(c: &Conflict<'_>, own: Option<u32>) -> Vec<String> {
    let Some(k) = &c.cause else {
        return Vec::new();
    };
    let mut out = vec![format!(
        "    sent by {}: ARP who-has {} tell {} at {}",
        label(k.netns_name.as_deref(), k.netns, &k.ifname, own),
        k.target_ip,
        k.sender_ip,
        local_clock_micros(k.time.0)
    )];
    if let Some(e) = &k.explanation {
        out.push(format!("    why: {e}"));
    }
    out
}

/// An ND frame in tcpdump's words, without the timestamp:
/// `IP6 fe80::3 > ff02::1:ff00:44: ICMP6, neighbor solicitation, who has 2001:db8:3::44`.
pub fn describe_ndisc(ev: &NdiscEvent<'_>) -> String {
    let what = match ev.op {
        NdiscOp::Solicit => format!("neighbor solicitation, who has {}", ev.target_ip),
        NdiscOp::Advert => format!("neighbor advertisement, tgt is {}", ev.target_ip),
    };
    format!("IP6 {} > {}: ICMP6, {what}", ev.sender_ip, ev.dst_ip)
}

/// ` <- icmpv6 2001:db8:5::1 > 2001:db8:3::44 type 128 ping[4242]` for solicitations with a
/// trigger.
pub fn ndisc_trigger_suffix(ev: &NdiscEvent<'_>) -> String {
    match (&ev.op, &ev.trigger) {
        (NdiscOp::Solicit, Some(t)) if !ev.user_socket => format!("  <- {}", describe_trigger(t)),
        _ => String::new(),
    }
}

/// `udp 203.0.113.10:41000 > 198.51.100.20:9 python3[4242]`
pub fn describe_trigger(t: &Trigger<'_>) -> String {
    let mut s = String::with_capacity(96);
    put_trigger(&mut s, t);
    s
}

/// `python3[4242]` appended to `s`: explanations and trigger descriptions name processes so.
pub fn put_task(s: &mut String, comm: &str, pid: u32) {
    s.push_str(comm);
    s.push('[');
    s.push_str(arp_trace_model::text::decimal(pid.into(), &mut [0; 20]));
    s.push(']');
}

/// [`describe_trigger`] appended to `s`.
pub fn put_trigger(s: &mut String, t: &Trigger<'_>) {
    // Built by pushes, not format!: every explanation of a storm's requests names its trigger.
    s.push_str(&t.proto);
    s.push(' ');
    // An IPv6 address is bracketed before its port, as in a URL: `[2001:db8::1]:41000`.
    let end = |s: &mut String, a: std::net::IpAddr, port: Option<u16>| {
        let mut buf = [0; 45];
        let text = arp_trace_model::ip_text(a, &mut buf);
        match port {
            Some(p) if a.is_ipv6() => {
                s.push('[');
                s.push_str(text);
                s.push_str("]:");
                s.push_str(arp_trace_model::text::decimal(p.into(), &mut [0; 20]));
            }
            Some(p) => {
                s.push_str(text);
                s.push(':');
                s.push_str(arp_trace_model::text::decimal(p.into(), &mut [0; 20]));
            }
            None => s.push_str(text),
        }
    };
    let ports = t.sport.zip(t.dport);
    end(s, t.src, ports.map(|p| p.0));
    s.push_str(" > ");
    end(s, t.dst, ports.map(|p| p.1));
    if let (None, Some(ty)) = (ports, t.icmp_type) {
        s.push_str(" type ");
        s.push_str(arp_trace_model::text::decimal(ty.into(), &mut [0; 20]));
    }
    match t.origin {
        Origin::Local => match (&t.comm, t.pid) {
            (Some(c), Some(p)) => {
                s.push(' ');
                put_task(s, c, p);
            }
            _ => s.push_str(" (local socket, process gone)"),
        },
        Origin::Kernel => s.push_str(" (kernel)"),
        Origin::PacketSocket => match (&t.comm, t.pid) {
            (Some(c), Some(p)) => s.push_str(&format!(" {c}[{p}] (packet socket)")),
            _ => s.push_str(" (packet socket, process unknown)"),
        },
        Origin::Forwarded => s.push_str(&format!(
            " (forwarded from {})",
            t.in_ifname
                .as_deref()
                .map(str::to_string)
                .unwrap_or_else(|| format!("ifindex {}", t.in_ifindex.unwrap_or(0)))
        )),
    }
}

/// ` <- udp 203.0.113.10:41000 > 198.51.100.20:9 python3[4242]` for requests with a trigger.
pub fn trigger_suffix(ev: &ArpEvent<'_>) -> String {
    match (&ev.op, &ev.trigger) {
        (ArpOp::Request, Some(t)) if !ev.received() => format!("  <- {}", describe_trigger(t)),
        _ => String::new(),
    }
}

/// Who made a table change or failed an entry: the process for `netlink` and `task`,
/// else the cause in words.
fn by_whom(cause: ChangeCause, task: Option<&Task<'_>>) -> String {
    match (cause, task) {
        (ChangeCause::Netlink, Some(t)) => format!("{}[{}] over netlink", t.comm, t.pid),
        (ChangeCause::Task, Some(t)) => format!("{}[{}]", t.comm, t.pid),
        (cause, _) => cause.code().replace('_', " "),
    }
}

/// `ARP 198.51.100.99 failed after 3 requests; dropped 1 packet: udp ... python3[4242]`;
/// `ND 2001:db8:3::44 failed, no solicitation sent; ...` for IPv6.
pub fn describe_failed(f: &NeighFailed<'_>) -> String {
    let n = f.dropped.len() as u64 + f.dropped_omitted;
    let plural = |k: u64| if k == 1 { "" } else { "s" };
    let tries = if f.reason.is_some() {
        "no solicitation sent".to_string()
    } else {
        format!(
            "after {} {}{}",
            f.attempts,
            if f.target_ip.is_ipv4() {
                "request"
            } else {
                "solicitation"
            },
            plural(f.attempts as u64)
        )
    };
    // An update failed it (`ip neigh del` while it resolved), not its timer.
    let by = match (f.cause, &f.task) {
        (None | Some(ChangeCause::Timer), _) => String::new(),
        (Some(c), task) => format!(", by {}", by_whom(c, task.as_ref())),
    };
    let mut s = format!(
        "{} {} failed{}{tries}{by}; dropped {n} packet{}",
        if f.target_ip.is_ipv4() { "ARP" } else { "ND" },
        f.target_ip,
        if f.reason.is_some() { ", " } else { " " },
        plural(n)
    );
    for (i, d) in f.dropped.iter().enumerate() {
        s.push_str(if i == 0 { ": " } else { ", " });
        s.push_str(&describe_trigger(d));
    }
    s
}

/// The `why`, `effect`, `fix`, `persist` (and with `verbose`, `trade-off`) lines of a verdict.
pub fn verdict_lines(v: &Verdict<'_>, verbose: bool) -> Vec<String> {
    let mut out = vec![format!("    why ({}): {}", v.reason, v.explanation)];
    if let Some(c) = &v.consequence {
        out.push(format!("    effect: {c}"));
    }
    if let Some(r) = &v.remedy {
        out.push(format!("    fix: {}", r.command));
        out.push(format!("    persist: {}", r.persistent));
        if verbose {
            out.push(format!("    trade-off: {}", r.tradeoff));
        }
    }
    out
}

/// The lines under an ND frame: always for a foreign source, for every frame with `verbose`.
pub fn ndisc_explanation_lines(ev: &NdiscEvent<'_>, verbose: bool) -> Vec<String> {
    match &ev.verdict {
        Some(v) if v.foreign_sender || verbose => verdict_lines(v, verbose),
        _ => Vec::new(),
    }
}

/// The lines under a failure the kernel never sent a solicitation for: always, since
/// nothing on the wire shows it.
pub fn failed_lines(f: &NeighFailed<'_>, verbose: bool) -> Vec<String> {
    let (Some(reason), Some(e)) = (f.reason, &f.explanation) else {
        return Vec::new();
    };
    let v = Verdict {
        foreign_sender: false,
        reason,
        explanation: e.clone(),
        consequence: None,
        remedy: f.remedy.clone(),
    };
    verdict_lines(&v, verbose)
}

/// The lines under a request saying why it carries its sender: always for a foreign sender,
/// for every request with `verbose`.
pub fn explanation_lines(ev: &ArpEvent<'_>, verbose: bool) -> Vec<String> {
    let mut out = Vec::new();
    match &ev.verdict {
        Some(v) if v.foreign_sender || verbose => out = verdict_lines(v, verbose),
        None if verbose && ev.op == ArpOp::Request => {
            if let Some(e) = &ev.facts_error {
                out.push(format!(
                    "    why: unknown, the namespace's facts are missing: {e}"
                ));
            }
        }
        _ => {}
    }
    out
}

/// The change without time and place: `arp_announce 0 -> 2`, `+198.51.100.11/24`.
pub fn describe_change_only(c: &FactsChange<'_>) -> String {
    let opt = |v: Option<i32>| v.map_or("none".to_string(), |v| v.to_string());
    match c.change {
        ChangeKind::ArpAnnounce => {
            format!("arp_announce {} -> {}", opt(c.before), opt(c.after))
        }
        ChangeKind::AddrAdded | ChangeKind::AddrRemoved => format!(
            "{}{}/{}",
            if c.change == ChangeKind::AddrAdded {
                '+'
            } else {
                '-'
            },
            c.addr.map_or("?".to_string(), |a| a.to_string()),
            opt(c.prefix_len.map(i32::from))
        ),
        ChangeKind::Watched => {
            let mut parts = Vec::new();
            if let Some(m) = &c.arp_announce {
                let mut ann: Vec<String> = Vec::new();
                if let Some(all) = m.get("all") {
                    ann.push(format!("all={all}"));
                }
                ann.extend(
                    m.iter()
                        .filter(|(k, _)| *k != "all")
                        .map(|(k, v)| format!("{k}={v}")),
                );
                parts.push(format!("arp_announce {}", ann.join(" ")));
            }
            if let Some(addrs) = &c.addrs {
                let a: Vec<String> = addrs
                    .iter()
                    .map(|a| format!("{}:{}/{}", a.ifname, a.addr, a.prefix_len))
                    .collect();
                parts.push(format!(
                    "addresses {}",
                    if a.is_empty() {
                        "none".to_string()
                    } else {
                        a.join(" ")
                    }
                ));
            }
            format!("watching: {}", parts.join("; "))
        }
    }
}

/// `srv/eth3 arp_announce 0 -> 2`, `srv/eth3 +198.51.100.11/24`, `srv watching: ...`.
pub fn describe_change(ch: &FactsChange<'_>, own: Option<u32>) -> String {
    let place = match ch.subject() {
        Some(s) => label(ch.netns_name.as_deref(), ch.netns, s, own),
        None => match &ch.netns_name {
            Some(n) => n.clone(),
            None if own == Some(ch.netns) => "(own netns)".to_string(),
            None => ch.netns.to_string(),
        },
    };
    format!("{place} {}", describe_change_only(ch))
}

/// `19:31:02.123456` in the local time zone (TZ, else /etc/localtime), as tcpdump prints.
pub fn local_clock_micros(unix_ns: i128) -> String {
    let micros = unix_ns.rem_euclid(1_000_000_000) / 1000;
    let (h, m, s) = match jiff::Timestamp::from_nanosecond(unix_ns) {
        Ok(ts) => {
            let t = local_zone().to_datetime(ts).time();
            (t.hour() as i64, t.minute() as i64, t.second() as i64)
        }
        // Beyond jiff's years ±9999 (never a clock's): UTC's time of day still reads.
        Err(_) => {
            let sod = unix_ns.div_euclid(1_000_000_000).rem_euclid(86_400) as i64;
            (sod / 3600, sod % 3600 / 60, sod % 60)
        }
    };
    format!("{h:02}:{m:02}:{s:02}.{micros:06}")
}

/// The local time zone, looked up once: a run keeps the zone it started in, as
/// localtime(3) did without tzset() calls in between.
pub fn local_zone() -> &'static jiff::tz::TimeZone {
    static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(jiff::tz::TimeZone::system)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ring::decode_arp;
    use crate::kernel::ring::tests::{frame, raw};
    use arp_trace_model::if_addr;

    #[test]
    fn labels_namespaces_by_name_own_or_inode() {
        let mut ev = crate::kernel::ring::tests::request_event("eth3", "1.2.3.4", "1.2.3.5");
        assert_eq!(where_label(&ev, Some(1)), "4026532281/eth3");
        ev.netns = 1;
        assert_eq!(where_label(&ev, Some(1)), "eth3");
        ev.netns_name = Some("blue".into());
        assert_eq!(where_label(&ev, Some(1)), "blue/eth3");
    }

    #[test]
    fn describes_unicast_and_replies() {
        let peer = [2, 0, 0, 0, 0, 0x20];
        let me = [2, 0, 0, 0, 0, 0x10];
        let f = frame(1, peer, me, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        let ev = decode_arp(&raw(&f, 14), 0).unwrap();
        assert_eq!(describe(&ev), "ARP who-has 198.51.100.20 (02:00:00:00:00:20) tell 198.51.100.10 (02:00:00:00:00:10), unicast");
        let f = frame(2, peer, me, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        let ev = decode_arp(&raw(&f, 14), 0).unwrap();
        assert_eq!(
            describe(&ev),
            "ARP reply 198.51.100.10 is-at 02:00:00:00:00:10 to 198.51.100.20 (02:00:00:00:00:20)"
        );
    }

    #[test]
    fn changes_in_words() {
        let mut a = FactsChange::new(9, ChangeKind::ArpAnnounce);
        a.conf = Some("all".into());
        a.after = Some(2);
        assert_eq!(describe_change_only(&a), "arp_announce none -> 2");
        let mut w = FactsChange::new(9, ChangeKind::Watched);
        w.arp_announce = Some([("all".to_string(), 1), ("eth3".to_string(), 2)].into());
        w.addrs = Some(vec![
            if_addr("eth3", "198.51.100.10".parse().unwrap(), 24),
            if_addr("eth3", "198.51.100.11".parse().unwrap(), 24),
        ]);
        assert_eq!(
            describe_change_only(&w),
            "watching: arp_announce all=1 eth3=2; addresses eth3:198.51.100.10/24 \
             eth3:198.51.100.11/24"
        );
        let mut r = FactsChange::new(9, ChangeKind::AddrRemoved);
        (r.ifname, r.addr, r.prefix_len) = (Some("eth3".into()), "1.2.3.4".parse().ok(), Some(8));
        r.netns_name = Some("srv".into());
        assert_eq!(describe_change(&r, None), "srv/eth3 -1.2.3.4/8");
    }

    /// The pushes give what the format! version before them gave, for both families, with
    /// and without ports, ICMP types and every origin.
    #[test]
    fn triggers_read_as_the_formatted_version_did() {
        use arp_trace_model::Origin;
        use std::net::{IpAddr, SocketAddr};
        let old = |t: &Trigger<'_>| {
            let mut s = match (t.sport, t.dport) {
                (Some(sp), Some(dp)) => format!(
                    "{} {} > {}",
                    t.proto,
                    SocketAddr::new(t.src, sp),
                    SocketAddr::new(t.dst, dp)
                ),
                _ => match t.icmp_type {
                    Some(ty) => format!("{} {} > {} type {ty}", t.proto, t.src, t.dst),
                    None => format!("{} {} > {}", t.proto, t.src, t.dst),
                },
            };
            if let (Origin::Local, Some(c), Some(p)) = (t.origin, &t.comm, t.pid) {
                s.push_str(&format!(" {c}[{p}]"));
            }
            s
        };
        let addrs: [IpAddr; 6] = [
            "203.0.113.10".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "::ffff:192.0.2.1".parse().unwrap(),
            "fe80::1:0:0:2".parse().unwrap(),
            "::".parse().unwrap(),
        ];
        let mut n = 0;
        for (i, src) in addrs.iter().enumerate() {
            for ports in [None, Some((0u16, 9u16)), Some((41000, 65535))] {
                for icmp in [None, Some(0u8), Some(135)] {
                    let mut t = crate::explain::tests::trigger("203.0.113.10", Origin::Local);
                    (t.src, t.dst) = (*src, addrs[(i + 1) % addrs.len()]);
                    (t.sport, t.dport) = (ports.map(|p| p.0), ports.map(|p| p.1));
                    t.icmp_type = icmp;
                    t.origin = Origin::Local;
                    (t.comm, t.pid) = (Some("python3".into()), Some(4242 + n));
                    assert_eq!(describe_trigger(&t), old(&t));
                    t.origin = Origin::Kernel;
                    assert_eq!(describe_trigger(&t), old(&t) + " (kernel)");
                    n += 1;
                }
            }
        }
    }

    #[test]
    fn local_clock_has_tcpdump_shape() {
        let s = local_clock_micros(1_795_894_262_123_456_789);
        assert_eq!(s.len(), 15, "{s}");
        assert!(s.ends_with(".123456"), "{s}");
    }
}
