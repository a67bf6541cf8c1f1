//! `--json`: every record as one JSON object per line, exactly the contract's fields.

use std::io::{self, Write};

use arp_trace_model::Record;

use super::Output;
use crate::pipeline::Sink;

pub struct JsonSink {
    out: Output,
}

impl JsonSink {
    pub fn new(out: Output) -> Self {
        JsonSink { out }
    }
}

impl Sink for JsonSink {
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let w = self.out.writer();
        serde_json::to_writer(&mut *w, rec).map_err(io::Error::other)?;
        w.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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
