//! The hand-written lines against serde_json's, byte for byte, on records built from random
//! choices: every optional field present and absent, every enum variant, and strings full of
//! what JSON escapes (quotes, backslashes, every C0 control) next to DEL and non-ASCII text.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::test_rng::Rng;
use crate::*;

impl Rng {
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        if self.coin() {
            Some(f(self))
        } else {
            None
        }
    }
    /// Plain runs (so the eight-at-a-time path is taken and left at every offset) mixed with
    /// characters that need an escape or sit next to ones that do.
    fn text(&mut self) -> Cow<'static, str> {
        const PIECES: &[&str] = &[
            "\"", "\\", "\x08", "\x0c", "\n", "\r", "\t", "\0", "\x01", "\x1b", "\x1f", "\x7f",
            " ", "/", "é", "漢字", "\u{202e}", "\u{2028}", "\u{9b}", "🦀", "\\x ff", "'",
        ];
        let mut s = String::new();
        for _ in 0..self.below(6) {
            let plain = "eth3 announces 198.51.100.10, the source of the packet";
            let n = self.below(plain.len() + 1);
            s.push_str(&plain[..n]);
            if self.coin() {
                s.push_str(self.pick(PIECES));
            }
            if self.below(8) == 0 {
                s.push(char::from(self.below(0x20) as u8));
            }
        }
        Cow::Owned(s)
    }
    fn v4(&mut self) -> Ipv4Addr {
        let x = self.next() as u32;
        Ipv4Addr::from(self.pick(&[0, u32::MAX, 0x7f00_0001, x]))
    }
    fn ip(&mut self) -> IpAddr {
        if self.coin() {
            IpAddr::V4(self.v4())
        } else {
            IpAddr::V6(self.v6())
        }
    }
    /// Zero groups in runs of every length at every place (where `::` goes and ties between
    /// runs), next to groups of one to four hex digits, and the special forms.
    pub(super) fn v6(&mut self) -> Ipv6Addr {
        let raw = (self.next() as u128) << 64 | self.next() as u128;
        let mut g = [0u16; 8];
        for x in &mut g {
            let r = self.next() as u16;
            *x = self.pick(&[0, 0, 0, 1, 0xa, 0xff, 0x100, 0xffff, r, r >> 4, r >> 8]);
        }
        self.pick(&[
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::from(raw),
            Ipv6Addr::from(g),
            Ipv6Addr::from(g),
            Ipv6Addr::from(g),
            "fe80::1".parse().unwrap(),
            "::ffff:1.2.3.4".parse().unwrap(),
            "::1.2.3.4".parse().unwrap(),
            "ff02::1:ff00:100".parse().unwrap(),
        ])
    }
    fn num(&mut self) -> u32 {
        let x = self.next() as u32;
        self.pick(&[0, 1, 9, 10, 99, 100, 65_535, u32::MAX, x])
    }
    fn time(&mut self) -> Time {
        // Out of the fast path's range too: before 1970, and past jiff's last time.
        let x = (self.next() >> 2) as i128;
        Time(self.pick(&[
            0,
            -1,
            1_796_000_000_123_456_789,
            x,
            i128::from(i64::MAX) * 1_000_000_000,
        ]))
    }
    fn mac(&mut self) -> Mac {
        let b = self.next().to_le_bytes();
        Mac([b[0], b[1], b[2], b[3], b[4], b[5]])
    }
    fn trigger(&mut self) -> Trigger<'static> {
        Trigger {
            src: self.ip(),
            dst: self.ip(),
            proto: self.text(),
            sport: self.maybe(|r| r.num() as u16),
            dport: self.maybe(|r| r.num() as u16),
            icmp_type: self.maybe(|r| r.num() as u8),
            len: self.num(),
            mark: self.num(),
            origin: self.pick(&[
                Origin::Local,
                Origin::Kernel,
                Origin::Forwarded,
                Origin::PacketSocket,
            ]),
            pid: self.maybe(Rng::num),
            comm: self.maybe(Rng::text),
            in_ifindex: self.maybe(Rng::num),
            in_ifname: self.maybe(Rng::text),
            drop_reason: self.maybe(Rng::text),
        }
    }
    fn remedy(&mut self) -> Remedy<'static> {
        Remedy {
            command: self.text(),
            persistent: self.text(),
            tradeoff: self.text(),
        }
    }
    fn verdict(&mut self) -> Verdict<'static> {
        Verdict {
            foreign_sender: self.coin(),
            reason: self.pick(&Reason::ALL),
            explanation: self.text(),
            consequence: self.maybe(Rng::text),
            remedy: self.maybe(Rng::remedy),
        }
    }
    fn if_addr(&mut self) -> IfAddr<'static> {
        IfAddr {
            ifname: self.text(),
            addr: self.v4(),
            prefix_len: self.below(40) as u8,
            scope: self.maybe(|r| r.num() as u8),
            secondary: self.maybe(Rng::coin),
            peer: self.maybe(Rng::v4),
        }
    }
    fn list<T>(&mut self, f: impl Fn(&mut Rng) -> T) -> Vec<T> {
        (0..self.below(4)).map(|_| f(self)).collect()
    }
    fn facts(&mut self) -> RequestFacts<'static> {
        RequestFacts {
            arp_announce: Announce {
                all: self.pick(&[0, 1, 2, -1, i32::MIN, i32::MAX]),
                dev: self.maybe(|r| r.num() as i32),
                effective: self.num() as i32,
            },
            addrs: self.list(|r| Cidr::new(r.v4(), r.below(33) as u8)),
            ns_addrs: self.list(Rng::if_addr),
            route_localnet: self.maybe(|r| Localnet {
                all: r.coin(),
                dev: r.coin(),
            }),
            links: self.maybe(|r| {
                r.list(|r| Link {
                    ifname: r.text().into_owned(),
                    ifindex: r.maybe(Rng::num),
                    master: r.maybe(|r| r.text().into_owned()),
                    vrf_table: r.maybe(Rng::num),
                })
            }),
            lenders: self.maybe(|r| {
                r.list(|r| Lender {
                    ifname: r.text().into_owned(),
                    addr: r.v4(),
                })
            }),
            lenders_cut: self.coin(),
            arp_notify: self.maybe(Rng::coin),
        }
    }
    fn arp(&mut self) -> ArpEvent<'static> {
        let frame: Vec<u8> = (0..self.below(60)).map(|_| self.next() as u8).collect();
        ArpEvent {
            op: self.pick(&[ArpOp::Request, ArpOp::Reply]),
            direction: self.pick(&[Direction::In, Direction::Out]),
            time: self.time(),
            netns: self.num(),
            netns_name: self.maybe(Rng::text),
            ifindex: self.num(),
            ifname: self.text(),
            sender_ip: self.v4(),
            sender_mac: self.mac(),
            target_ip: self.v4(),
            target_mac: self.mac(),
            unicast: self.coin(),
            eth_dst: self.maybe(Rng::mac),
            frame: Hex::encode(&frame),
            trigger: self.maybe(Rng::trigger),
            task: self.maybe(|r| Task {
                pid: r.num(),
                comm: r.text(),
            }),
            neigh_state: self.maybe(Rng::text),
            attempt: self.maybe(Rng::num),
            queued: self.maybe(Rng::num),
            // Never written: present or not, the line is the same.
            egress: None,
            verdict: self.maybe(Rng::verdict),
            facts: self.maybe(Rng::facts),
            facts_error: self.maybe(Rng::text),
        }
    }
    fn ndisc(&mut self) -> NdiscEvent<'static> {
        let frame: Vec<u8> = (0..self.below(90)).map(|_| self.next() as u8).collect();
        NdiscEvent {
            op: self.pick(&[NdiscOp::Solicit, NdiscOp::Advert]),
            direction: Direction::Out,
            time: self.time(),
            netns: self.num(),
            netns_name: self.maybe(Rng::text),
            ifindex: self.num(),
            ifname: self.text(),
            sender_ip: self.v6(),
            sender_mac: self.maybe(Rng::mac),
            target_ip: self.v6(),
            dst_ip: self.v6(),
            unicast: self.coin(),
            eth_dst: self.maybe(Rng::mac),
            advert: self.maybe(|r| AdvertFlags {
                router: r.coin(),
                solicited: r.coin(),
                override_: r.coin(),
            }),
            nonce: self.coin(),
            frame: Hex::encode(&frame),
            trigger: self.maybe(Rng::trigger),
            neigh_state: self.maybe(Rng::text),
            attempt: self.maybe(Rng::num),
            queued: self.maybe(Rng::num),
            verdict: self.maybe(Rng::verdict),
            dev_addrs: self.maybe(|r| {
                r.list(|r| If6Addr {
                    addr: r.v6(),
                    prefix_len: r.below(130) as u8,
                    scope: r.pick(&[
                        Scope6::Global,
                        Scope6::Host,
                        Scope6::Link,
                        Scope6::Site,
                        Scope6::Other,
                    ]),
                    // Known bits, unknown ones, both and none.
                    flags: Flags6(r.pick(&[0, 0x02, 0x80, 0x42, 0xfff, 0x1000, 0x8000_0082])),
                })
            }),
            dev_addrs_cut: self.coin(),
            user_socket: self.coin(),
        }
    }
    fn failed(&mut self) -> NeighFailed<'static> {
        NeighFailed {
            time: self.time(),
            netns: self.num(),
            netns_name: self.maybe(Rng::text),
            ifindex: self.num(),
            ifname: self.text(),
            target_ip: self.ip(),
            attempts: self.num(),
            dropped: self.list(Rng::trigger),
            dropped_omitted: {
                let x = self.next();
                self.pick(&[0, 1, u64::MAX, x])
            },
            cause: self.maybe(|r| {
                r.pick(&[
                    ChangeCause::Timer,
                    ChangeCause::Netlink,
                    ChangeCause::Task,
                    ChangeCause::Kernel,
                ])
            }),
            nlmsg_pid: self.maybe(Rng::num),
            task: self.maybe(|r| Task {
                pid: r.num(),
                comm: r.text(),
            }),
            reason: self.maybe(|r| r.pick(&Reason::ALL)),
            explanation: self.maybe(Rng::text),
            remedy: self.maybe(Rng::remedy),
            link_locals: self.maybe(Rng::num),
        }
    }
}

