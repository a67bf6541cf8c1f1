//! The joiner's unit tests: records as the programs write them, joined into events. Long
//! because each join rule (trigger, neighbour record, drops, table changes, order, limits)
//! is tested against records built by hand here, and they share these builders.

use super::*;
use crate::sinks::text::describe_trigger;
use arp_trace_common::{
    CONTEXT_SOFTIRQ, CONTEXT_TASK, CONTEXT_UNKNOWN, EVENT_NEIGH, EVENT_TRIGGER, IP_CAP, NAME_LEN,
    NEIGH_FIRST, NEIGH_UPDATE, TRIGGER_HAS_SK, TRIGGER_NO_FILE, TRIGGER_ORPHAN,
};
use arp_trace_model::{Mac, Origin};
use trigger::parse_ip;

fn udp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> [u8; IP_CAP] {
    let mut ip = [0u8; IP_CAP];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&29u16.to_be_bytes());
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    ip
}

fn trigger(kind: u32, cpu: u32, req_seq: u64, flags: u32, ino: u64) -> TriggerEvent {
    let mut comm = [0u8; NAME_LEN];
    comm[..7].copy_from_slice(b"python3");
    TriggerEvent {
        family: arp_trace_common::FAMILY_INET,
        kind,
        cpu,
        ts_ns: 1,
        req_seq,
        pid_tgid: (4242u64 << 32) | 4242,
        sk_ino: ino,
        sk: 0xffff_8880_0000_1000,
        netns: 7,
        ifindex: 3,
        iif: 0,
        mark: 0,
        skb_len: 29,
        flags,
        drop_reason: 0,
        context: CONTEXT_UNKNOWN,
        hook: arp_trace_common::HOOK_NEIGH_QUEUE,
        target: [0; 16],
        comm,
        ip: udp_packet([203, 0, 113, 10], [198, 51, 100, 20], 41000, 9),
    }
}

fn neigh(cpu: u32, req_seq: u64, state: u32, probes: u32, flags: u32) -> NeighEvent {
    let mut ifname = [0u8; NAME_LEN];
    ifname[..4].copy_from_slice(b"eth3");
    NeighEvent {
        family: arp_trace_common::FAMILY_INET,
        ll_total: arp_trace_common::LL_UNREAD,
        ll_usable: arp_trace_common::LL_UNREAD,
        nlmsg_pid: 0,
        kind: EVENT_NEIGH,
        cpu,
        ts_ns: 2,
        req_seq,
        netns: 7,
        ifindex: 3,
        target: v4key([198, 51, 100, 20]),
        nud_state: state,
        probes,
        qlen: 1,
        flags,
        ucast_probes: 3,
        ifname,
        sk: 0,
        sk_ino: 0,
        pid_tgid: 0,
        owner_flags: 0,
        context: CONTEXT_UNKNOWN,
        comm: [0; NAME_LEN],
    }
}

/// Gives a neighbour record the owner python3[4242], read in `context`.
fn owned(n: &mut NeighEvent, context: u32) {
    n.owner_flags = TRIGGER_HAS_SK;
    n.sk = 0xffff_8880_0000_1000;
    n.sk_ino = 99;
    n.pid_tgid = (4242u64 << 32) | 4242;
    n.comm[..7].copy_from_slice(b"python3");
    n.context = context;
}

/// A joiner that has seen python3[4242] send from the sockets `trigger()` names.
fn joiner_knowing_python3() -> Joiner {
    let mut j = Joiner::new(0);
    j.owners.learn(99, 4242, "python3");
    j
}

/// A packet of python3's dropped on `cpu` as its neighbour entry failed.
fn failed_drop(cpu: u32) -> TriggerEvent {
    let mut d = trigger(EVENT_NEIGH_DROP, cpu, 0, TRIGGER_HAS_SK, 99);
    d.drop_reason = 58;
    d
}

