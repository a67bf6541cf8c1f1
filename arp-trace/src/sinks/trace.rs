//! `-w FILE`: the trace file as a sink. Every record the other outputs get is written (the
//! format and its durability are `arp_trace_model::file`'s); the trailer is the summary the
//! terminal prints, followed by the run's counts.

use std::fs::File;
use std::io;
use std::path::Path;

use arp_trace_model::file::TraceWriter;
use arp_trace_model::{Header, Record, Time, TraceCounts};

use super::summary::Table;
use crate::pipeline::{Counters, Sink};

pub struct TraceSink {
    writer: TraceWriter,
    table: Table,
    path: String,
}

impl TraceSink {
    /// Writes the trace into `file` (opened by [`super::outfile`]), which `path` names.
    pub fn new(path: &Path, file: File, header: &Header) -> io::Result<TraceSink> {
        Ok(TraceSink {
            writer: TraceWriter::new(path, file, header)?,
            table: Table::default(),
            path: path.display().to_string(),
        })
    }
}

impl Sink for TraceSink {
    fn output(&self) -> &str {
        &self.path
    }
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        if let Record::Arp(ev) = rec {
            self.table.add(ev);
        }
        self.writer.write(rec)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
    fn finish(&mut self, c: &Counters) -> io::Result<()> {
        let mut trailer = self.table.snapshot(true);
        trailer.counts = Some(TraceCounts {
            events: self.writer.events(),
            replies: c.replies,
            failures: c.failures,
            lost: c.lost,
            filtered: c.filtered,
            undecodable: c.undecodable,
            missed: c.missed,
            discarded: c.discarded,
            unjoined: c.unjoined,
            unmatched: c.unmatched,
            end_time: Time::now(),
        });
        self.writer.close(&trailer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arp_trace_model::file::{TraceReader, FORMAT_VERSION};
    use arp_trace_model::Held;

    /// The trailer is the summary `--json` prints on exit, type first, then the counts.
    #[test]
    fn the_trailer_is_the_summary() {
        let path = std::env::temp_dir().join(format!("arp-trace-sink-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let mut s = TraceSink::new(&path, file, &Header::empty(FORMAT_VERSION)).unwrap();
        let ev = crate::sinks::summary::tests::explained(
            "203.0.113.10",
            "198.51.100.20",
            Some("203.0.113.10"),
            1,
        );
        for _ in 0..4 {
            s.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        }
        let c = Counters {
            requests: 4,
            lost: 1,
            ..Default::default()
        };
        s.finish(&c).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            last.starts_with(
                r#"{"type":"summary","final":true,"requests":4,"foreign_requests":4,"rows":[{"#
            ),
            "{last}"
        );
        assert!(
            last.contains(r#""folded_requests":0,"events":4,"replies":0,"failures":0,"lost":1,"#),
            "{last}"
        );
        let mut r = TraceReader::open(&path).unwrap();
        while r.read_record().unwrap().is_some() {}
        assert_eq!(r.trailer.unwrap().rows.len(), 1);
        std::fs::remove_file(&path).unwrap();
    }
}
