//! Decoding the ring buffer: each record the BPF programs write, read by its kind, and the
//! transmitted ARP frame turned into an [`ArpEvent`] with the egress device's facts the
//! program copied beside it. Nothing here joins records; attribution does that.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use arp_trace_common::{
    ArpRecvEvent, ArpXmitEvent, NdiscXmitEvent, NeighChangeEvent, NeighEvent, TriggerEvent,
    ADDR_SECONDARY, CONF_ARP_NOTIFY, CONF_READ, CONF_ROUTE_LOCALNET, EVENT_ARP_RECV,
    EVENT_ARP_XMIT, EVENT_NDISC_XMIT, EVENT_NEIGH, EVENT_NEIGH_CHANGE, EVENT_NEIGH_DROP,
    EVENT_TRIGGER, NO_MAC_HEADER, XMIT_HAS_SK,
};
use arp_trace_model::{
    ArpEvent, ArpOp, Direction, EgressFacts, Hex, IfAddr, Mac, Origin, Task, Time, Trigger,
};

/// Why a raw record did not become an event. Each is counted, never dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not Ethernet/IPv4 ARP (e.g. IPoIB's 20-byte addresses), or too short.
    NotIpv4Arp,
    /// RARP, InARP and other opcodes (ICMPv6 types for ND records).
    OtherOpcode(u16),
    /// An ND record whose frame is not an ICMPv6 neighbour solicitation or advertisement.
    NotNdisc,
}

/// One ring-buffer record, read in place: the ring keeps records 8-byte aligned, so the
/// struct is borrowed rather than copied (a copy of each record, several per request, was a
/// measurable share of a storm's CPU). A misaligned slice (only tests make one) is copied.
pub enum Raw<'a> {
    Arp(Cow<'a, ArpXmitEvent>),
    /// An ARP frame a device received.
    ArpRecv(Cow<'a, ArpRecvEvent>),
    Ndisc(Cow<'a, NdiscXmitEvent>),
    Trigger(Cow<'a, TriggerEvent>),
    Neigh(Cow<'a, NeighEvent>),
    /// A neighbour entry's address or validity changed.
    NeighChange(Cow<'a, NeighChangeEvent>),
    /// Too short for its kind, or a kind this build does not know.
    Unknown,
}

/// The records of one ring sample, in order: one, or two where a program wrote a first
/// solicit's trigger and neighbour records together (`TriggeredNeigh`).
pub fn records(sample: &[u8]) -> impl Iterator<Item = Raw<'_>> {
    let mut rest = sample;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let (raw, len) = split(rest);
        // A record this build cannot read ends the sample: where it ends is unknown too.
        rest = rest.get(len..).filter(|_| len != 0).unwrap_or(&[]);
        Some(raw)
    })
}

/// Reads a record by its leading kind.
pub fn read(bytes: &[u8]) -> Raw<'_> {
    split(bytes).0
}

/// The record at the start of `bytes` and its length (`record_len`); 0 for a kind this build
/// does not know or a record cut short.
fn split(bytes: &[u8]) -> (Raw<'_>, usize) {
    let Some(kind) = bytes
        .get(..4)
        .map(|k| u32::from_ne_bytes([k[0], k[1], k[2], k[3]]))
    else {
        return (Raw::Unknown, 0);
    };
    let Some(len) = arp_trace_common::record_len(kind).filter(|&n| bytes.len() >= n) else {
        return (Raw::Unknown, 0);
    };
    let raw = match kind {
        EVENT_ARP_XMIT => Raw::Arp(view(bytes)),
        EVENT_ARP_RECV => Raw::ArpRecv(view(bytes)),
        EVENT_NDISC_XMIT => Raw::Ndisc(view(bytes)),
        EVENT_TRIGGER | EVENT_NEIGH_DROP => Raw::Trigger(view(bytes)),
        EVENT_NEIGH => Raw::Neigh(view(bytes)),
        EVENT_NEIGH_CHANGE => Raw::NeighChange(view(bytes)),
        _ => return (Raw::Unknown, 0),
    };
    (raw, len)
}

/// `bytes` as a `T`; the caller checked the length. Only for the kernel's plain-data record
/// structs (`aya::Pod`), for which any bytes are a valid value.
fn view<T: aya::Pod>(bytes: &[u8]) -> Cow<'_, T> {
    debug_assert!(bytes.len() >= std::mem::size_of::<T>());
    let p = bytes.as_ptr();
    if p.align_offset(std::mem::align_of::<T>()) == 0 {
        // SAFETY: long enough (checked by the caller), aligned, any bytes are a valid T (Pod),
        // and the borrow keeps `bytes` alive as long as the reference.
        Cow::Borrowed(unsafe { &*p.cast::<T>() })
    } else {
        // SAFETY: as above, without the alignment, which read_unaligned does not need.
        Cow::Owned(unsafe { std::ptr::read_unaligned(p.cast()) })
    }
}