fn assert_same(rec: &Record<'_>) {
    let want = serde_json::to_vec(rec).unwrap();
    let mut got = b"left alone".to_vec();
    rec.write_json(&mut got).unwrap();
    let got = &got[b"left alone".len()..];
    assert!(
        got == want.as_slice(),
        "hand-written:\n{}\nserde_json:\n{}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn same_bytes_as_serde() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5000 {
        let e = r.arp();
        assert_same(&Record::Arp(Held::Borrowed(&e)));
        let f = r.failed();
        assert_same(&Record::NeighFailed(Held::Borrowed(&f)));
        let n = r.ndisc();
        assert_same(&Record::Ndisc(Held::Borrowed(&n)));
    }
}

#[test]
fn ipv6_text_is_displays() {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..100_000 {
        let a = r.v6();
        let mut got = Vec::new();
        crate::addr::put_ipv6(a, &mut got);
        assert_eq!(String::from_utf8(got).unwrap(), a.to_string());
    }
}

/// Every character class at every offset of the eight-byte steps, and every byte value a
/// string can start with.
#[test]
fn strings_escape_like_serde() {
    let mut all = String::new();
    for c in (0u8..=0x7f)
        .map(char::from)
        .chain(['é', '\u{80}', '\u{ffff}', '🦀'])
    {
        all.push(c);
        for pad in 0..17 {
            let s = format!("{}{c}{}", "x".repeat(pad), "y".repeat(16 - pad));
            let mut got = Vec::new();
            super::string(&mut got, &s);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }
    let mut got = Vec::new();
    super::string(&mut got, &all);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        serde_json::to_string(&all).unwrap()
    );
}
