//! Decoding an ND record: the transmitted ICMPv6 neighbour solicitation or advertisement
//! turned into an [`NdiscEvent`], with the egress device's IPv6 addresses the program copied
//! beside it. Apart from [`super::ring`]'s ARP decoding because the frame's layout and the
//! facts are IPv6's own; nothing here joins records.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use arp_trace_common::{NdiscXmitEvent, XMIT_USER_SK};
use arp_trace_model::{
    AdvertFlags, Flags6, Hex, If6Addr, Mac, NdiscEvent, NdiscOp, Origin, Scope6, Time, Trigger,
};

use super::ring::{cstr, split_frame, Skip};

const ND_OPT_SOURCE_LL_ADDR: u8 = 1;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
const ND_OPT_NONCE: u8 = 14;

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Decodes a transmitted ND frame. `clock_offset` converts its monotonic stamp to wall time.
pub fn decode_ndisc(raw: &NdiscXmitEvent, clock_offset: i128) -> Result<NdiscEvent<'static>, Skip> {
    let (frame, eth_dst, ip6) = split_frame(&raw.frame, raw.caplen, raw.skb_len, raw.mac_len);
    // IPv6 header (40), then type, code, checksum, 4 bytes of flags or reserved, target.
    if ip6.len() < 64 || ip6[0] >> 4 != 6 || ip6[6] != 58 {
        return Err(Skip::NotNdisc);
    }
    let icmp = &ip6[40..];
    let op = match icmp[0] {
        135 => NdiscOp::Solicit,
        136 => NdiscOp::Advert,
        other => return Err(Skip::OtherOpcode(other as u16)),
    };
    // Options run to the payload's end, or to what was copied.
    let payload = u16::from_be_bytes([ip6[4], ip6[5]]) as usize;
    let end = (40 + payload).min(ip6.len());
    let (mut lladdr, mut nonce) = (None, false);
    let mut opts = ip6.get(64..end).unwrap_or(&[]);
    while opts.len() >= 2 && opts[1] != 0 {
        let len = opts[1] as usize * 8;
        let Some(opt) = opts.get(..len) else { break };
        match opt[0] {
            ND_OPT_SOURCE_LL_ADDR if op == NdiscOp::Solicit => lladdr = Mac::from_slice(&opt[2..]),
            ND_OPT_TARGET_LL_ADDR if op == NdiscOp::Advert => lladdr = Mac::from_slice(&opt[2..]),
            ND_OPT_NONCE => nonce = true,
            _ => {}
        }
        opts = &opts[len..];
    }
    let dst_ip = v6(&ip6[24..]);
    let ifname = cstr(&raw.ifname);
    let n = (raw.n_addrs as usize).min(raw.addrs.len());
    let user_socket = raw.flags & XMIT_USER_SK != 0;
    let sender_ip = v6(&ip6[8..]);
    let target_ip = v6(&icmp[8..]);
    Ok(NdiscEvent {
        op,
        direction: arp_trace_model::Direction::Out,
        time: Time(raw.ts_ns as i128 + clock_offset),
        netns: raw.netns,
        netns_name: None,
        ifindex: raw.ifindex,
        ifname,
        sender_ip,
        sender_mac: lladdr,
        target_ip,
        dst_ip,
        unicast: !dst_ip.is_multicast(),
        eth_dst,
        advert: (op == NdiscOp::Advert).then_some(AdvertFlags {
            router: icmp[4] & 0x80 != 0,
            solicited: icmp[4] & 0x40 != 0,
            override_: icmp[4] & 0x20 != 0,
        }),
        nonce,
        frame: Hex::encode(frame),
        trigger: user_socket.then(|| socket_trigger(raw, sender_ip, dst_ip)),
        neigh_state: None,
        attempt: None,
        queued: None,
        verdict: None,
        dev_addrs: (raw.no_inet6 == 0).then(|| {
            raw.addrs[..n]
                .iter()
                .map(|a| If6Addr {
                    addr: Ipv6Addr::from(a.addr),
                    prefix_len: a.prefixlen,
                    scope: Scope6::from_kernel(a.scope),
                    flags: Flags6(a.flags),
                })
                .collect()
        }),
        dev_addrs_cut: raw.addrs_more != 0,
        user_socket,
    })
}

/// A process's own solicitation (a raw ICMPv6 socket): the frame is its own trigger, sent
/// from the process's context, as for ARP written through a packet socket.
fn socket_trigger(raw: &NdiscXmitEvent, src: Ipv6Addr, dst: Ipv6Addr) -> Trigger<'static> {
    let pid = (raw.pid_tgid >> 32) as u32;
    Trigger {
        src: src.into(),
        dst: dst.into(),
        proto: Cow::Borrowed("icmpv6"),
        sport: None,
        dport: None,
        icmp_type: None,
        len: raw.skb_len,
        mark: raw.mark,
        origin: Origin::Local,
        pid: (pid != 0).then_some(pid),
        comm: (pid != 0).then(|| cstr(&raw.comm)),
        in_ifindex: None,
        in_ifname: None,
        drop_reason: None,
    }
}

