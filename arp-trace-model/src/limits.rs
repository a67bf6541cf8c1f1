//! How large a trace's lines and fields may be, so that what a reader holds is bounded by
//! these numbers, not by the file: a hostile or broken file ends with a one-line error naming
//! its line and field instead of exhausting memory.
//!
//! Lists and maps are bounded while a line is parsed (a list of empty objects costs far more
//! parsed than as text, so waiting for the end of the line would be too late), and so is the
//! total of their entries per record ([`RECORD_ENTRIES`], [`HEADER_ENTRIES`]). Strings are
//! checked once a record is whole: a string never outgrows its line, which the reader bounds
//! first ([`MAX_LINE`], [`MAX_LARGE_LINE`]). Each bound is several times what arp-trace
//! writes, so every trace it wrote reads.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Longest record line. An ARP record is about 2 KiB, and 4096 namespace addresses (what the
/// tracer lists at most) make it about 400 KiB.
pub const MAX_LINE: usize = 4 << 20;
/// Longest header or summary trailer line (a trace has one of each): the header snapshots up
/// to 256 namespaces, the trailer holds up to 4096 summary rows.
pub const MAX_LARGE_LINE: usize = 16 << 20;

/// An interface name: at most 15 bytes (IFNAMSIZ - 1), each of which may be written `\xNN`.
pub const IFNAME: usize = 15 * 4;
/// A process name (`comm`): at most 15 bytes (TASK_COMM_LEN - 1), each may be `\xNN`.
pub const COMM: usize = 15 * 4;
/// An `ip netns` name: a file name of at most 255 bytes (NAME_MAX), each may be `\xNN`.
pub const NETNS_NAME: usize = 255 * 4;
/// Explanations, consequences, remedies and error texts: arp-trace writes under 1 KiB.
pub const TEXT: usize = 8 << 10;
/// Short words: protocol names, neighbour states, drop reasons.
pub const WORD: usize = 64;
/// Header strings (hostname, kernel release, hooks) and summary counter names.
pub const LABEL: usize = 4096;
/// A frame in hex: the tracer copies at most 64 bytes of it.
pub const FRAME_HEX: usize = 2 * 4096;

/// Addresses in one list (`addrs`, `ns_addrs`, a snapshot interface's `ipv4`): the tracer
/// keeps at most 4096 per namespace.
pub const ADDRS: usize = 4096;
/// Interfaces in one namespace (a snapshot's `interfaces`, a `watched` record's
/// `arp_announce`).
pub const INTERFACES: usize = 65_536;
/// Namespaces in a header's snapshot (the tracer snapshots at most 256).
pub const NAMESPACES: usize = 4096;
/// `ip netns` names in a header.
pub const NETNS_NAMES: usize = HEADER_ENTRIES;
/// Dropped packets listed in a `neigh_failed` record (the tracer lists at most 32).
pub const DROPPED: usize = 256;
/// Summary rows (the summary keeps at most 4096).
pub const ROWS: usize = 4096;
/// Flows or processes listed in a summary row (the summary counts at most 32).
pub const TOP: usize = 32;
/// List and map entries in one record, all lists together.
pub const RECORD_ENTRIES: usize = 4 * ADDRS + INTERFACES;
/// List and map entries in the header, all lists together (namespaces, their interfaces and
/// addresses, `ip netns` names): a snapshot of 256 namespaces with a hundred interfaces each.
pub const HEADER_ENTRIES: usize = 65_536;

thread_local! {
    /// Entries the record being parsed on this thread may still have.
    static ENTRIES_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Runs a parse that may hold at most `entries` list and map entries in all.
pub(crate) fn with_entries<T>(entries: usize, parse: impl FnOnce() -> T) -> T {
    let before = ENTRIES_LEFT.with(|l| l.replace(entries));
    let out = parse();
    ENTRIES_LEFT.with(|l| l.set(before));
    out
}

fn take_entry<E: de::Error>() -> Result<(), E> {
    ENTRIES_LEFT.with(|l| match l.get() {
        0 => Err(E::custom(
            "more list and map entries than a record may have (a trace's limits are in \
             arp-trace-model's limits.rs)",
        )),
        n => {
            l.set(n - 1);
            Ok(())
        }
    })
}

struct SeqOf<T> {
    max: usize,
    field: &'static str,
    item: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqOf<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {} entries", self.max)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(x) = seq.next_element()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format!(
                    "{}: more than {} entries",
                    self.field, self.max
                )));
            }
            take_entry()?;
            out.push(x);
        }
        Ok(out)
    }
}