/// A NUL-terminated kernel name (device, comm) as text; a byte that is not UTF-8 becomes
/// `\xNN` rather than U+FFFD, so nothing is lost (see `arp_trace_model::text`). Kept in the
/// run's name table: every record names a device and most a process, nearly always one seen
/// before.
pub fn cstr(b: &[u8]) -> Cow<'static, str> {
    arp_trace_model::intern::kernel_name(b)
}

/// The valid bytes of a copied frame, its link-layer destination (when it has a link-layer
/// header) and what follows that header: `(frame, eth_dst, payload)`.
pub fn split_frame(
    buf: &[u8],
    caplen: u16,
    skb_len: u32,
    mac_len: u16,
) -> (&[u8], Option<Mac>, &[u8]) {
    let caplen = (caplen as usize).min(buf.len()).min(skb_len as usize);
    let frame = &buf[..caplen];
    if mac_len == NO_MAC_HEADER {
        return (frame, None, frame);
    }
    let l2 = mac_len as usize;
    let dst = if l2 >= 6 {
        Mac::from_slice(frame)
    } else {
        None
    };
    (frame, dst, frame.get(l2..).unwrap_or(&[]))
}

/// `decode_frame` on the fields both ARP records name alike (frame, lengths, stamp, device).
macro_rules! decode_frame_of {
    ($raw:expr, $direction:expr, $clock_offset:expr) => {
        decode_frame(
            Copied {
                buf: &$raw.frame,
                caplen: $raw.caplen,
                skb_len: $raw.skb_len,
                mac_len: $raw.mac_len,
            },
            $direction,
            Time($raw.ts_ns as i128 + $clock_offset),
            ($raw.netns, $raw.ifindex, &$raw.ifname),
        )
    };
}

/// Decodes a transmitted frame. `clock_offset` converts its monotonic stamp to wall time.
pub fn decode_arp(raw: &ArpXmitEvent, clock_offset: i128) -> Result<ArpEvent<'static>, Skip> {
    let mut ev = decode_frame_of!(raw, Direction::Out, clock_offset)?;
    (ev.trigger, ev.task) = built_by(raw, ev.op, ev.sender_ip, ev.target_ip);
    ev.egress = Some(egress_facts(raw, &ev.ifname));
    Ok(ev)
}

/// Decodes a received frame: the frame and where it arrived, nothing about who made it.
pub fn decode_recv(raw: &ArpRecvEvent, clock_offset: i128) -> Result<ArpEvent<'static>, Skip> {
    decode_frame_of!(raw, Direction::In, clock_offset)
}

/// A frame as a program copied it: its buffer and the lengths that say what of it is valid.
struct Copied<'b> {
    buf: &'b [u8],
    caplen: u16,
    skb_len: u32,
    mac_len: u16,
}

/// The ARP header of a copied frame, on the device `(netns, ifindex, ifname)`.
fn decode_frame(
    c: Copied<'_>,
    direction: Direction,
    time: Time,
    (netns, ifindex, ifname): (u32, u32, &[u8]),
) -> Result<ArpEvent<'static>, Skip> {
    let (frame, eth_dst, arp) = split_frame(c.buf, c.caplen, c.skb_len, c.mac_len);
    // htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
    if arp.len() < 28 || arp[2..4] != [0x08, 0x00] || arp[4] != 6 || arp[5] != 4 {
        return Err(Skip::NotIpv4Arp);
    }
    let op = match u16::from_be_bytes([arp[6], arp[7]]) {
        1 => ArpOp::Request,
        2 => ArpOp::Reply,
        other => return Err(Skip::OtherOpcode(other)),
    };
    let mac = |o: usize| Mac::from_slice(&arp[o..]).unwrap_or_default();
    let ip = |o: usize| Ipv4Addr::new(arp[o], arp[o + 1], arp[o + 2], arp[o + 3]);
    let unicast = match eth_dst {
        Some(d) => d != Mac::BROADCAST && d.0[0] & 1 == 0,
        None => false,
    };
    Ok(ArpEvent {
        op,
        direction,
        time,
        netns,
        netns_name: None,
        ifindex,
        egress: None,
        ifname: cstr(ifname),
        sender_ip: ip(14),
        sender_mac: mac(8),
        target_ip: ip(24),
        target_mac: mac(18),
        unicast,
        eth_dst,
        frame: Hex::encode(frame),
        trigger: None,
        task: None,
        neigh_state: None,
        attempt: None,
        queued: None,
        verdict: None,
        facts: None,
        facts_error: None,
    })
}