/// Whether `ndisc_solicit()` built this frame, so a neighbour record follows it: a
/// solicitation from the kernel's own socket that is not duplicate address detection.
pub fn from_solicit(ev: &NdiscEvent<'_>) -> bool {
    ev.is_solicit() && !ev.is_dad() && !ev.user_socket
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arp_trace_common::{Dev6Addr, FRAME6_CAP, MAX_DEV6_ADDRS, NAME_LEN};

    /// A neighbour solicitation on Ethernet, as `ndisc_send_ns()` builds it.
    pub fn ns_frame(src: &str, dst: &str, target: &str, sllao: Option<[u8; 6]>) -> Vec<u8> {
        let (src, dst, target): (Ipv6Addr, Ipv6Addr, Ipv6Addr) = (
            src.parse().unwrap(),
            dst.parse().unwrap(),
            target.parse().unwrap(),
        );
        let mut f = vec![0x33, 0x33, 0xff, 0, 0, 0x44, 2, 0, 0, 0, 0, 3, 0x86, 0xdd];
        let opt_len = if sllao.is_some() { 8 } else { 0 };
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 24 + opt_len, 58, 255]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&target.octets());
        if let Some(m) = sllao {
            f.extend_from_slice(&[1, 1]);
            f.extend_from_slice(&m);
        }
        f
    }

    pub fn raw(frame: &[u8], addrs: &[(&str, u8, u16, u32)]) -> NdiscXmitEvent {
        let mut r = NdiscXmitEvent {
            kind: arp_trace_common::EVENT_NDISC_XMIT,
            hook: 1,
            ts_ns: 1,
            netns: 4026531840,
            ifindex: 3,
            iif: 0,
            mark: 0,
            skb_len: frame.len() as u32,
            cpu: 0,
            mac_len: 14,
            caplen: frame.len().min(FRAME6_CAP) as u16,
            flags: 0,
            seq: 1,
            pid_tgid: 0,
            ifname: [0; NAME_LEN],
            comm: [0; NAME_LEN],
            frame: [0; FRAME6_CAP],
            n_addrs: addrs.len() as u16,
            addrs_more: 0,
            no_inet6: 0,
            addrs: [Dev6Addr::default(); MAX_DEV6_ADDRS],
        };
        r.ifname[..4].copy_from_slice(b"eth3");
        r.frame[..frame.len().min(FRAME6_CAP)]
            .copy_from_slice(&frame[..frame.len().min(FRAME6_CAP)]);
        for (i, (a, p, scope, flags)) in addrs.iter().enumerate() {
            r.addrs[i] = Dev6Addr {
                addr: a.parse::<Ipv6Addr>().unwrap().octets(),
                flags: *flags,
                prefixlen: *p,
                _pad: 0,
                scope: *scope,
            };
        }
        r
    }

    #[test]
    fn decodes_a_solicitation_with_its_link_layer_option_and_the_devices_addresses() {
        let mac = [2, 0, 0, 0, 0, 3];
        let f = ns_frame("fe80::3", "ff02::1:ff00:44", "2001:db8:3::44", Some(mac));
        let r = raw(
            &f,
            &[("2001:db8:3::1", 64, 0, 0x80), ("fe80::3", 64, 0x20, 0x80)],
        );
        let ev = decode_ndisc(&r, 0).unwrap();
        assert_eq!(ev.op, NdiscOp::Solicit);
        assert_eq!(ev.sender_ip, "fe80::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ev.target_ip, "2001:db8:3::44".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ev.dst_ip, "ff02::1:ff00:44".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ev.sender_mac, Some(Mac(mac)));
        assert!(!ev.unicast && !ev.nonce && from_solicit(&ev));
        let addrs = ev.dev_addrs.unwrap();
        assert_eq!(addrs[1].scope, Scope6::Link);
        assert_eq!(addrs[0].flags.names(), ["permanent"]);
    }

    #[test]
    fn dad_has_no_link_layer_option_and_is_not_a_resolution() {
        let mut f = ns_frame("::", "ff02::1:ff00:9", "2001:db8:3::9", None);
        // ndisc_ns_create() adds the nonce option for enhanced DAD.
        f[18..20].copy_from_slice(&[0, 32]);
        f.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        let ev = decode_ndisc(&raw(&f, &[]), 0).unwrap();
        assert!(ev.is_dad() && ev.nonce && ev.sender_mac.is_none() && !from_solicit(&ev));
    }

    #[test]
    fn other_icmpv6_and_short_frames_are_skipped() {
        let mut f = ns_frame("fe80::3", "ff02::2", "2001:db8:3::44", None);
        f[54] = 133; // router solicitation
        assert_eq!(decode_ndisc(&raw(&f, &[]), 0), Err(Skip::OtherOpcode(133)));
        let r = raw(&f[..60], &[]);
        assert_eq!(decode_ndisc(&r, 0), Err(Skip::NotNdisc));
    }
}
