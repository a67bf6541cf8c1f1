//! Why a record did not parse, in words a reader can act on: the field's path
//! (`trigger.sport`), at most [`QUOTE`] characters of the bad value, the column; never a
//! decoder's message alone.

use serde::Deserialize;

use crate::limits;
use crate::text::clip;

/// The most characters of a value a message quotes.
pub const QUOTE: usize = 80;

/// `value` for a message: JSON-quoted, cut to [`QUOTE`] bytes at a character boundary with
/// `...` when longer.
pub fn quote(value: &str) -> String {
    let c = clip(value, QUOTE);
    if c.len() < value.len() {
        format!("{:?}... ({} bytes)", c, value.len())
    } else {
        format!("{c:?}")
    }
}

/// Every `"..."` or `` `...` `` run in a decoder's message cut to [`QUOTE`] bytes: serde
/// quotes the whole bad string (`invalid type: string "xxxx...", expected u16`).
pub fn clip_quotes(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(512));
    let mut rest = msg;
    while let Some(open) = rest.find(['"', '`']) {
        let q = rest.as_bytes()[open] as char;
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let Some(close) = rest.find(q) else {
            out.push_str(clip(rest, QUOTE));
            return out;
        };
        let inner = &rest[..close];
        out.push_str(clip(inner, QUOTE));
        if inner.len() > QUOTE {
            out.push_str("...");
        }
        out.push(q);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// serde_json's message without its ` at line 1 column N` (a record is one line; the
/// column is given on its own).
pub(crate) fn message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => &full,
    };
    clip_quotes(msg)
}

/// The value at `path` (`trigger.sport`, `snapshot.ipv4[2]`) of `line`, when it is a string
/// or a number: what a message quotes.
fn value_at(line: &str, path: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let mut at = &v;
    for part in path.split('.') {
        let (key, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            at = at.get(key)?;
        }
        while let Some(rest) = idx.strip_prefix('[') {
            let end = rest.find(']')?;
            at = at.get(rest[..end].parse::<usize>().ok()?)?;
            idx = &rest[end + 1..];
        }
    }
    match at {
        serde_json::Value::String(s) => Some(quote(s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses `line` as `what` (`arp record`): on failure, the field, the value and the column.
pub fn parse_json<'a, T: Deserialize<'a>>(line: &'a str, what: &str) -> Result<T, String> {
    serde_json::from_str(line).map_err(|e| describe::<T>(line, what, &e, limits::RECORD_ENTRIES))
}

/// `msg` without a leading `field: ` that `path` already names: the limits' own messages
/// start with their field (`ns_addrs: more than 4096 entries`).
fn without_field<'m>(msg: &'m str, path: &str) -> &'m str {
    let Some((label, rest)) = msg.split_once(": ") else {
        return msg;
    };
    let segments: Vec<&str> = path
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    let named = !label.is_empty() && label.split([' ', '.']).all(|w| segments.contains(&w));
    if named {
        rest
    } else {
        msg
    }
}

/// `e` (from parsing `line` as `T`) in words: the line is parsed again, tracking the path, which
/// only errors pay for.
pub fn describe<'a, T: Deserialize<'a>>(
    line: &'a str,
    what: &str,
    e: &serde_json::Error,
    entries: usize,
) -> String {
    let col = e.column();
    let tracked = limits::with_entries(entries, || {
        let mut de = serde_json::Deserializer::from_str(line);
        serde_path_to_error::deserialize::<_, T>(&mut de).map(|_| ())
    });
    let path = match &tracked {
        // `.` is the record itself and `?` a place serde could not name.
        Err(pe) if !matches!(&*pe.path().to_string(), "." | "?") => Some(pe.path().to_string()),
        _ => None,
    };
    let msg = message(e);
    match path {
        // A syntax error has no field of its own; the path only says where parsing was.
        Some(p) if !e.is_syntax() && !e.is_eof() => {
            let shown = value_at(line, &p)
                .filter(|_| !msg.contains(['"', '`']))
                .map(|v| format!(" (got {v})"))
                .unwrap_or_default();
            format!("{what}: {p}: {}{shown}", without_field(&msg, &p))
        }
        Some(p) if e.is_eof() => {
            format!("{what}: the line ends inside {p} (column {col}): not a whole record")
        }
        Some(p) => format!("{what}: not JSON at {p} (column {col}): {msg}"),
        None if e.is_eof() => format!("{what}: the line ends early (column {col})"),
        None => format!("{what}: {msg} (column {col})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(100);
        let q = quote(&long);
        assert!(q.len() < 100 && q.ends_with("(200 bytes)"), "{q}");
        assert_eq!(quote("eth3"), "\"eth3\"");
        let m = clip_quotes(&format!(
            "invalid type: string \"{}\", expected u16",
            "x".repeat(300)
        ));
        assert_eq!(
            m.len(),
            "invalid type: string \"\", expected u16".len() + 83,
            "{m}"
        );
        assert!(m.ends_with("...\", expected u16"), "{m}");
        assert_eq!(clip_quotes("unknown variant `a`"), "unknown variant `a`");
    }

    #[test]
    fn a_field_is_named_once() {
        assert_eq!(
            without_field("ns_addrs: more than 4", "ns_addrs"),
            "more than 4"
        );
        assert_eq!(
            without_field(
                "snapshot interfaces: more",
                "snapshot.namespaces.x.interfaces"
            ),
            "more"
        );
        assert_eq!(without_field("bad hex: x", "frame"), "bad hex: x");
    }

    #[test]
    fn values_are_found_by_their_path() {
        let line = r#"{"a":{"b":[1,{"c":"x"}]},"n":5}"#;
        assert_eq!(value_at(line, "a.b[1].c").as_deref(), Some("\"x\""));
        assert_eq!(value_at(line, "n").as_deref(), Some("5"));
        assert_eq!(value_at(line, "a.b[7]"), None);
    }
}