/// Who built a request that arp_solicit() did not: a process writing the frame through a
/// packet socket (the frame is its own trigger, sent from the process's context) or, for a
/// gratuitous request of no socket's, the kernel announcing an address, with the task it ran
/// in. Bridged frames (`iif`) were built elsewhere and name nobody.
fn built_by(
    raw: &ArpXmitEvent,
    op: ArpOp,
    sender: Ipv4Addr,
    target: Ipv4Addr,
) -> (Option<Trigger<'static>>, Option<Task<'static>>) {
    if op != ArpOp::Request || raw.iif != 0 {
        return (None, None);
    }
    let pid = (raw.pid_tgid >> 32) as u32;
    let comm = cstr(&raw.comm);
    if raw.flags & XMIT_HAS_SK != 0 {
        let t = Trigger {
            src: sender.into(),
            dst: target.into(),
            proto: Cow::Borrowed("arp"),
            sport: None,
            dport: None,
            icmp_type: None,
            len: raw.skb_len,
            mark: raw.mark,
            origin: Origin::PacketSocket,
            pid: (pid != 0).then_some(pid),
            comm: (pid != 0).then_some(comm),
            in_ifindex: None,
            in_ifname: None,
            drop_reason: None,
        };
        return (Some(t), None);
    }
    if sender == target {
        return (None, Some(Task { pid, comm }));
    }
    (None, None)
}

/// Whether the kernel built this frame in `arp_solicit()`, so a neighbour record follows it:
/// a request of no socket's (a packet socket's frames have one), not forwarded from another
/// device (a bridge), and not gratuitous (announcements ask for their own address).
pub fn from_solicit(raw: &ArpXmitEvent, ev: &ArpEvent<'_>) -> bool {
    ev.is_request() && raw.flags & XMIT_HAS_SK == 0 && raw.iif == 0 && ev.sender_ip != ev.target_ip
}

/// The egress device's sysctls and addresses, and the devices it could borrow from, as the
/// program read them.
// The Cow itself, not &str: cloning it keeps the name table's borrow, where a &str would copy.
#[allow(clippy::ptr_arg)]
fn egress_facts(raw: &ArpXmitEvent, ifname: &Cow<'static, str>) -> EgressFacts {
    let known = |v: i32| (v >= 0).then_some(v);
    let bit = |conf: u8, b: u8| (conf & CONF_READ != 0).then_some(conf & b != 0);
    let n = (raw.n_addrs as usize).min(raw.addrs.len());
    let walked = (raw.n_walk as usize).min(raw.walk.len());
    EgressFacts {
        announce_all: known(raw.announce_all),
        announce_dev: known(raw.announce_dev),
        localnet_all: bit(raw.conf_all, CONF_ROUTE_LOCALNET),
        localnet_dev: bit(raw.conf_dev, CONF_ROUTE_LOCALNET),
        notify_all: bit(raw.conf_all, CONF_ARP_NOTIFY),
        notify_dev: bit(raw.conf_dev, CONF_ARP_NOTIFY),
        walk: (walked > 0 || raw.walk_more != 0).then(|| raw.walk[..walked].to_vec()),
        walk_cut: raw.walk_more != 0,
        addrs: raw.addrs[..n]
            .iter()
            .map(|a| IfAddr {
                // The run's name table's copy: no allocation per address.
                ifname: ifname.clone(),
                addr: Ipv4Addr::from(a.addr),
                prefix_len: a.prefixlen,
                scope: Some(a.scope),
                secondary: Some(a.flags & ADDR_SECONDARY != 0),
                peer: (a.peer != a.addr && a.peer != [0; 4]).then(|| Ipv4Addr::from(a.peer)),
            })
            .collect(),
        truncated: raw.addrs_more != 0,
    }
}

