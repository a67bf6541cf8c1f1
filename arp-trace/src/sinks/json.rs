//! `--json`: every record as one JSON object per line, exactly the contract's fields, after
//! a first `{"type":"header",...}` line naming the schema version they follow.

use std::io::{self, Write};

use arp_trace_model::{Header, Held, Record};

use super::Output;
use crate::pipeline::Sink;

pub struct JsonSink {
    out: Output,
    /// One record's line, reused: a line reaches the writer whole, so the buffer is only
    /// ever written out at line ends.
    line: Vec<u8>,
    /// `-q --json`: only the header line; the summary sink prints the rest.
    header_only: bool,
}

impl JsonSink {
    pub fn new(out: Output) -> Self {
        JsonSink {
            out,
            line: Vec::with_capacity(4096),
            header_only: false,
        }
    }

    /// The header line alone, for `-q --json`, whose other lines are the summary's.
    pub fn header_only(out: Output) -> Self {
        JsonSink {
            out,
            line: Vec::new(),
            header_only: true,
        }
    }
}

/// The header `--json` prints: the trace's (or the live run's) without the snapshot of every
/// namespace, which can be megabytes and is for `diff`, stamped with the schema version of the
/// records that follow. Live and replayed, the same run gives the same line.
pub fn json_header(h: &Header) -> Header {
    Header {
        snapshot: None,
        ..h.current()
    }
}

impl Sink for JsonSink {
    fn header(&mut self, h: &Header) -> io::Result<()> {
        let rec = Record::Header(Held::Owned(json_header(h)));
        let w = self.out.writer();
        serde_json::to_writer(&mut *w, &rec).map_err(io::Error::other)?;
        w.write_all(b"\n")?;
        // At once: a consumer reads the version before the first event, however late.
        self.out.flush_now()
    }
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        if self.header_only {
            return Ok(());
        }
        self.line.clear();
        rec.write_json(&mut self.line).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.out.writer().write_all(&self.line)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    // The summary shares standard output and prints after this.
    fn tick(&mut self) -> io::Result<()> {
        self.out.flush_now()
    }
    fn finish(&mut self, _: &crate::pipeline::Counters) -> io::Result<()> {
        self.out.flush_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::Shared;
    use arp_trace_model::Held;

    #[test]
    fn json_lines_are_one_object_per_line() {
        let buf = Shared::default();
        let mut sink = JsonSink::new(Output::new(Box::new(buf.clone())));
        let ev = crate::kernel::ring::tests::request_event("eth3", "203.0.113.10", "1.2.3.4");
        sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        sink.flush().unwrap();
        let text = buf.text();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["type"], "arp");
        assert_eq!(v["op"], "request");
        assert_eq!(v["netns_name"], serde_json::Value::Null);
        assert_eq!(v["unicast"], false);
    }

    /// The first line names the schema version; the snapshot stays in the trace file; `-q
    /// --json` prints that line and no record.
    #[test]
    fn the_header_line_carries_the_schema_version_without_the_snapshot() {
        let mut h = arp_trace_model::Header::empty(2);
        h.hooks = "transmit=tp_btf/net_dev_queue".into();
        h.own_netns = Some(7);
        h.netns_names.insert(7, "srv".into());
        h.snapshot = Some(Default::default());
        let ev = crate::kernel::ring::tests::request_event("eth3", "203.0.113.10", "1.2.3.4");
        for (sink, lines) in [
            (JsonSink::new as fn(Output) -> JsonSink, 2),
            (JsonSink::header_only, 1),
        ] {
            let buf = Shared::default();
            let mut sink = sink(Output::new(Box::new(buf.clone())));
            sink.header(&h).unwrap();
            // Out at once, before any record or flush.
            assert!(buf.text().ends_with('\n'), "{}", buf.text());
            sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
            sink.flush().unwrap();
            let text = buf.text();
            assert_eq!(text.lines().count(), lines, "{text}");
            let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(v["type"], "header");
            assert_eq!(v["schema_version"], arp_trace_model::SCHEMA_VERSION);
            assert_eq!(v["format_version"], 2);
            assert_eq!(v["netns_names"]["7"], "srv");
            assert_eq!(v["snapshot"], serde_json::Value::Null);
        }
    }

    /// JSON carries names exactly (serde escapes control characters), and a byte the kernel
    /// gave that is not UTF-8 as the text `\xNN`, not as U+FFFD.
    #[test]
    fn hostile_names_are_exact_in_json() {
        let ev = crate::sinks::tests::hostile_event();
        let buf = Shared::default();
        let mut sink = JsonSink::new(Output::new(Box::new(buf.clone())));
        sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        sink.flush().unwrap();
        let text = buf.text();
        assert!(text.contains(r#""ifname":"e\u001b[2J\\xff""#), "{text}");
        assert!(text.contains(r#""comm":"\u001b]2;owned\u0007""#), "{text}");
        assert!(!text.contains('\u{fffd}'), "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["ifname"], "e\u{1b}[2J\\xff");
    }
}
