//! `--pcap FILE`: the ARP and ND frames as pcapng for Wireshark, one interface block per
//! (namespace, interface) named `netns/ifname`, nanosecond timestamps, and each packet's
//! trigger and explanation as the packet comment. A received frame's comment also names the
//! conflicts it showed and the change it made to the kernel's table: those records come
//! after it, so packets wait a moment ([`HOLD_NS`]) before they are written.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use arp_trace_model::file::DropBehind;
use arp_trace_model::{
    visible, ArpEvent, ChangeCause, Conflict, Mac, NdiscEvent, NdiscOp, NeighChange, Record, Time,
    Trigger, Verdict,
};

use super::text::{
    describe, describe_conflict, describe_ndisc, describe_neigh_change, describe_trigger,
};
use crate::pipeline::{Counters, Sink};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
/// epb_flags: bits 0-1 are the direction, 1 = inbound (received frames), 2 = outbound.
const EPB_FLAGS: u16 = 2;
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const SHB_USERAPPL: u16 = 4;
/// Interface blocks written; frames on further (namespace, interface) pairs share one more
/// block, `other interfaces`, and name their interface in their comment.
const MAX_INTERFACES: usize = 65_536;
/// A packet is written once a record this much newer came, or (live) once it is a second
/// old: an `ip_moved` conflict waits up to 50 ms for its table change.
pub const HOLD_NS: i128 = 200_000_000;
const HOLD_WALL_NS: i128 = 1_000_000_000;
/// Packets held at most; the oldest is written when one more comes.
const MAX_HELD: usize = 1024;

/// A packet not written yet, and what a later record matches it by (received ARP only).
struct HeldPacket {
    id: u32,
    time: Time,
    data: Vec<u8>,
    comment: String,
    flags: u32,
    received: Option<(u32, String, Ipv4Addr, Mac)>,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// A text option (a comment, a name).
fn option(out: &mut Vec<u8>, code: u16, value: &str) {
    // Option lengths are 16 bits; comments are far shorter, but never write a bad block (nor
    // a UTF-8 string cut inside a character).
    option_bytes(
        out,
        code,
        arp_trace_model::text::clip(value, 0xfff0).as_bytes(),
    );
}

/// An option whose value is not text.
fn option_bytes(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0, pad4(value.len())));
}

/// Wraps a block body in type, total length (twice).
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// The interface name Wireshark shows: `srv/eth3`, or `4026532281/eth3` without a name;
/// control characters in either name are shown as escapes.
pub fn interface_name(place: &Place<'_>) -> String {
    let name = match place.netns_name {
        Some(n) => format!("{n}/{}", place.ifname),
        None => format!("{}/{}", place.netns, place.ifname),
    };
    visible(&name).into_owned()
}

/// Where a frame left: its namespace and interface.
pub struct Place<'a> {
    pub netns: u32,
    pub netns_name: Option<&'a str>,
    pub ifname: &'a str,
}

impl<'a> Place<'a> {
    fn of_arp(ev: &'a ArpEvent<'_>) -> Self {
        Place {
            netns: ev.netns,
            netns_name: ev.netns_name.as_deref(),
            ifname: &ev.ifname,
        }
    }

    fn of_ndisc(ev: &'a NdiscEvent<'_>) -> Self {
        Place {
            netns: ev.netns,
            netns_name: ev.netns_name.as_deref(),
            ifname: &ev.ifname,
        }
    }
}

/// What made the kernel solicit: the trigger, the neighbour's state and the attempt.
fn solicit_parts(
    parts: &mut Vec<String>,
    trigger: Option<&Trigger<'_>>,
    neigh_state: Option<&str>,
    attempt: Option<u32>,
) {
    match trigger {
        Some(t) => parts.push(format!("trigger: {}", describe_trigger(t))),
        None => parts.push("trigger: none (no queued packet)".to_string()),
    }
    if let Some(s) = neigh_state {
        parts.push(format!("neighbour state {s}"));
    }
    if let Some(a) = attempt {
        parts.push(format!("attempt {a}"));
    }
}

/// The verdict: `foreign sender; why (reason): explanation; fix: command`.
fn verdict_parts(parts: &mut Vec<String>, v: &Verdict<'_>) {
    if v.foreign_sender {
        parts.push("foreign sender".to_string());
    }
    parts.push(format!("why ({}): {}", v.reason, v.explanation));
    if let Some(r) = &v.remedy {
        parts.push(format!("fix: {}", r.command));
    }
}