/// Nanoseconds to add to a CLOCK_MONOTONIC stamp (what `bpf_ktime_get_ns` returns) to get
/// nanoseconds since the Unix epoch. Sampled with the tightest bracket of a few reads so the
/// error stays well under a microsecond.
pub fn monotonic_to_realtime_offset() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..5 {
        let m1 = read(libc::CLOCK_MONOTONIC);
        let r = read(libc::CLOCK_REALTIME);
        let m2 = read(libc::CLOCK_MONOTONIC);
        let width = m2 - m1;
        let offset = r - (m1 + width / 2);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, offset));
        }
    }
    best.map(|(_, o)| o).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arp_trace_common::{FRAME_CAP, HOOK_NET_DEV_QUEUE};

    /// An Ethernet ARP frame as the kernel builds it in `arp_create()`.
    pub fn frame(
        op: u16,
        dst: [u8; 6],
        smac: [u8; 6],
        sip: [u8; 4],
        tmac: [u8; 6],
        tip: [u8; 4],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&smac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&smac);
        f.extend_from_slice(&sip);
        f.extend_from_slice(&tmac);
        f.extend_from_slice(&tip);
        f
    }

    pub fn raw(frame_bytes: &[u8], mac_len: u16) -> ArpXmitEvent {
        let mut fr = [0u8; FRAME_CAP];
        fr[..frame_bytes.len()].copy_from_slice(frame_bytes);
        let mut ifname = [0u8; 16];
        ifname[..4].copy_from_slice(b"eth3");
        ArpXmitEvent {
            kind: EVENT_ARP_XMIT,
            hook: HOOK_NET_DEV_QUEUE,
            ts_ns: 5_000_000_000,
            netns: 4026532281,
            ifindex: 7,
            iif: 0,
            mark: 0,
            skb_len: frame_bytes.len() as u32,
            cpu: 1,
            mac_len,
            caplen: FRAME_CAP as u16,
            flags: 0,
            seq: 0,
            pid_tgid: 0,
            ifname,
            comm: [0; 16],
            frame: fr,
            // As from a kernel whose device facts could not be read: tests give facts.
            announce_all: -1,
            announce_dev: -1,
            n_addrs: 0,
            addrs_more: 0,
            conf_all: 0,
            conf_dev: 0,
            n_walk: 0,
            walk_more: 0,
            addrs: [Default::default(); arp_trace_common::MAX_DEV_ADDRS],
            walk: [Default::default(); arp_trace_common::MAX_WALK],
        }
    }

    const SMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

    /// The seed's request: who-has 198.51.100.20 tell 203.0.113.10, broadcast.
    pub fn seed_frame() -> Vec<u8> {
        frame(
            1,
            [0xff; 6],
            SMAC,
            [203, 0, 113, 10],
            [0; 6],
            [198, 51, 100, 20],
        )
    }

    /// A broadcast request on `ifname` as decoded from the kernel, for other modules' tests.
    pub fn request_event(ifname: &str, sender: &str, target: &str) -> ArpEvent<'static> {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap().octets();
        let f = frame(1, [0xff; 6], SMAC, ip(sender), [0; 6], ip(target));
        let mut ev = decode_arp(&raw(&f, 14), 0).unwrap();
        ev.ifname = ifname.to_string().into();
        ev
    }

    #[test]
    fn decodes_a_broadcast_request() {
        let f = seed_frame();
        let ev = decode_arp(&raw(&f, 14), 1_000).unwrap();
        assert_eq!(ev.op, ArpOp::Request);
        assert_eq!(ev.sender_ip, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(ev.target_ip, Ipv4Addr::new(198, 51, 100, 20));
        assert_eq!(ev.sender_mac.to_string(), "02:00:00:00:00:10");
        assert!(!ev.unicast);
        assert_eq!(ev.ifname, "eth3");
        assert_eq!(ev.time, Time(5_000_001_000));
        // skb_len bounds the copy: no trailing garbage in the frame.
        assert_eq!(ev.frame.bytes(), f);
    }

    #[test]
    fn decodes_unicast_probe_and_reply() {
        let peer = [0x02, 0, 0, 0, 0, 0x20];
        let f = frame(1, peer, SMAC, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        assert!(decode_arp(&raw(&f, 14), 0).unwrap().unicast);
        let f = frame(2, peer, SMAC, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        assert_eq!(decode_arp(&raw(&f, 14), 0).unwrap().op, ArpOp::Reply);
    }

    /// The tracepoint path writes a first solicit's trigger and neighbour records as one
    /// sample: both must come out, in order, with the neighbour's own fields.
    #[test]
    fn a_sample_holding_two_records_yields_both_in_order() {
        use arp_trace_common::{TriggeredNeigh, EVENT_NEIGH, EVENT_TRIGGER};
        let mut sample = vec![0u8; std::mem::size_of::<TriggeredNeigh>()];
        let neigh_at = std::mem::offset_of!(TriggeredNeigh, neigh);
        sample[..4].copy_from_slice(&EVENT_TRIGGER.to_ne_bytes());
        sample[8..16].copy_from_slice(&7u64.to_ne_bytes()); // trigger ts_ns
        sample[neigh_at..neigh_at + 4].copy_from_slice(&EVENT_NEIGH.to_ne_bytes());
        sample[neigh_at + 16..neigh_at + 24].copy_from_slice(&42u64.to_ne_bytes()); // req_seq
        let got: Vec<_> = records(&sample).collect();
        assert_eq!(got.len(), 2, "records in the sample");
        assert!(matches!(&got[0], Raw::Trigger(t) if t.ts_ns == 7));
        assert!(matches!(&got[1], Raw::Neigh(n) if n.req_seq == 42));
        // One record alone is one; an unknown kind after it ends the sample.
        assert_eq!(records(&sample[..neigh_at]).count(), 1);
        sample[neigh_at..neigh_at + 4].copy_from_slice(&99u32.to_ne_bytes());
        let got: Vec<_> = records(&sample).collect();
        assert!(matches!(got[..], [Raw::Trigger(_), Raw::Unknown]));
    }

    #[test]
    fn skips_what_it_cannot_decode() {
        let f = frame(3, [0xff; 6], SMAC, [1, 2, 3, 4], [0; 6], [1, 2, 3, 5]);
        assert_eq!(decode_arp(&raw(&f, 14), 0), Err(Skip::OtherOpcode(3)));
        let mut r = raw(&f, 14);
        r.skb_len = 30;
        assert_eq!(decode_arp(&r, 0), Err(Skip::NotIpv4Arp));
        let mut ipoib = frame(1, [0xff; 6], SMAC, [1, 2, 3, 4], [0; 6], [1, 2, 3, 5]);
        ipoib[18] = 20;
        assert_eq!(decode_arp(&raw(&ipoib, 14), 0), Err(Skip::NotIpv4Arp));
    }

    #[test]
    fn only_the_kernels_own_requests_expect_a_neighbour_record() {
        let f = seed_frame();
        let r = raw(&f, 14);
        let ev = decode_arp(&r, 0).unwrap();
        assert!(from_solicit(&r, &ev));
        let mut packet_socket = r;
        packet_socket.flags = XMIT_HAS_SK;
        assert!(!from_solicit(&packet_socket, &ev));
        let mut bridged = r;
        bridged.iif = 3;
        assert!(!from_solicit(&bridged, &ev));
        let g = frame(
            1,
            [0xff; 6],
            SMAC,
            [203, 0, 113, 10],
            [0; 6],
            [203, 0, 113, 10],
        );
        let gr = raw(&g, 14);
        assert!(!from_solicit(&gr, &decode_arp(&gr, 0).unwrap()));
    }

    /// A received frame as `netif_receive_skb` copies it.
    fn recv(frame_bytes: &[u8], mac_len: u16) -> ArpRecvEvent {
        let r = raw(frame_bytes, mac_len);
        ArpRecvEvent {
            kind: EVENT_ARP_RECV,
            hook: arp_trace_common::HOOK_NETIF_RECEIVE_SKB,
            ts_ns: r.ts_ns,
            netns: r.netns,
            ifindex: r.ifindex,
            skb_len: r.skb_len,
            cpu: 0,
            mac_len,
            caplen: r.caplen,
            _pad: 0,
            ifname: r.ifname,
            frame: r.frame,
        }
    }

    #[test]
    fn a_received_frame_is_the_same_frame_marked_in_with_nothing_the_host_decided() {
        let f = seed_frame();
        let ev = decode_recv(&recv(&f, 14), 1_000).unwrap();
        let sent = decode_arp(&raw(&f, 14), 1_000).unwrap();
        assert_eq!(ev.direction, Direction::In);
        assert_eq!(sent.direction, Direction::Out);
        assert!(ev.received() && !ev.is_sent_request() && sent.is_sent_request());
        assert_eq!(
            (
                ev.sender_ip,
                ev.sender_mac,
                ev.target_ip,
                ev.eth_dst,
                ev.time
            ),
            (
                sent.sender_ip,
                sent.sender_mac,
                sent.target_ip,
                sent.eth_dst,
                sent.time
            )
        );
        assert_eq!(ev.frame.bytes(), f);
        assert!(ev.egress.is_none() && ev.trigger.is_none() && ev.task.is_none());
        // A gratuitous request received is not "the kernel announcing": no task.
        let g = frame(
            1,
            [0xff; 6],
            SMAC,
            [203, 0, 113, 10],
            [0; 6],
            [203, 0, 113, 10],
        );
        assert!(decode_recv(&recv(&g, 14), 0).unwrap().task.is_none());
        let mut short = recv(&f, 14);
        short.skb_len = 30;
        assert_eq!(decode_recv(&short, 0), Err(Skip::NotIpv4Arp));
        assert!(matches!(read(bytes_of(&recv(&f, 14))), Raw::ArpRecv(_)));
        assert!(matches!(read(&bytes_of(&recv(&f, 14))[..40]), Raw::Unknown));
    }

    fn bytes_of<T>(v: &T) -> &[u8] {
        // SAFETY: any initialised plain-data struct can be viewed as its bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast(), std::mem::size_of::<T>()) }
    }

    #[test]
    fn decodes_without_link_header() {
        let f = seed_frame();
        let ev = decode_arp(&raw(&f[14..], NO_MAC_HEADER), 0).unwrap();
        assert_eq!(ev.eth_dst, None);
        assert_eq!(ev.target_ip, Ipv4Addr::new(198, 51, 100, 20));
    }

    #[test]
    fn json_keeps_contract_field_names() {
        let f = seed_frame();
        let mut ev = decode_arp(&raw(&f, 14), 1_795_894_257_000_000_000).unwrap();
        ev.netns_name = Some("srv".into());
        let line = arp_trace_model::Record::Arp(arp_trace_model::Held::Borrowed(&ev)).to_json();
        assert!(line.starts_with(r#"{"type":"arp","op":"request","direction":"out","time":"2026-11-28T19:31:02.000000000Z","netns":4026532281,"netns_name":"srv","ifindex":7,"ifname":"eth3","sender_ip":"203.0.113.10","sender_mac":"02:00:00:00:00:10","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false"#), "{line}");
    }

    #[test]
    fn decodes_the_egress_facts_the_program_copied() {
        let f = frame(1, [0xff; 6], SMAC, [1, 2, 3, 4], [0; 6], [1, 2, 3, 5]);
        let mut r = raw(&f, 14);
        r.announce_all = 2;
        r.announce_dev = 0;
        r.n_addrs = 2;
        r.addrs[0].addr = [198, 51, 100, 10];
        r.addrs[0].prefixlen = 24;
        r.addrs[1].addr = [198, 51, 100, 11];
        r.addrs[1].prefixlen = 24;
        r.addrs[1].flags = ADDR_SECONDARY;
        let e = decode_arp(&r, 0).unwrap().egress.unwrap();
        assert_eq!((e.announce_all, e.announce_dev), (Some(2), Some(0)));
        assert_eq!(e.addrs.len(), 2);
        assert_eq!(e.addrs[1].secondary, Some(true));
        assert_eq!(e.addrs[0].ifname, "eth3");
        r.announce_dev = -1;
        r.n_addrs = 0;
        let e = decode_arp(&r, 0).unwrap().egress.unwrap();
        assert_eq!(e.announce_dev, None);
        assert!(e.addrs.is_empty() && !e.truncated);
    }
}
