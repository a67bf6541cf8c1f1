//! The JSON line of the records a storm is made of (`arp`, `ndisc`, `neigh_failed`), written by hand:
//! through serde they were about a quarter of the tracer's CPU per request in a storm (the
//! `flatten`ed map, one `io::Write` call per token, escaping a byte at a time). The bytes are
//! exactly serde_json's: `tests::same_bytes_as_serde` compares both on varied records, and any
//! part that is rare or not hot (links, lenders) still goes through serde_json.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::addr::{Cidr, IfAddr};
use crate::arp::{ArpEvent, ArpOp, Direction};
use crate::facts::RequestFacts;
use crate::ndisc::{If6Addr, NdiscEvent, NdiscOp, Scope6};
use crate::neigh::NeighFailed;
use crate::time::Time;
use crate::trigger::{Origin, Task, Trigger};
use crate::verdict::{Remedy, Verdict};

/// `,"name":` as one constant: a record has some forty keys.
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// `head` from a record's own fields: `arp`, `ndisc` and `neigh_failed` name them alike.
macro_rules! head {
    ($out:expr, $op:expr, $dir:expr, $e:expr) => {
        head(
            $out,
            $op,
            $dir,
            $e.time,
            $e.netns,
            $e.netns_name.as_deref(),
            $e.ifindex,
            &$e.ifname,
        )
    };
}

/// `entry_verdict` from a solicitation's own fields (`arp` and `ndisc` share their names).
macro_rules! entry_verdict {
    ($out:expr, $e:expr) => {
        entry_verdict(
            $out,
            $e.neigh_state.as_deref(),
            $e.attempt,
            $e.queued,
            $e.verdict.as_ref(),
        )
    };
}

/// Room for a whole line of the usual size, so that writing it never grows the buffer midway.
const LINE: usize = 4096;

/// Appends the JSON object of an `arp` record (`{"type":"arp",...}`, no newline).
pub fn write_arp(out: &mut Vec<u8>, e: &ArpEvent<'_>) {
    let op: &[u8] = match e.op {
        ArpOp::Request => br#"{"type":"arp","op":"request""#,
        ArpOp::Reply => br#"{"type":"arp","op":"reply""#,
    };
    head!(out, op, Some(e.direction), e);
    key!(out, "sender_ip");
    ipv4(out, e.sender_ip);
    key!(out, "sender_mac");
    mac(out, &e.sender_mac);
    key!(out, "target_ip");
    ipv4(out, e.target_ip);
    key!(out, "target_mac");
    mac(out, &e.target_mac);
    key!(out, "unicast");
    boolean(out, e.unicast);
    key!(out, "eth_dst");
    opt_mac(out, e.eth_dst.as_ref());
    frame_trigger(out, e.frame.digits(), e.trigger.as_ref());
    if let Some(t) = &e.task {
        key!(out, "task");
        task(out, t);
    }
    entry_verdict!(out, e);
    if let Some(f) = &e.facts {
        request_facts(out, f);
    }
    if let Some(fe) = &e.facts_error {
        key!(out, "facts_error");
        string(out, fe);
    }
    out.push(b'}');
}