/// An ND frame's comment, as for ARP: trigger, neighbour state, attempt, the frame, why.
pub fn ndisc_comment(ev: &NdiscEvent<'_>) -> String {
    let mut parts = Vec::new();
    if ev.op == NdiscOp::Solicit && !ev.is_dad() {
        solicit_parts(
            &mut parts,
            ev.trigger.as_ref(),
            ev.neigh_state.as_deref(),
            ev.attempt,
        );
    }
    parts.push(describe_ndisc(ev));
    if let Some(v) = &ev.verdict {
        verdict_parts(&mut parts, v);
    }
    visible(&parts.join("; ")).into_owned()
}

/// The packet comment: what made the kernel send it and, for an explained request, why it
/// carries its sender address (`foreign sender; why (reason): explanation`).
pub fn comment(ev: &ArpEvent<'_>) -> String {
    let mut parts = Vec::new();
    if ev.is_sent_request() {
        solicit_parts(
            &mut parts,
            ev.trigger.as_ref(),
            ev.neigh_state.as_deref(),
            ev.attempt,
        );
    }
    parts.push(describe(ev));
    if let Some(v) = &ev.verdict {
        verdict_parts(&mut parts, v);
    } else if let Some(e) = &ev.facts_error {
        parts.push(format!(
            "why: unknown, the namespace's facts are missing: {e}"
        ));
    }
    visible(&parts.join("; ")).into_owned()
}

/// A pcapng writer; a [`Sink`] like the terminal and JSON outputs.
pub struct PcapngWriter {
    path: PathBuf,
    /// `path` as messages show it.
    name: String,
    out: BufWriter<DropBehind<File>>,
    interfaces: HashMap<(u32, String), u32>,
    /// The block frames beyond `MAX_INTERFACES` interfaces share, once written.
    other: Option<u32>,
    block: Vec<u8>,
    held: VecDeque<HeldPacket>,
    /// The newest record's time.
    newest: Time,
}

impl PcapngWriter {
    /// Writes pcapng into `f` (opened by [`super::outfile`]), which `path` names.
    pub fn new(path: &Path, f: File) -> Result<PcapngWriter> {
        let mut w = PcapngWriter {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            out: BufWriter::with_capacity(256 * 1024, DropBehind::new(f)),
            interfaces: HashMap::new(),
            other: None,
            block: Vec::with_capacity(512),
            held: VecDeque::new(),
            newest: Time(i128::MIN),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        option(
            &mut body,
            SHB_USERAPPL,
            &format!("arp-trace {}", env!("CARGO_PKG_VERSION")),
        );
        option(&mut body, OPT_END, "");
        w.out
            .write_all(&block(SHB, &body))
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(w)
    }

    /// The interface block of the event's interface, and whether it is the shared `other
    /// interfaces` one.
    fn interface(&mut self, place: &Place<'_>) -> io::Result<(u32, bool)> {
        let key = (place.netns, place.ifname.to_string());
        if let Some(&id) = self.interfaces.get(&key) {
            return Ok((id, false));
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            if let Some(id) = self.other {
                return Ok((id, true));
            }
            let id = self.write_interface("other interfaces")?;
            self.other = Some(id);
            return Ok((id, true));
        }
        let id = self.write_interface(&interface_name(place))?;
        self.interfaces.insert(key, id);
        Ok((id, false))
    }

    fn write_interface(&mut self, name: &str) -> io::Result<u32> {
        let id = self.interfaces.len() as u32 + self.other.is_some() as u32;
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // snaplen: no limit
        option(&mut body, IF_NAME, name);
        option_bytes(&mut body, IF_TSRESOL, &[9]); // nanoseconds
        option(&mut body, OPT_END, "");
        self.out.write_all(&block(IDB, &body))?;
        Ok(id)
    }

    fn err(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }
}

/// The frame as Ethernet: frames sent without a link-layer header get a synthetic one.
fn ethernet(ev: &ArpEvent<'_>) -> Vec<u8> {
    let frame = ev.frame.bytes();
    if ev.eth_dst.is_some() {
        return frame;
    }
    let mut f = Vec::with_capacity(14 + frame.len());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ev.sender_mac.0);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&frame);
    f
}

/// An ND frame as Ethernet: one sent without a link-layer header gets a synthetic one, to
/// the IPv6 multicast MAC of a multicast destination.
fn ndisc_ethernet(ev: &NdiscEvent<'_>) -> Vec<u8> {
    let frame = ev.frame.bytes();
    if ev.eth_dst.is_some() {
        return frame;
    }
    let d = ev.dst_ip.octets();
    let dst = if ev.dst_ip.is_multicast() {
        [0x33, 0x33, d[12], d[13], d[14], d[15]]
    } else {
        [0; 6]
    };
    let mut f = Vec::with_capacity(14 + frame.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&ev.sender_mac.unwrap_or(Mac([0; 6])).0);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&frame);
    f
}