struct MapOf<K, V> {
    max: usize,
    field: &'static str,
    entry: PhantomData<(K, V)>,
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for MapOf<K, V> {
    type Value = BTreeMap<K, V>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object of at most {} entries", self.max)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BTreeMap<K, V>, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format!(
                    "{}: more than {} entries",
                    self.field, self.max
                )));
            }
            take_entry()?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for SeqOf<T> {
    type Value = Vec<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> DeserializeSeed<'de> for MapOf<K, V> {
    type Value = BTreeMap<K, V>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BTreeMap<K, V>, D::Error> {
        d.deserialize_map(self)
    }
}

/// `null` or what the seed reads.
struct OptOf<S>(S);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OptOf<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or a value")
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

fn seq_of<T>(max: usize, field: &'static str) -> SeqOf<T> {
    SeqOf {
        max,
        field,
        item: PhantomData,
    }
}

fn map_of<K, V>(max: usize, field: &'static str) -> MapOf<K, V> {
    MapOf {
        max,
        field,
        entry: PhantomData,
    }
}

/// A list of at most `max` entries.
pub(crate) fn seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    max: usize,
    field: &'static str,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(seq_of(max, field))
}

/// `null` or a list of at most `max` entries.
pub(crate) fn opt_seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    max: usize,
    field: &'static str,
) -> Result<Option<Vec<T>>, D::Error> {
    d.deserialize_option(OptOf(seq_of(max, field)))
}

/// An object of at most `max` entries.
pub(crate) fn map<'de, D: Deserializer<'de>, K: Deserialize<'de> + Ord, V: Deserialize<'de>>(
    d: D,
    max: usize,
    field: &'static str,
) -> Result<BTreeMap<K, V>, D::Error> {
    d.deserialize_map(map_of(max, field))
}

/// `null` or an object of at most `max` entries.
pub(crate) fn opt_map<'de, D: Deserializer<'de>, K: Deserialize<'de> + Ord, V: Deserialize<'de>>(
    d: D,
    max: usize,
    field: &'static str,
) -> Result<Option<BTreeMap<K, V>>, D::Error> {
    d.deserialize_option(OptOf(map_of(max, field)))
}

/// Fails with `field: N bytes; WHAT has at most MAX` when `s` is longer than `max`.
pub(crate) fn len(field: &str, s: &str, max: usize, what: &str) -> Result<(), String> {
    if s.len() > max {
        return Err(format!(
            "{field}: {} bytes; {what} has at most {max}",
            s.len()
        ));
    }
    Ok(())
}

/// An interface name as the kernel allows it: at most 15 bytes, no '/', ':' or whitespace
/// (dev_valid_name()), so nothing built from it can split into two words or two lines.
pub(crate) fn ifname(field: &str, s: &str) -> Result<(), String> {
    len(
        field,
        s,
        IFNAME,
        "an interface name (15 bytes, written with \\xNN escapes)",
    )?;
    if s.bytes()
        .any(|b| b == b'/' || b == b':' || b == b' ' || (9..=13).contains(&b))
    {
        return Err(format!(
            "{field} {s:?}: not an interface name (one has no '/', ':' or whitespace)"
        ));
    }
    Ok(())
}

/// An `ip netns` name: a file name, so no '/'.
/// The limits every transmitted frame's record shares (ARP and ND alike): its namespace and
/// interface names, the frame, the trigger, the neighbour state and the verdict.
pub(crate) fn sent(
    netns_name: Option<&str>,
    ifname: &str,
    frame: &crate::Hex<'_>,
    trigger: Option<&crate::Trigger<'_>>,
    neigh_state: Option<&str>,
    verdict: Option<&crate::Verdict<'_>>,
) -> Result<(), String> {
    if let Some(n) = netns_name {
        self::netns_name("netns_name", n)?;
    }
    self::ifname("ifname", ifname)?;
    len("frame", frame.as_str(), FRAME_HEX, "a frame in hex")?;
    if let Some(t) = trigger {
        t.check("trigger")?;
    }
    if let Some(s) = neigh_state {
        word("neigh_state", s)?;
    }
    if let Some(v) = verdict {
        v.check()?;
    }
    Ok(())
}

pub(crate) fn netns_name(field: &str, s: &str) -> Result<(), String> {
    len(field, s, NETNS_NAME, "a namespace name (255 bytes)")?;
    if s.contains('/') {
        return Err(format!(
            "{field} {:?}: not a namespace name (one has no '/')",
            crate::text::clip(s, 64)
        ));
    }
    Ok(())
}