fn request() -> ArpEvent<'static> {
    crate::kernel::ring::tests::request_event("eth3", "203.0.113.10", "198.51.100.20")
}

#[test]
fn parses_udp_tcp_icmp_and_fragments() {
    let ip = udp_packet([203, 0, 113, 10], [198, 51, 100, 20], 41000, 9);
    let (s, d, p, len, sp, dp, icmp) = parse_ip(&ip).unwrap();
    assert_eq!(
        (s, d, p, len, sp, dp, icmp),
        (
            Ipv4Addr::new(203, 0, 113, 10).into(),
            Ipv4Addr::new(198, 51, 100, 20).into(),
            17,
            29,
            Some(41000),
            Some(9),
            None
        )
    );
    let mut icmp_pkt = ip;
    icmp_pkt[9] = 1;
    icmp_pkt[20] = 8;
    assert_eq!(parse_ip(&icmp_pkt).unwrap().6, Some(8));
    let mut frag = ip;
    frag[7] = 1;
    assert_eq!(parse_ip(&frag).unwrap().4, None);
    assert!(parse_ip(&[0x60; 39]).is_none());
    assert!(parse_ip(&[0x45; 10]).is_none());
}

#[test]
fn parses_ipv6_udp_and_icmpv6() {
    let mut ip = vec![0x60, 0, 0, 0, 0, 9, 17, 64];
    ip.extend_from_slice(
        &"2001:db8:5::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    ip.extend_from_slice(
        &"2001:db8:3::44"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    ip.extend_from_slice(&[0xa0, 0x28, 0, 9, 0, 9, 0, 0, b'x']);
    let (s, d, p, len, sp, dp, icmp) = parse_ip(&ip).unwrap();
    assert_eq!(
        (s.to_string(), d.to_string(), p, len, sp, dp, icmp),
        (
            "2001:db8:5::1".to_string(),
            "2001:db8:3::44".to_string(),
            17,
            49,
            Some(41000),
            Some(9),
            None
        )
    );
    ip[6] = 58;
    ip[40] = 128;
    assert_eq!(parse_ip(&ip).unwrap().6, Some(128));
}

#[test]
fn joins_request_trigger_and_neighbour_in_task_context() {
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    j.arp(1, 5, request(), true, &mut out);
    assert!(out.is_empty(), "a request waits for its trigger");
    // skb_clone() drops skb->sk: the trigger record has no socket; the neighbour record
    // carries the queued original's owner.
    j.trigger(&trigger(EVENT_TRIGGER, 1, 5, 0, 0));
    let mut n = neigh(1, 5, 0x01, 4, NEIGH_FIRST);
    owned(&mut n, CONTEXT_TASK);
    j.neigh(&n, &mut out);
    let Joined::Arp(ev) = &out[0] else { panic!() };
    let trig = ev.trigger.as_ref().unwrap();
    assert_eq!(trig.origin, Origin::Local);
    assert_eq!(
        (trig.pid, trig.comm.as_deref()),
        (Some(4242), Some("python3"))
    );
    assert_eq!(
        describe_trigger(trig),
        "udp 203.0.113.10:41000 > 198.51.100.20:9 python3[4242]"
    );
    assert_eq!(
        (ev.neigh_state.as_deref(), ev.attempt, ev.queued),
        (Some("incomplete"), Some(1), Some(1))
    );
}

#[test]
fn solicit_entry_triggers_join_the_next_request_only_if_its_target_matches() {
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    // fentry/kprobe: the trigger comes first and names the number the request will take.
    let mut t = trigger(EVENT_TRIGGER, 1, 6, 0, 0);
    t.hook = HOOK_FENTRY;
    t.target = v4key([198, 51, 100, 20]);
    j.trigger(&t);
    j.arp(1, 6, request(), true, &mut out);
    let mut n = neigh(1, 6, 0x01, 4, NEIGH_FIRST);
    owned(&mut n, CONTEXT_TASK);
    j.neigh(&n, &mut out);
    let Joined::Arp(ev) = &out.pop().unwrap() else {
        panic!()
    };
    assert_eq!(
        describe_trigger(ev.trigger.as_ref().unwrap()),
        "udp 203.0.113.10:41000 > 198.51.100.20:9 python3[4242]"
    );
    assert_eq!(j.unmatched, 0);

    // A solicit that sent nothing: the next request on that CPU is for another target.
    t.hook = HOOK_KPROBE;
    t.req_seq = 7;
    t.target = v4key([198, 51, 100, 99]);
    j.trigger(&t);
    j.arp(1, 7, request(), true, &mut out);
    j.expire(true, &mut out);
    let Joined::Arp(ev) = &out.pop().unwrap() else {
        panic!()
    };
    assert!(ev.trigger.is_none(), "{:?}", ev.trigger);
    assert_eq!(j.unmatched, 1);
}

#[test]
fn events_leave_in_the_order_the_kernel_sent_them() {
    use crate::kernel::ring::tests::{frame, raw};
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    j.arp(1, 5, request(), true, &mut out);
    // The peer answers before the request's neighbour record is read (veth is instant).
    let reply = frame(
        2,
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        [198, 51, 100, 20],
        [2, 0, 0, 0, 0, 1],
        [203, 0, 113, 10],
    );
    j.arp(
        0,
        9,
        crate::kernel::ring::decode_arp(&raw(&reply, 14), 0).unwrap(),
        false,
        &mut out,
    );
    assert!(out.is_empty(), "the reply waits behind the request");
    j.trigger(&trigger(EVENT_TRIGGER, 1, 5, 0, 0));
    j.neigh(&neigh(1, 5, 0x01, 4, NEIGH_FIRST), &mut out);
    let ops: Vec<ArpOp> = out
        .iter()
        .map(|o| match o {
            Joined::Arp(e) => e.op,
            _ => panic!(),
        })
        .collect();
    assert_eq!(ops, [ArpOp::Request, ArpOp::Reply]);
    assert!(!j.has_pending());
}

#[test]
fn softirq_retransmit_is_attributed_to_the_socket_owner_seen_before() {
    let mut j = joiner_knowing_python3();
    let mut out = Vec::new();
    j.arp(0, 9, request(), true, &mut out);
    j.trigger(&trigger(EVENT_TRIGGER, 0, 9, 0, 0));
    let mut n = neigh(0, 9, 0x01, 5, 0); // probes counts on from ucast_probes (3)
    owned(&mut n, CONTEXT_SOFTIRQ);
    n.pid_tgid = 0; // swapper, interrupted
    n.owner_flags |= TRIGGER_NO_FILE; // the process already closed the socket
    j.neigh(&n, &mut out);
    let Joined::Arp(ev) = &out[0] else { panic!() };
    assert_eq!(ev.trigger.as_ref().unwrap().pid, Some(4242));
    assert_eq!(ev.attempt, Some(2));
}

/// A socket closed while another process opens one at the same `struct sock` address (the
/// slab reuses it): the new socket's retransmit, from softirq, is not named after the old
/// socket's owner.
#[test]
fn a_reused_sock_address_does_not_name_the_previous_owner() {
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    // python3[4242] sends from its socket (inode 99) in task context: learned.
    j.arp(0, 1, request(), true, &mut out);
    j.trigger(&trigger(EVENT_TRIGGER, 0, 1, 0, 0));
    let mut n = neigh(0, 1, 0x01, 4, NEIGH_FIRST);
    owned(&mut n, CONTEXT_TASK);
    j.neigh(&n, &mut out);
    let Joined::Arp(first) = &out[0] else {
        panic!()
    };
    assert_eq!(first.trigger.as_ref().unwrap().pid, Some(4242));
    // Another socket at the same address (inode 5000, held by no process of this test) is
    // retransmitted for from softirq.
    j.arp(0, 2, request(), true, &mut out);
    j.trigger(&trigger(EVENT_TRIGGER, 0, 2, 0, 0));
    let mut n = neigh(0, 2, 0x01, 5, 0);
    owned(&mut n, CONTEXT_SOFTIRQ);
    n.pid_tgid = 0;
    n.sk_ino = 5000;
    j.neigh(&n, &mut out);
    let Joined::Arp(ev) = out.last().unwrap() else {
        panic!()
    };
    let t = ev.trigger.as_ref().unwrap();
    assert_ne!(
        t.pid,
        Some(4242),
        "named after the address's previous owner"
    );
    assert_eq!(t.origin, Origin::Local);
}

#[test]
fn kernel_and_forwarded_origins() {
    let mut ifnames = super::Ifnames::default();
    ifnames.insert((7, 12), "eth1".into());
    let mut owners = SocketOwners::new();
    let t = trigger(EVENT_TRIGGER, 0, 1, TRIGGER_HAS_SK | TRIGGER_NO_FILE, 0);
    assert_eq!(
        make_trigger(&t, &mut owners, &ifnames).unwrap().origin,
        Origin::Kernel
    );
    // A closed socket never seen sending: still a local sender, process unknown.
    let orphan = TRIGGER_HAS_SK | TRIGGER_NO_FILE | TRIGGER_ORPHAN;
    let t = trigger(EVENT_TRIGGER, 0, 1, orphan, 0);
    let o = make_trigger(&t, &mut owners, &ifnames).unwrap();
    assert_eq!((&o.origin, o.pid), (&Origin::Local, None));
    assert!(describe_trigger(&o).ends_with("(local socket, process gone)"));
    let mut t = trigger(EVENT_TRIGGER, 0, 1, 0, 0);
    t.iif = 12;
    let f = make_trigger(&t, &mut owners, &ifnames).unwrap();
    assert_eq!(
        (&f.origin, f.in_ifname.as_deref()),
        (&Origin::Forwarded, Some("eth1"))
    );
    assert!(describe_trigger(&f).ends_with("(forwarded from eth1)"));
    let t = trigger(EVENT_TRIGGER, 0, 1, 0, 0);
    assert_eq!(
        make_trigger(&t, &mut owners, &ifnames).unwrap().origin,
        Origin::Kernel
    );
}

#[test]
fn requests_without_records_expire_with_null_trigger() {
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    j.arp(0, 1, request(), true, &mut out);
    j.expire(false, &mut out);
    assert!(out.is_empty());
    j.expire(true, &mut out);
    let Joined::Arp(ev) = &out[0] else { panic!() };
    assert!(ev.trigger.is_none() && ev.attempt.is_none());
    // A trigger for a request that is gone is counted.
    j.trigger(&trigger(EVENT_TRIGGER, 0, 1, TRIGGER_HAS_SK, 1));
    assert_eq!(j.unmatched, 1);
}

/// A request from `arp_solicit()` waits for its neighbour record past JOIN_WAIT (a stalled
/// CPU delays it), and one handed on without it is counted; other ARP waits JOIN_WAIT only.
#[test]
fn solicited_requests_wait_for_their_neighbour_record() {
    let mut j = Joiner::new(0);
    j.solicit_wait = JOIN_WAIT * 4;
    let mut out = Vec::new();
    j.arp(0, 1, request(), true, &mut out);
    std::thread::sleep(JOIN_WAIT * 2);
    j.expire(false, &mut out);
    assert!(
        out.is_empty(),
        "handed on before its neighbour record could come"
    );
    let mut n = neigh(0, 1, 0x01, 4, NEIGH_FIRST);
    owned(&mut n, CONTEXT_TASK);
    j.neigh(&n, &mut out);
    let Joined::Arp(ev) = &out[0] else { panic!() };
    assert_eq!(ev.attempt, Some(1));
    assert_eq!(j.unjoined, 0);

    j.arp(0, 2, request(), true, &mut out);
    std::thread::sleep(JOIN_WAIT * 5);
    j.expire(false, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(
        j.unjoined, 1,
        "a request shown without its record is counted"
    );

    // ARP not from the neighbour code (a packet socket's, say) expects no record.
    j.arp(0, 3, request(), false, &mut out);
    std::thread::sleep(JOIN_WAIT + JOIN_WAIT / 2);
    j.expire(false, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(j.unjoined, 1);
}

/// Requests whose neighbour records never come (lost to a full ring) do not pile up for
/// SOLICIT_WAIT with everything behind them: the oldest go on once MAX_QUEUED wait.
#[test]
fn a_flood_of_requests_without_records_keeps_the_queue_bounded() {
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    let n = MAX_QUEUED as u64 + 1000;
    for seq in 1..=n {
        j.arp((seq % 2) as u32, seq, request(), true, &mut out);
        j.expire(false, &mut out);
        assert!(j.order.len() <= MAX_QUEUED + 1, "{}", j.order.len());
        assert!(j.pending.len() <= MAX_QUEUED + 1);
    }
    // The oldest went on, in order, each counted as shown without its record.
    assert_eq!(out.len() as u64, n - MAX_QUEUED as u64);
    assert_eq!(j.unjoined, out.len() as u64);
    // A record for a request still queued joins it as usual.
    let mut rec = neigh(n as u32 % 2, n, 0x01, 4, NEIGH_FIRST);
    owned(&mut rec, CONTEXT_TASK);
    j.neigh(&rec, &mut out);
    j.expire(true, &mut out);
    assert_eq!(out.len() as u64, n);
    let Some(Joined::Arp(last)) = out.last() else {
        panic!()
    };
    assert_eq!(last.attempt, Some(1));
    assert_eq!(j.unjoined, n - 1);
}

/// What the joiner keeps per neighbour is bounded when ever new neighbours are solicited and
/// never fail (a scan), and when queue overflows hit entries that then resolve: neither map is
/// emptied by a failure then. The newest neighbours are still known when the bound is reached.
#[test]
fn ever_new_neighbours_keep_the_per_neighbour_maps_bounded() {
    let mut j = joiner_knowing_python3();
    let mut out = Vec::new();
    // Two generations of MAX_ATTEMPTS_KEPT, and a hundred more: the first generation is let go.
    let n = 2 * MAX_ATTEMPTS_KEPT as u32 + 100;
    for ns in 0..n {
        let seq = ns as u64 + 1;
        j.arp(0, seq, request(), true, &mut out);
        // Second attempt: probes 5 with 3 unicast probes.
        let mut rec = neigh(0, seq, 0x01, 5, 0);
        rec.netns = 1000 + ns;
        j.neigh(&rec, &mut out);
        j.expire(false, &mut out);
        assert!(
            j.last_attempt.len() <= 2 * MAX_ATTEMPTS_KEPT,
            "{}",
            j.last_attempt.len()
        );
    }
    // The neighbour solicited just before the bound was last reached is still known...
    let mut fail = neigh(1, 0, 0x20, 6, NEIGH_FAILED);
    fail.netns = 1000 + 2 * MAX_ATTEMPTS_KEPT as u32 - 1;
    j.neigh(&fail, &mut out);
    let Some(Joined::Failed(f)) = out.last() else {
        panic!()
    };
    assert_eq!(f.attempts, 2);
    // ...one let go takes its count from its record (probes - ucast_probes).
    fail.netns = 1000;
    j.neigh(&fail, &mut out);
    let Some(Joined::Failed(f)) = out.last() else {
        panic!()
    };
    assert_eq!(f.attempts, 3);

    j.queuefull_reason = 77;
    let drops = 2 * MAX_QUEUEFULL_KEYS as u32 + 10;
    for ns in 0..drops {
        let mut d = trigger(EVENT_NEIGH_DROP, 0, 0, TRIGGER_HAS_SK, 99);
        d.drop_reason = 77;
        d.netns = 5000 + ns;
        j.trigger(&d);
        assert!(j.queuefull.len() <= 2 * MAX_QUEUEFULL_KEYS);
    }
    // Those let go are counted; the newest still wait for their entry's failure.
    assert_eq!(j.unmatched, MAX_QUEUEFULL_KEYS as u64);
    let mut fail = neigh(1, 0, 0x20, 6, NEIGH_FAILED);
    fail.netns = 5000 + drops - 1;
    j.neigh(&fail, &mut out);
    let Some(Joined::Failed(f)) = out.last() else {
        panic!()
    };
    assert_eq!(f.dropped.len(), 1);
    assert_eq!(f.dropped[0].drop_reason.as_deref(), Some("neigh_queuefull"));
}

#[test]
fn a_packet_dropped_by_a_racing_failure_is_the_trigger() {
    // CPU 0 solicits; CPU 1's timer fails the entry meanwhile (its record no longer shows
    // FAILED: the send restarted it) and drops the packet; CPU 0's record finds the
    // queue empty.
    let mut j = joiner_knowing_python3();
    let mut out = Vec::new();
    j.arp(0, 1, request(), true, &mut out);
    let mut d = failed_drop(1);
    d.ts_ns = 5_000_002_000;
    j.trigger(&d);
    j.neigh(&neigh(1, 0, 0x01, 4, NEIGH_FAILED), &mut out);
    let mut n = neigh(0, 1, 0x01, 4, NEIGH_FIRST);
    n.qlen = 0;
    n.ts_ns = 5_000_003_000;
    j.neigh(&n, &mut out);
    assert_eq!(out.len(), 2, "the request, then the failure it raced");
    let Joined::Arp(ev) = &out[0] else { panic!() };
    let t = ev.trigger.as_ref().expect("the dropped packet");
    assert_eq!(
        (t.dst, t.pid),
        (Ipv4Addr::new(198, 51, 100, 20).into(), Some(4242))
    );
    assert_eq!(t.drop_reason.as_deref(), Some("neigh_failed"));
    let Joined::Failed(f) = &out[1] else { panic!() };
    assert_eq!(f.dropped.len(), 1);

    // The purge may come just before the request leaves, but a drop from an earlier
    // failure does not name it.
    let named_by_drop_at = |ts_ns: u64| {
        let mut j = Joiner::new(0);
        let mut d = failed_drop(1);
        d.ts_ns = ts_ns;
        j.trigger(&d);
        let mut out = Vec::new();
        j.arp(0, 1, request(), true, &mut out);
        j.neigh(&n, &mut out);
        let Joined::Arp(ev) = out.last().unwrap() else {
            panic!()
        };
        ev.trigger.is_some()
    };
    assert!(named_by_drop_at(5_000_000_500));
    assert!(!named_by_drop_at(4_000_000_000));
}

#[test]
fn failure_lists_dropped_packets() {
    let mut j = joiner_knowing_python3();
    let mut out = Vec::new();
    j.trigger(&failed_drop(1));
    j.neigh(&neigh(1, 0, 0x20, 6, NEIGH_FAILED), &mut out);
    let Joined::Failed(f) = &out[0] else { panic!() };
    assert_eq!(
        (f.attempts, &*f.ifname, f.target_ip),
        (3, "eth3", Ipv4Addr::new(198, 51, 100, 20).into())
    );
    assert_eq!(f.dropped.len(), 1);
    assert_eq!(f.dropped[0].drop_reason.as_deref(), Some("neigh_failed"));
    assert_eq!(f.dropped[0].pid, Some(4242));
    let v = serde_json::to_value(arp_trace_model::Record::NeighFailed(
        arp_trace_model::Held::Borrowed(f),
    ))
    .unwrap();
    assert_eq!(v["type"], "neigh_failed");
}

/// `ip neigh del` of a resolving entry: the update's record (not the timer's) names the
/// `ip` process and its netlink port, and lists what its invalidation dropped; a PROBE entry
/// failed that way is no timer change (neigh_update_done records that change).
#[test]
fn an_entry_an_update_failed_names_the_process_behind_the_update() {
    let mut j = joiner_knowing_python3();
    let mut out = Vec::new();
    let key = (7, 3, IpAddr::from(Ipv4Addr::new(198, 51, 100, 20)));
    j.probing.insert(key, Mac([2, 0, 0, 0, 0, 9]));
    j.trigger(&failed_drop(1));
    let mut n = neigh(1, 0, 0x20, 3, NEIGH_FAILED | NEIGH_UPDATE);
    n.nlmsg_pid = 4321;
    n.pid_tgid = 4321 << 32 | 4321;
    n.context = CONTEXT_TASK;
    n.comm[..2].copy_from_slice(b"ip");
    j.neigh(&n, &mut out);
    assert_eq!(out.len(), 1, "no timer change beside the failure");
    let Joined::Failed(f) = &out[0] else { panic!() };
    assert_eq!(f.cause, Some(ChangeCause::Netlink));
    assert_eq!(f.nlmsg_pid, Some(4321));
    let t = f.task.as_ref().expect("the task");
    assert_eq!((t.pid, &*t.comm), (4321, "ip"));
    assert_eq!(f.dropped.len(), 1);
    assert!(
        crate::sinks::text::describe_failed(f).contains("by ip[4321] over netlink"),
        "{}",
        crate::sinks::text::describe_failed(f)
    );

    // The timer's failure of the same entry, probed: a failure and a timer change.
    j.probing.insert(key, Mac([2, 0, 0, 0, 0, 9]));
    let mut out = Vec::new();
    j.neigh(&neigh(1, 0, 0x20, 3, NEIGH_FAILED), &mut out);
    let Joined::Failed(f) = &out[0] else { panic!() };
    assert_eq!(
        (f.cause, f.nlmsg_pid, f.task.is_none()),
        (Some(ChangeCause::Timer), None, true)
    );
    assert!(matches!(&out[1], Joined::Change(c) if c.cause == ChangeCause::Timer));
}

/// A neighbour key as the programs write an IPv4 one.
fn v4key(a: [u8; 4]) -> [u8; 16] {
    let mut k = [0; 16];
    k[..4].copy_from_slice(&a);
    k
}

/// An event the pipeline handed back lends its box and drop list to the next one, which
/// carries only its own fields: nothing of the recycled event shows through.
#[test]
fn recycled_events_reuse_their_boxes_and_keep_nothing_of_the_old() {
    let mut j = joiner_knowing_python3();
    let mut out = Vec::new();
    j.trigger(&failed_drop(1));
    j.trigger(&failed_drop(1));
    j.neigh(&neigh(1, 0, 0x20, 6, NEIGH_FAILED), &mut out);
    let Some(Joined::Failed(f)) = out.pop() else {
        panic!()
    };
    assert_eq!(f.dropped.len(), 2);
    let (old_box, old_list) = (&*f as *const NeighFailed, f.dropped.as_ptr());
    j.recycle(Joined::Failed(f));

    j.trigger(&failed_drop(1));
    j.neigh(&neigh(1, 0, 0x20, 6, NEIGH_FAILED), &mut out);
    let Some(Joined::Failed(f)) = out.pop() else {
        panic!()
    };
    assert_eq!(
        (&*f as *const NeighFailed, f.dropped.as_ptr()),
        (old_box, old_list)
    );
    assert_eq!(f.dropped.len(), 1, "only this failure's drop");

    let mut a = request();
    a.trigger = Some(
        make_trigger(
            &trigger(EVENT_TRIGGER, 0, 0, 0, 0),
            &mut j.owners,
            &j.ifnames,
        )
        .unwrap(),
    );
    j.arp(0, 0, a, false, &mut out);
    let Some(Joined::Arp(a)) = out.pop() else {
        panic!()
    };
    let old = &*a as *const ArpEvent;
    j.recycle(Joined::Arp(a));
    j.arp(0, 0, request(), false, &mut out);
    let Some(Joined::Arp(b)) = out.pop() else {
        panic!()
    };
    assert_eq!(&*b as *const ArpEvent, old);
    assert!(
        b.trigger.is_none(),
        "the recycled event's trigger must not show through"
    );
}

fn change_event(cpu: u32, ip: [u8; 4], nlmsg_pid: u32, context: u32) -> NeighChangeEvent {
    let mut c: NeighChangeEvent = unsafe { std::mem::zeroed() };
    c.kind = arp_trace_common::EVENT_NEIGH_CHANGE;
    c.cpu = cpu;
    c.ts_ns = 2_000;
    c.netns = 7;
    c.ifindex = 2;
    c.ip = ip;
    c.nlmsg_pid = nlmsg_pid;
    c.old_state = 0x02; // reachable
    c.new_state = 0x04; // stale
    c.addr_len = 6;
    c.context = context;
    c.old_ha[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    c.new_ha[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    c.pid_tgid = 4242 << 32 | 4242;
    c.comm[..2].copy_from_slice(b"ip");
    c.ifname[..4].copy_from_slice(b"eth0");
    c
}

#[test]
fn a_table_change_joins_the_frame_its_cpu_just_received() {
    use arp_trace_common::{CONTEXT_SOFTIRQ, CONTEXT_TASK};
    use arp_trace_model::{ChangeCause, Direction, Mac};
    let mut j = Joiner::new(0);
    let mut out = Vec::new();
    let mut rx =
        crate::kernel::ring::tests::request_event("eth0", "198.51.100.30", "198.51.100.99");
    rx.direction = Direction::In;
    (rx.netns, rx.ifindex, rx.time) = (7, 2, Time(1_000));
    rx.sender_mac = Mac([2, 0, 0, 0, 0, 2]);
    j.arp(1, 0, rx, false, &mut out);
    let ip = [198, 51, 100, 30];
    let cause = |j: &mut Joiner, ev: NeighChangeEvent| {
        let mut out = Vec::new();
        j.change(&ev, &mut out);
        match out.pop() {
            Some(Joined::Change(c)) => *c,
            _ => panic!("no change handed on"),
        }
    };
    let c = cause(&mut j, change_event(1, ip, 0, CONTEXT_SOFTIRQ));
    assert_eq!(c.cause, ChangeCause::ReceivedArp);
    let f = c.frame.expect("the frame");
    assert_eq!(f.sender_mac, Mac([2, 0, 0, 0, 0, 2]));
    assert!(!f.gratuitous);
    assert_eq!(c.old_mac, Some(Mac([2, 0, 0, 0, 0, 1])));
    assert!(c.task.is_none());
    // Another CPU's frame, or another address's, is not the cause.
    assert_eq!(
        cause(&mut j, change_event(2, ip, 0, CONTEXT_SOFTIRQ)).cause,
        ChangeCause::Kernel
    );
    assert_eq!(
        cause(
            &mut j,
            change_event(1, [198, 51, 100, 31], 0, CONTEXT_SOFTIRQ)
        )
        .cause,
        ChangeCause::Kernel
    );
    // A netlink request names its port and task; a task without one is `task`.
    let n = cause(&mut j, change_event(2, ip, 4242, CONTEXT_TASK));
    assert_eq!((n.cause, n.nlmsg_pid), (ChangeCause::Netlink, Some(4242)));
    let t = n.task.expect("task");
    assert_eq!((t.pid, &*t.comm), (4242, "ip"));
    assert_eq!(
        cause(&mut j, change_event(2, ip, 0, CONTEXT_TASK)).cause,
        ChangeCause::Task
    );
}