impl PcapngWriter {
    fn packet(&mut self, ev: &ArpEvent<'_>) -> io::Result<()> {
        let data = ethernet(ev);
        let c = comment(ev);
        let flags = if ev.received() {
            EPB_INBOUND
        } else {
            EPB_OUTBOUND
        };
        let received = ev
            .received()
            .then(|| (ev.netns, ev.ifname.to_string(), ev.sender_ip, ev.sender_mac));
        self.hold_packet(
            &Place::of_arp(ev),
            ev.time,
            data,
            c,
            ev.eth_dst.is_none(),
            flags,
            received,
        )
    }

    fn ndisc_packet(&mut self, ev: &NdiscEvent<'_>) -> io::Result<()> {
        let data = ndisc_ethernet(ev);
        let c = ndisc_comment(ev);
        self.hold_packet(
            &Place::of_ndisc(ev),
            ev.time,
            data,
            c,
            ev.eth_dst.is_none(),
            EPB_OUTBOUND,
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn hold_packet(
        &mut self,
        place: &Place<'_>,
        time: Time,
        data: Vec<u8>,
        mut comment: String,
        no_l2: bool,
        flags: u32,
        received: Option<(u32, String, Ipv4Addr, Mac)>,
    ) -> io::Result<()> {
        let (id, other) = self.interface(place).map_err(|e| self.err(e))?;
        if other {
            comment = format!("interface {}; {comment}", interface_name(place));
        }
        if no_l2 {
            comment.push_str(if flags == EPB_INBOUND {
                "; received without a link-layer header (Ethernet header added)"
            } else {
                "; sent without a link-layer header (Ethernet header added)"
            });
        }
        if self.held.len() >= MAX_HELD {
            self.write_front()?;
        }
        self.held.push_back(HeldPacket {
            id,
            time,
            data,
            comment,
            flags,
            received,
        });
        Ok(())
    }

    /// The held received frame that showed a conflict or made a table change, by where it
    /// arrived, its sender and its time.
    fn held_frame(
        &mut self,
        netns: u32,
        ifname: &str,
        sender: (Ipv4Addr, Mac),
        time: Time,
    ) -> Option<&mut HeldPacket> {
        self.held.iter_mut().rev().find(|p| {
            p.time == time
                && p.received.as_ref().is_some_and(|(n, i, ip, mac)| {
                    (*n, i.as_str(), (*ip, *mac)) == (netns, ifname, sender)
                })
        })
    }

    fn note_conflict(&mut self, c: &Conflict<'_>) {
        let text = visible(&describe_conflict(c)).into_owned();
        if let Some(p) = self.held_frame(c.netns, &c.ifname, (c.ip, c.mac), c.time) {
            p.comment.push_str("; ");
            p.comment.push_str(&text);
        }
    }

    fn note_change(&mut self, c: &NeighChange<'_>) {
        let Some(f) = c
            .frame
            .as_ref()
            .filter(|_| c.cause == ChangeCause::ReceivedArp)
        else {
            return;
        };
        let text = visible(&describe_neigh_change(c)).into_owned();
        if let Some(p) = self.held_frame(c.netns, &c.ifname, (f.sender_ip, f.sender_mac), f.time) {
            p.comment.push_str("; the kernel's table: ");
            p.comment.push_str(&text);
        }
    }

    /// Writes the packets whose wait is over: `wall` also those a second old by the clock
    /// (live, when nothing newer comes), `all` every one.
    fn release(&mut self, wall: bool, all: bool) -> io::Result<()> {
        let now = wall.then(|| Time::now().0);
        while let Some(p) = self.held.front() {
            let due = all
                || self.newest.0.saturating_sub(p.time.0) >= HOLD_NS
                || now.is_some_and(|n| n.saturating_sub(p.time.0) >= HOLD_WALL_NS);
            if !due {
                break;
            }
            self.write_front()?;
        }
        Ok(())
    }

    fn write_front(&mut self) -> io::Result<()> {
        let Some(p) = self.held.pop_front() else {
            return Ok(());
        };
        let ts = p.time.0.max(0) as u64;
        let b = &mut self.block;
        b.clear();
        b.extend_from_slice(&p.id.to_le_bytes());
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&p.data);
        b.extend(std::iter::repeat_n(0, pad4(p.data.len())));
        option_bytes(b, EPB_FLAGS, &p.flags.to_le_bytes());
        option(b, OPT_COMMENT, &p.comment);
        option(b, OPT_END, "");
        let blk = block(EPB, b);
        self.out.write_all(&blk).map_err(|e| self.err(e))
    }
}

impl Sink for PcapngWriter {
    fn output(&self) -> &str {
        &self.name
    }
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        match rec {
            Record::Arp(ev) => self.packet(ev)?,
            Record::Ndisc(ev) => self.ndisc_packet(ev)?,
            Record::Conflict(c) => self.note_conflict(c),
            Record::NeighChange(c) => self.note_change(c),
            _ => {}
        }
        if let Some(t) = rec.time() {
            self.newest = self.newest.max(t);
        }
        self.release(false, false)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.release(true, false)?;
        self.out.flush().map_err(|e| self.err(e))
    }
    fn finish(&mut self, _: &Counters) -> io::Result<()> {
        self.release(false, true)?;
        self.out.flush().map_err(|e| self.err(e))?;
        self.out
            .get_ref()
            .get_ref()
            .sync_data()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ring::decode_arp;
    use crate::kernel::ring::tests::{raw, seed_frame};
    use arp_trace_model::{Held, Origin};

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn a_long_comment_is_cut_between_characters() {
        // 0xfff0 is not a multiple of 3: a cut by bytes alone would split the last "€".
        let long = "€".repeat(30_000);
        let mut out = Vec::new();
        option(&mut out, 1, &long);
        let len = u16::from_le_bytes([out[2], out[3]]) as usize;
        assert!(len <= 0xfff0 && len.is_multiple_of(3), "{len}");
        assert!(std::str::from_utf8(&out[4..4 + len]).is_ok());
        assert!(out.len().is_multiple_of(4), "options are padded to 32 bits");
    }

    #[test]
    fn comment_carries_trigger_and_explanation() {
        use crate::explain::tests::trigger;
        let mut ev =
            crate::kernel::ring::tests::request_event("eth3", "203.0.113.10", "198.51.100.20");
        ev.trigger = Some(trigger("203.0.113.10", Origin::Local));
        let facts = crate::explain::tests::seed_facts();
        ev.verdict = Some(crate::explain::explain(&ev, &facts));
        let c = comment(&ev);
        assert!(c.starts_with("trigger: udp 203.0.113.10:"), "{c}");
        assert!(
            c.contains(
                "; foreign sender; why (announce0_local_source): eth3 announces 203.0.113.10"
            ),
            "{c}"
        );
        assert!(
            c.contains("; fix: sysctl -w net.ipv4.conf.eth3.arp_announce=1"),
            "{c}"
        );
    }

    #[test]
    fn blocks_are_well_formed_and_interfaces_shared() {
        let path = std::env::temp_dir().join(format!("arp-trace-pcap-{}", std::process::id()));
        let mut w = PcapngWriter::new(&path, File::create(&path).unwrap()).unwrap();
        let f = seed_frame();
        let mut ev = decode_arp(&raw(&f, 14), 1_000_000_123).unwrap();
        ev.netns_name = Some("srv".into());
        w.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        w.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        ev.ifname = "eth5".into();
        w.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        w.flush().unwrap();
        let b = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // Walk the blocks: every length is a multiple of 4 and repeated at the end.
        let mut o = 0;
        let mut kinds = Vec::new();
        while o < b.len() {
            let (k, len) = (u32_at(&b, o), u32_at(&b, o + 4) as usize);
            assert_eq!(len % 4, 0);
            assert_eq!(u32_at(&b, o + len - 4) as usize, len);
            kinds.push(k);
            if k == EPB {
                assert_eq!(u32_at(&b, o + 20) as usize, f.len());
                assert_eq!(&b[o + 28..o + 28 + f.len()], &f[..]);
                // The first option: epb_flags, 4 bytes, outbound.
                let opt = o + 28 + f.len() + pad4(f.len());
                assert_eq!(&b[opt..opt + 8], &[2, 0, 4, 0, 2, 0, 0, 0]);
            }
            o += len;
        }
        // Packets wait (HOLD_NS) for the records that annotate them; interfaces do not.
        assert_eq!(kinds, [SHB, IDB, IDB, EPB, EPB, EPB]);
        assert!(String::from_utf8_lossy(&b).contains("srv/eth3"));
        assert!(String::from_utf8_lossy(&b).contains("srv/eth5"));
    }

    /// Wireshark shows comments and interface names as they are: they carry escapes, not
    /// control characters.
    #[test]
    fn hostile_names_are_escaped_in_the_capture() {
        let ev = crate::sinks::tests::hostile_event();
        crate::sinks::tests::assert_inert(&comment(&ev), &[]);
        assert_eq!(interface_name(&Place::of_arp(&ev)), "n\\as/e\\x1b[2J\\xff");
        assert!(
            comment(&ev).contains("\\x1b]2;owned\\a[4242]"),
            "{}",
            comment(&ev)
        );
    }
}