/// Appends the JSON object of an `ndisc` record (`{"type":"ndisc",...}`, no newline).
pub fn write_ndisc(out: &mut Vec<u8>, e: &NdiscEvent<'_>) {
    let op: &[u8] = match e.op {
        NdiscOp::Solicit => br#"{"type":"ndisc","op":"solicit""#,
        NdiscOp::Advert => br#"{"type":"ndisc","op":"advert""#,
    };
    head!(out, op, Some(e.direction), e);
    key!(out, "sender_ip");
    ipv6(out, e.sender_ip);
    key!(out, "sender_mac");
    opt_mac(out, e.sender_mac.as_ref());
    key!(out, "target_ip");
    ipv6(out, e.target_ip);
    key!(out, "dst_ip");
    ipv6(out, e.dst_ip);
    key!(out, "unicast");
    boolean(out, e.unicast);
    key!(out, "eth_dst");
    opt_mac(out, e.eth_dst.as_ref());
    if let Some(a) = &e.advert {
        key!(out, "advert");
        out.extend_from_slice(br#"{"router":"#);
        boolean(out, a.router);
        out.extend_from_slice(br#","solicited":"#);
        boolean(out, a.solicited);
        out.extend_from_slice(br#","override":"#);
        boolean(out, a.override_);
        out.push(b'}');
    }
    key!(out, "nonce");
    boolean(out, e.nonce);
    frame_trigger(out, e.frame.digits(), e.trigger.as_ref());
    entry_verdict!(out, e);
    key!(out, "dev_addrs");
    match &e.dev_addrs {
        Some(a) => array(out, a, if6_addr),
        None => null(out),
    }
    if e.dev_addrs_cut {
        key!(out, "dev_addrs_cut");
        boolean(out, true);
    }
    if e.user_socket {
        key!(out, "user_socket");
        boolean(out, true);
    }
    out.push(b'}');
}

fn if6_addr(out: &mut Vec<u8>, a: &If6Addr) {
    out.extend_from_slice(br#"{"addr":"#);
    ipv6(out, a.addr);
    key!(out, "prefix_len");
    uint(out, a.prefix_len.into());
    key!(out, "scope");
    out.extend_from_slice(match a.scope {
        Scope6::Global => br#""global""#,
        Scope6::Host => br#""host""#,
        Scope6::Link => br#""link""#,
        Scope6::Site => br#""site""#,
        Scope6::Other => br#""other""#,
    });
    key!(out, "flags");
    // Flags6::names() without its Vec: every address of a solicitation's device has some.
    out.push(b'[');
    let mut first = true;
    for (bit, name) in crate::ndisc::FLAG_NAMES {
        if a.flags.0 & bit != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            quoted(out, name.as_bytes());
        }
    }
    let known = crate::ndisc::FLAG_NAMES.iter().fold(0, |m, (b, _)| m | b);
    if a.flags.0 & !known != 0 {
        if !first {
            out.push(b',');
        }
        string(out, &format!("{:#x}", a.flags.0 & !known));
    }
    out.push(b']');
    out.push(b'}');
}

/// `{"type":...,"op":...` (given whole), the direction of a frame's record, then the time and
/// the place: how the frame records begin.
#[allow(clippy::too_many_arguments)]
fn head(
    out: &mut Vec<u8>,
    type_op: &[u8],
    direction: Option<Direction>,
    t: Time,
    netns: u32,
    netns_name: Option<&str>,
    ifindex: u32,
    ifname: &str,
) {
    out.reserve(LINE);
    out.extend_from_slice(type_op);
    match direction {
        Some(Direction::In) => out.extend_from_slice(br#","direction":"in""#),
        Some(Direction::Out) => out.extend_from_slice(br#","direction":"out""#),
        None => {}
    }
    key!(out, "time");
    time(out, t);
    place(out, netns, netns_name, ifindex, ifname);
}

/// The frame's hex and the packet that triggered it, as both solicitations carry them.
fn frame_trigger(out: &mut Vec<u8>, digits: &[u8], t: Option<&Trigger<'_>>) {
    key!(out, "frame");
    quoted(out, digits);
    key!(out, "trigger");
    match t {
        Some(t) => trigger(out, t),
        None => null(out),
    }
}

/// The neighbour entry's state, attempt and queue, then the flattened verdict.
fn entry_verdict(
    out: &mut Vec<u8>,
    state: Option<&str>,
    attempt: Option<u32>,
    queued: Option<u32>,
    v: Option<&Verdict<'_>>,
) {
    key!(out, "neigh_state");
    opt_str(out, state);
    key!(out, "attempt");
    opt_uint(out, attempt.map(u64::from));
    key!(out, "queued");
    opt_uint(out, queued.map(u64::from));
    if let Some(v) = v {
        verdict(out, v);
    }
}

/// The namespace and interface fields every record type here carries, in the schema's order.
fn place(out: &mut Vec<u8>, netns: u32, netns_name: Option<&str>, ifindex: u32, ifname: &str) {
    key!(out, "netns");
    uint(out, netns.into());
    key!(out, "netns_name");
    opt_str(out, netns_name);
    key!(out, "ifindex");
    uint(out, ifindex.into());
    key!(out, "ifname");
    string(out, ifname);
}

/// Appends the JSON object of a `neigh_failed` record (no newline).
pub fn write_neigh_failed(out: &mut Vec<u8>, f: &NeighFailed<'_>) {
    head!(out, br#"{"type":"neigh_failed""#, None, f);
    key!(out, "target_ip");
    ip(out, &f.target_ip);
    key!(out, "attempts");
    uint(out, f.attempts.into());
    key!(out, "dropped");
    array(out, &f.dropped, trigger);
    key!(out, "dropped_omitted");
    uint(out, f.dropped_omitted);
    if let Some(c) = f.cause {
        key!(out, "cause");
        string(out, c.code());
    }
    if let Some(p) = f.nlmsg_pid {
        key!(out, "nlmsg_pid");
        uint(out, p.into());
    }
    if let Some(t) = &f.task {
        key!(out, "task");
        out.extend_from_slice(br#"{"pid":"#);
        uint(out, t.pid.into());
        key!(out, "comm");
        string(out, &t.comm);
        out.push(b'}');
    }
    if let Some(r) = &f.reason {
        key!(out, "reason");
        string(out, r.code());
    }
    if let Some(x) = &f.explanation {
        key!(out, "explanation");
        string(out, x);
    }
    if let Some(r) = &f.remedy {
        key!(out, "remedy");
        remedy(out, r);
    }
    out.push(b'}');
}

fn trigger(out: &mut Vec<u8>, t: &Trigger<'_>) {
    out.extend_from_slice(br#"{"src":"#);
    ip(out, &t.src);
    key!(out, "dst");
    ip(out, &t.dst);
    key!(out, "proto");
    string(out, &t.proto);
    key!(out, "sport");
    opt_uint(out, t.sport.map(u64::from));
    key!(out, "dport");
    opt_uint(out, t.dport.map(u64::from));
    key!(out, "icmp_type");
    opt_uint(out, t.icmp_type.map(u64::from));
    key!(out, "len");
    uint(out, t.len.into());
    key!(out, "mark");
    uint(out, t.mark.into());
    key!(out, "origin");
    out.extend_from_slice(match t.origin {
        Origin::Local => br#""local""#,
        Origin::Kernel => br#""kernel""#,
        Origin::Forwarded => br#""forwarded""#,
        Origin::PacketSocket => br#""packet_socket""#,
    });
    key!(out, "pid");
    opt_uint(out, t.pid.map(u64::from));
    key!(out, "comm");
    opt_str(out, t.comm.as_deref());
    key!(out, "in_ifindex");
    opt_uint(out, t.in_ifindex.map(u64::from));
    key!(out, "in_ifname");
    opt_str(out, t.in_ifname.as_deref());
    if let Some(d) = &t.drop_reason {
        key!(out, "drop_reason");
        string(out, d);
    }
    out.push(b'}');
}

fn task(out: &mut Vec<u8>, t: &Task<'_>) {
    out.extend_from_slice(br#"{"pid":"#);
    uint(out, t.pid.into());
    key!(out, "comm");
    string(out, &t.comm);
    out.push(b'}');
}

/// The verdict's fields, flattened into the record.
fn verdict(out: &mut Vec<u8>, v: &Verdict<'_>) {
    key!(out, "foreign_sender");
    boolean(out, v.foreign_sender);
    key!(out, "reason");
    string(out, v.reason.code());
    key!(out, "explanation");
    string(out, &v.explanation);
    key!(out, "consequence");
    opt_str(out, v.consequence.as_deref());
    key!(out, "remedy");
    match &v.remedy {
        Some(r) => remedy(out, r),
        None => null(out),
    }
}

fn remedy(out: &mut Vec<u8>, r: &Remedy<'_>) {
    out.extend_from_slice(br#"{"command":"#);
    string(out, &r.command);
    key!(out, "persistent");
    string(out, &r.persistent);
    key!(out, "tradeoff");
    string(out, &r.tradeoff);
    out.push(b'}');
}

/// The request's facts, flattened into the record.
fn request_facts(out: &mut Vec<u8>, f: &RequestFacts<'_>) {
    let a = &f.arp_announce;
    key!(out, "arp_announce");
    out.extend_from_slice(br#"{"all":"#);
    int(out, a.all.into());
    out.extend_from_slice(br#","dev":"#);
    match a.dev {
        Some(d) => int(out, d.into()),
        None => null(out),
    }
    out.extend_from_slice(br#","effective":"#);
    int(out, a.effective.into());
    out.push(b'}');
    key!(out, "addrs");
    array(out, &f.addrs, cidr);
    key!(out, "ns_addrs");
    array(out, &f.ns_addrs, if_addr);
    if let Some(l) = &f.route_localnet {
        key!(out, "route_localnet");
        out.extend_from_slice(br#"{"all":"#);
        boolean(out, l.all);
        out.extend_from_slice(br#","dev":"#);
        boolean(out, l.dev);
        out.push(b'}');
    }
    // VRFs and borrowed addresses are rare: serde writes them.
    if let Some(l) = &f.links {
        key!(out, "links");
        serde(out, l);
    }
    if let Some(l) = &f.lenders {
        key!(out, "lenders");
        serde(out, l);
    }
    if f.lenders_cut {
        key!(out, "lenders_cut");
        boolean(out, true);
    }
    if let Some(n) = f.arp_notify {
        key!(out, "arp_notify");
        boolean(out, n);
    }
}

fn if_addr(out: &mut Vec<u8>, a: &IfAddr<'_>) {
    out.extend_from_slice(br#"{"ifname":"#);
    string(out, &a.ifname);
    key!(out, "addr");
    ipv4(out, a.addr);
    key!(out, "prefix_len");
    uint(out, a.prefix_len.into());
    if let Some(s) = a.scope {
        key!(out, "scope");
        uint(out, s.into());
    }
    if let Some(s) = a.secondary {
        key!(out, "secondary");
        boolean(out, s);
    }
    if let Some(p) = a.peer {
        key!(out, "peer");
        ipv4(out, p);
    }
    out.push(b'}');
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn uint(out: &mut Vec<u8>, v: u64) {
    // Most numbers in a record are small (ifindex, prefix length, scope, attempt).
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    // Pushed, not copied: memcpy of a few bytes is the dearer call.
    for &d in crate::text::decimal(v, &mut [0; 20]).as_bytes() {
        out.push(d);
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    uint(out, v.unsigned_abs());
}

fn opt_uint(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => uint(out, v),
        None => null(out),
    }
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => null(out),
    }
}

fn time(out: &mut Vec<u8>, t: Time) {
    let mut buf = [0u8; 30];
    match crate::time::rfc3339_fast(t.0, &mut buf) {
        // Digits and punctuation only.
        Some(s) => quoted(out, s.as_bytes()),
        None => serde(out, &t),
    }
}

fn ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    out.push(b'"');
    crate::addr::put_ipv4(a, out);
    out.push(b'"');
}

fn ipv6(out: &mut Vec<u8>, a: Ipv6Addr) {
    out.push(b'"');
    crate::addr::put_ipv6(a, out);
    out.push(b'"');
}

fn ip(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(a) => ipv4(out, *a),
        IpAddr::V6(a) => ipv6(out, *a),
    }
}

fn mac(out: &mut Vec<u8>, m: &crate::Mac) {
    quoted(out, &m.text());
}

fn opt_mac(out: &mut Vec<u8>, m: Option<&crate::Mac>) {
    match m {
        Some(m) => mac(out, m),
        None => null(out),
    }
}

/// A JSON array of `items`, each written by `one`.
fn array<T>(out: &mut Vec<u8>, items: &[T], one: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        one(out, x);
    }
    out.push(b']');
}

fn cidr(out: &mut Vec<u8>, c: &Cidr) {
    quoted(out, c.text(&mut [0; 19]).as_bytes());
}

/// Text that needs no escape, in quotes.
fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

/// A value serde writes, for the parts that are rare.
fn serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec fails only on a value that cannot be serialized, which none of the
    // model's can; serde_json would have failed the line the same way.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the C0 controls as `\b \f \n
/// \r \t` or `\u00XX` (lowercase hex), everything else (DEL, non-ASCII) as it is.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    // Eight bytes at a time while none needs an escape: explanations are hundreds of bytes
    // of plain text.
    while i < b.len() {
        if i + 8 <= b.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            if !needs_escape8(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\x0c' => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                let h = crate::mac::hex_pair(c);
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&h);
                i += 1;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(esc);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes is below 0x20, `"` or `\`. Exact: each test is the
/// classic "has a byte below n" trick, which has no false positive as a whole-word answer.
fn needs_escape8(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    below(w, 0x20) | below(w ^ (ONES * b'"' as u64), 1) | below(w ^ (ONES * b'\\' as u64), 1) != 0
}

#[cfg(test)]
mod tests;
