//! The triggering packet as the kernel side copied it: its IPv4 or IPv6 header and ports
//! decoded,
//! its sender decided from the socket and context the program read ([`make_trigger`]), and the
//! neighbour's state and attempt number at the solicit.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arp_trace_common::{NeighEvent, TriggerEvent, EVENT_NEIGH_DROP, NEIGH_FIRST};
use arp_trace_model::{Origin, Trigger};

use super::owners::{resolve_owner, Owner, SocketOwners};

/// (src, dst, protocol, total length, source port, destination port, ICMP type)
pub type IpSummary = (
    IpAddr,
    IpAddr,
    u8,
    u32,
    Option<u16>,
    Option<u16>,
    Option<u8>,
);

/// Decodes the IPv4 or IPv6 header and the first L4 bytes the kernel side copied.
pub fn parse_ip(ip: &[u8]) -> Option<IpSummary> {
    match ip.first()? >> 4 {
        4 => parse_ipv4(ip),
        6 => parse_ipv6(ip),
        _ => None,
    }
}

/// The fixed IPv6 header and, when the next header is the transport itself, its ports or
/// ICMPv6 type (extension headers are not walked: their packets get none).
fn parse_ipv6(ip: &[u8]) -> Option<IpSummary> {
    if ip.len() < 40 {
        return None;
    }
    let v6 = |o: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[o..o + 16]);
        IpAddr::from(Ipv6Addr::from(a))
    };
    let len = u16::from_be_bytes([ip[4], ip[5]]) as u32 + 40;
    let next = ip[6];
    let l4 = &ip[40..];
    let (mut sport, mut dport, mut icmp) = (None, None, None);
    match next {
        6 | 17 | 132 if l4.len() >= 4 => {
            sport = Some(u16::from_be_bytes([l4[0], l4[1]]));
            dport = Some(u16::from_be_bytes([l4[2], l4[3]]));
        }
        58 if !l4.is_empty() => icmp = Some(l4[0]),
        _ => {}
    }
    Some((v6(8), v6(24), next, len, sport, dport, icmp))
}

fn parse_ipv4(ip: &[u8]) -> Option<IpSummary> {
    if ip.len() < 20 {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let len = u16::from_be_bytes([ip[2], ip[3]]) as u32;
    let proto = ip[9];
    let src = IpAddr::from(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::from(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let l4 = ip.get(ihl..).unwrap_or(&[]);
    let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    let (mut sport, mut dport, mut icmp) = (None, None, None);
    if frag_off == 0 {
        match proto {
            6 | 17 | 132 if l4.len() >= 4 => {
                sport = Some(u16::from_be_bytes([l4[0], l4[1]]));
                dport = Some(u16::from_be_bytes([l4[2], l4[3]]));
            }
            1 if !l4.is_empty() => icmp = Some(l4[0]),
            _ => {}
        }
    }
    Some((src, dst, proto, len, sport, dport, icmp))
}

fn proto_name(p: u8) -> Cow<'static, str> {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        58 => "icmpv6".into(),
        n => n.to_string().into(),
    }
}

/// The entry's state when the kernel solicited and which attempt this was. The record is
/// read after the solicit, when a synchronous reply (veth) may already have resolved the
/// entry, so the state is inferred from the request's form then.
pub fn solicit_state(n: &NeighEvent, unicast: bool) -> (&'static str, u32) {
    const INCOMPLETE: u32 = 0x01;
    const PROBE: u32 = 0x10;
    let state = match n.nud_state {
        INCOMPLETE => "incomplete",
        PROBE => "probe",
        _ if unicast => "probe",
        _ => "incomplete",
    };
    let attempt = if n.flags & NEIGH_FIRST != 0 {
        1
    } else if state == "incomplete" {
        // __neigh_event_send() starts an INCOMPLETE entry's count at ucast_probes.
        n.probes.saturating_sub(n.ucast_probes).max(1)
    } else {
        n.probes.max(1)
    };
    (state, attempt)
}

/// (netns, ifindex) -> interface name, as the joiner learnt them.
pub type Ifnames = foldhash::HashMap<(u32, u32), Cow<'static, str>>;

/// Decides a trigger's origin and owner from the kernel's record.
pub fn make_trigger(
    t: &TriggerEvent,
    owners: &mut SocketOwners,
    ifnames: &Ifnames,
) -> Option<Trigger<'static>> {
    let (src, dst, proto, len, sport, dport, icmp_type) = parse_ip(&t.ip)?;
    let owner = Owner {
        flags: t.flags,
        sk_ino: t.sk_ino,
        pid_tgid: t.pid_tgid,
        comm: &t.comm,
        context: t.context,
        may_be_current: t.kind != EVENT_NEIGH_DROP,
    };
    let (mut origin, mut pid, mut comm, mut in_ifindex) = (Origin::Kernel, None, None, None);
    if let Some((o, p, c)) = resolve_owner(&owner, owners) {
        (origin, pid, comm) = (o, p, c);
    } else if t.iif != 0 {
        origin = Origin::Forwarded;
        in_ifindex = Some(t.iif);
    }
    let in_ifname = in_ifindex.and_then(|i| ifnames.get(&(t.netns, i)).cloned());
    Some(Trigger {
        src,
        dst,
        proto: proto_name(proto),
        sport,
        dport,
        icmp_type,
        len,
        mark: t.mark,
        origin,
        pid,
        comm,
        in_ifindex,
        in_ifname,
        drop_reason: None,
    })
}

/// `struct neighbour::nud_state` in words.
pub fn nud_name(state: u32) -> &'static str {
    match state {
        0x00 => "none",
        0x01 => "incomplete",
        0x02 => "reachable",
        0x04 => "stale",
        0x08 => "delay",
        0x10 => "probe",
        0x20 => "failed",
        0x40 => "noarp",
        0x80 => "permanent",
        _ => "unknown",
    }
}