pub(crate) fn comm(field: &str, s: &str) -> Result<(), String> {
    len(field, s, COMM, "a process name (15 bytes)")
}

pub(crate) fn text(field: &str, s: &str) -> Result<(), String> {
    len(field, s, TEXT, "a text")
}

pub(crate) fn word(field: &str, s: &str) -> Result<(), String> {
    len(field, s, WORD, "this field")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::TraceReader;

    const HEADER: &str = r#"{"type":"header","format_version":2}"#;
    const ARP: &str = r#"{"type":"arp","op":"request","time":"2026-11-28T19:31:02Z","netns":1,"netns_name":null,"ifindex":2,"ifname":"eth3","sender_ip":"198.51.100.10","sender_mac":"02:00:00:00:00:01","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false,"eth_dst":null,"frame":"00""#;

    /// The error reading `lines` after a header ends in, or `None`.
    fn error(header: &str, lines: &[String]) -> Option<String> {
        let text = format!("{header}\n{}\n", lines.join("\n"));
        let mut r = match TraceReader::from_reader("t", Box::new(std::io::Cursor::new(text))) {
            Ok(r) => r,
            Err(e) => return Some(e.to_string()),
        };
        loop {
            match r.read_record() {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
            }
        }
    }

    fn arp(extra: &str) -> String {
        format!("{ARP}{extra}}}")
    }

    fn list(item: &str, n: usize) -> String {
        format!("[{}]", vec![item; n].join(","))
    }

    fn object(n: usize, value: &str) -> String {
        let entries: Vec<String> = (0..n).map(|i| format!("\"i{i}\":{value}")).collect();
        format!("{{{}}}", entries.join(","))
    }

    #[test]
    fn a_field_over_its_limit_names_the_line_and_the_field() {
        let addr = r#"{"ifname":"eth3","addr":"198.51.100.10","prefix_len":24}"#;
        let trigger = |f: &str| {
            format!(
                r#","trigger":{{"src":"1.2.3.4","dst":"1.2.3.5","proto":"udp","len":1,"mark":0,"origin":"local"{f}}}"#
            )
        };
        let facts = r#","arp_announce":{"all":0,"dev":0,"effective":0},"addrs":[]"#;
        let long = |n: usize| "x".repeat(n);
        let cases: Vec<(String, String)> = vec![
            (
                arp("").replace("\"eth3\"", &format!("\"{}\"", long(IFNAME + 1))),
                "t line 2: arp record: ifname: 61 bytes".into(),
            ),
            (
                arp("").replace("\"eth3\"", "\"a/b\""),
                "t line 2: arp record: ifname \"a/b\": not an interface name".into(),
            ),
            (
                arp("").replace("\"eth3\"", "\"a\\nb\""),
                "t line 2: arp record: ifname \"a\\nb\": not an interface name".into(),
            ),
            (
                arp("").replace("\"netns_name\":null", "\"netns_name\":\"../x\""),
                "t line 2: arp record: netns_name \"../x\": not a namespace name".into(),
            ),
            (
                arp(&trigger(&format!(",\"comm\":\"{}\"", long(COMM + 1)))),
                "t line 2: arp record: trigger.comm: 61 bytes".into(),
            ),
            (
                arp(&format!(
                    ",\"foreign_sender\":true,\"reason\":\"unexplained\",\"explanation\":\"{}\"",
                    long(TEXT + 1)
                )),
                "t line 2: arp record: explanation: 8193 bytes".into(),
            ),
            (
                arp(&format!(
                    ",\"foreign_sender\":true,\"reason\":\"unexplained\",\"explanation\":\"e\",\
                     \"remedy\":{{\"command\":\"{}\",\"persistent\":\"\",\"tradeoff\":\"\"}}",
                    long(TEXT + 1)
                )),
                "t line 2: arp record: remedy.command: 8193 bytes".into(),
            ),
            (
                arp(&format!("{facts},\"ns_addrs\":{}", list(addr, ADDRS + 1))),
                "t line 2: arp record: ns_addrs: more than 4096 entries".into(),
            ),
            (
                arp(&format!(
                    "{facts},\"ns_addrs\":[{}]",
                    addr.replace("eth3", "eth 3")
                )),
                "t line 2: arp record: ns_addrs[0].ifname \"eth 3\"".into(),
            ),
            (
                format!(
                    r#"{{"type":"neigh_failed","time":"2026-11-28T19:31:02Z","netns":1,"ifindex":2,"ifname":"eth3","target_ip":"1.2.3.4","attempts":3,"dropped_omitted":0,"dropped":{}}}"#,
                    list(&trigger("")[11..], DROPPED + 1)
                ),
                "t line 2: neigh_failed record: dropped: more than 256 entries".into(),
            ),
            (
                format!(
                    r#"{{"type":"facts_change","time":"2026-11-28T19:31:02Z","netns":1,"netns_name":null,"change":"watched","arp_announce":{}}}"#,
                    object(INTERFACES + 1, "0")
                ),
                "t line 2: facts_change record: arp_announce: more than 65536 entries".into(),
            ),
        ];
        for (line, want) in cases {
            let e = error(HEADER, &[line]).unwrap_or_default();
            assert!(e.starts_with(&want), "want {want:?}\n got {e:?}");
            assert!(!e.contains('\n') && e.len() < 300, "{e}");
        }
    }

    #[test]
    fn the_header_and_the_entries_of_one_record_are_bounded_in_all() {
        let header = |snapshot: &str| {
            format!(
                r#"{{"type":"header","format_version":2,"snapshot":{{"namespaces":{snapshot}}}}}"#
            )
        };
        let ns = |ifaces: &str| format!(r#"{{"netns":1,"interfaces":{ifaces}}}"#);
        // Every namespace within its limit, all of them together over the header's.
        let per_ns = HEADER_ENTRIES / 64;
        let many = object(64 + 1, &ns(&object(per_ns, "{}")));
        let e = error(&header(&many), &[]).unwrap_or_default();
        assert!(
            e.starts_with("t line 1: header: snapshot.namespaces.i63.interfaces: more list and map entries than a record may have"),
            "{e}"
        );
        let e =
            error(&header(&object(1, &ns(&object(INTERFACES + 1, "{}")))), &[]).unwrap_or_default();
        assert!(
            e.starts_with(
                "t line 1: header: snapshot.namespaces.i0.interfaces: more than 65536 entries"
            ),
            "{e}"
        );
        let e = error(&header(&object(1, &ns(r#"{"x:y":{"ipv4":[]}}"#))), &[]).unwrap_or_default();
        assert!(
            e.starts_with("t line 1: header: snapshot interfaces \"x:y\""),
            "{e}"
        );
        assert_eq!(error(&header(&object(3, &ns(&object(3, "{}")))), &[]), None);

        // Summary rows each within their limits, over the record's total together.
        let row = format!(
            r#"{{"netns":1,"netns_name":null,"ifname":"eth3","sender_ip":"1.2.3.4","reason":null,"foreign_sender":null,"requests":1,"distinct_targets":1,"distinct_targets_capped":false,"first_seen":"2026-11-28T19:31:02Z","last_seen":"2026-11-28T19:31:02Z","top_flows":{0},"other_flows":0,"top_processes":{0},"other_processes":0,"remedy":null}}"#,
            list(r#"{"name":"p","count":1}"#, TOP)
        );
        let rows = RECORD_ENTRIES / (2 * TOP) + 1;
        let summary = format!(r#"{{"type":"summary","rows":{}}}"#, list(&row, rows));
        let e = error(HEADER, &[summary]).unwrap_or_default();
        assert!(
            e.starts_with(
                "t line 2: summary record: rows[1260].top_flows: more list and map entries"
            ),
            "{e}"
        );
    }

    #[test]
    fn only_the_header_and_one_trailer_may_be_long() {
        let pad = |n: usize| format!(",\"pad\":\"{}\"", "x".repeat(n));
        let big = MAX_LINE + 10;
        // A record over MAX_LINE is refused; the trailer may be longer, once.
        let e = error(HEADER, &[arp(&pad(big))]).unwrap_or_default();
        assert!(e.starts_with("t line 2: line longer than 4 MiB"), "{e}");
        let trailer = format!(r#"{{"type":"summary","final":true{}}}"#, pad(big));
        assert_eq!(error(HEADER, &[arp(""), trailer.clone()]), None);
        let e = error(HEADER, &[trailer.clone(), trailer]).unwrap_or_default();
        assert!(e.starts_with("t line 3: line longer than 4 MiB"), "{e}");
        let header = format!(r#"{{"type":"header","format_version":2{}}}"#, pad(big));
        assert_eq!(error(&header, &[arp("")]), None);
    }
}
