//! JSON helpers: parsing the tracer's JSON Lines and checking events' fields and frames.

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::Netns;

/// Parse JSON Lines (empty lines skipped); panics on a line that is not JSON.
pub fn parse_json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The string field `key` of `v` (panics if missing or not a string).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("event has no string field {key:?}: {v}"))
}

/// A request this host sent (not one its devices received).
pub fn is_request(v: &Value) -> bool {
    v["op"] == "request" && !is_received(v)
}

/// A reply this host sent.
pub fn is_reply(v: &Value) -> bool {
    v["op"] == "reply" && !is_received(v)
}

/// A frame one of the host's devices received (`"direction":"in"`).
pub fn is_received(v: &Value) -> bool {
    v["direction"] == "in"
}

/// A neighbour-table change that pointed the entry for `ip` at `mac`.
pub fn is_change_to(v: &Value, ip: &str, mac: &str) -> bool {
    v["type"] == "neigh_change" && v["ip"] == ip && v["new_mac"] == mac
}

/// Event from namespace `ns` (by name).
pub fn from_ns(v: &Value, ns: &Netns) -> bool {
    v["netns_name"] == ns.name()
}

/// Check the fields of the JSON object `v` against `expected` (a missing field counts as
/// null); report every mismatch at once, with the whole object.
#[track_caller]
pub fn assert_fields(v: &Value, expected: &[(&str, Value)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, want)| v.get(*k).unwrap_or(&Value::Null) != want)
        .map(|(k, want)| {
            format!(
                "{k}: got {}, expected {want}",
                v.get(*k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}\nin {v}", wrong.join("\n"));
}

/// `xx:xx:xx:xx:xx:xx`, lower-case hex.
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn mac_hex(mac: &str) -> String {
    mac.replace(':', "")
}

fn ip_hex(ip: &str) -> String {
    let a: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("not an IPv4 address: {ip}"));
    a.octets().iter().map(|b| format!("{b:02x}")).collect()
}

/// Check that the event's `frame` hex (Ethernet + ARP for IPv4 over Ethernet) agrees with its
/// decoded fields.
pub fn assert_frame_consistent(v: &Value) {
    let frame = s(v, "frame");
    assert!(frame.len() >= 84, "frame too short for Ethernet+ARP: {v}");
    assert!(
        frame.bytes().all(|b| b.is_ascii_hexdigit()),
        "frame is not hex: {v}"
    );
    let f = frame.to_ascii_lowercase();
    let op = if v["op"] == "request" { "0001" } else { "0002" };
    assert_eq!(&f[0..12], mac_hex(s(v, "eth_dst")), "eth dst in frame: {v}");
    assert_eq!(
        &f[12..24],
        mac_hex(s(v, "sender_mac")),
        "eth src in frame: {v}"
    );
    assert_eq!(&f[24..28], "0806", "ethertype: {v}");
    assert_eq!(&f[28..40], "000108000604", "ARP htype/ptype/hlen/plen: {v}");
    assert_eq!(&f[40..44], op, "ARP op: {v}");
    assert_eq!(&f[44..56], mac_hex(s(v, "sender_mac")), "ARP sha: {v}");
    assert_eq!(&f[56..64], ip_hex(s(v, "sender_ip")), "ARP spa: {v}");
    assert_eq!(&f[64..76], mac_hex(s(v, "target_mac")), "ARP tha: {v}");
    assert_eq!(&f[76..84], ip_hex(s(v, "target_ip")), "ARP tpa: {v}");
}

/// Seconds since midnight of an RFC 3339 time `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`-like string
/// (the offset is ignored; only differences between close timestamps are meaningful).
pub fn time_of_day_secs(t: &str) -> f64 {
    let (_, rest) = t
        .split_once('T')
        .unwrap_or_else(|| panic!("not RFC 3339: {t}"));
    let end = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let hms = &rest[..end];
    let mut it = hms.split(':');
    let h: f64 = it
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad time {t}"));
    let m: f64 = it
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad time {t}"));
    let sec: f64 = it
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad time {t}"));
    h * 3600.0 + m * 60.0 + sec
}
