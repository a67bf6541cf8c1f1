//! `-w FILE`: the trace file as a sink. Every record the other outputs get is written (the
//! format and its durability are `arp_trace_model::file`'s); the trailer is the summary the
//! terminal prints, followed by the run's counts. With `-C`/`-G` ([`super::rotate`]) each file
//! is a whole trace: a fresh header, its own records, and a trailer with its own summary and
//! counts, so `-r` and `diff` read any one of them alone.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arp_trace_model::file::TraceWriter;
use arp_trace_model::{Header, Record, Summary, Time, TraceCounts};

use super::outfile::{remove_if_same, FileId, Files};
use super::rotate::{Rotation, Rotator, Why};
use super::summary::Table;
use crate::pipeline::{Counters, Sink};

/// Makes the header of each new file: live, a fresh snapshot of the namespaces.
pub type HeaderFn = Box<dyn FnMut() -> Header>;

struct Rotating {
    rotator: Rotator,
    files: Files,
    header: HeaderFn,
    current: (PathBuf, FileId),
}

pub struct TraceSink {
    writer: TraceWriter,
    table: Table,
    /// `-w` as given, which messages name.
    path: String,
    /// This file's replies and failures, counted from its own records.
    replies: u64,
    received: u64,
    failures: u64,
    /// The run's counts when this file began, and the latest the pipeline reported: the
    /// difference is this file's share of what was lost or filtered.
    base: Counters,
    latest: Counters,
    rotating: Option<Rotating>,
}

fn io_err(e: anyhow::Error) -> io::Error {
    io::Error::other(format!("{e:#}"))
}

impl TraceSink {
    /// Writes the trace into `file` (opened by [`super::outfile`]), which `path` names.
    pub fn new(path: &Path, file: File, header: &Header) -> io::Result<TraceSink> {
        Ok(TraceSink {
            writer: TraceWriter::new(path, file, header)?,
            table: Table::default(),
            path: path.display().to_string(),
            replies: 0,
            received: 0,
            failures: 0,
            base: Counters::default(),
            latest: Counters::default(),
            rotating: None,
        })
    }

    /// Writes the trace into files named after `path` as `rotation` says, each created
    /// through `files` (safely, and never one in use) and begun with a header from `header`.
    pub fn rotating(
        path: &Path,
        mut files: Files,
        mut header: HeaderFn,
        rotation: Rotation,
    ) -> anyhow::Result<TraceSink> {
        let rotator = Rotator::new(path, rotation);
        let first = rotator.current();
        let file = files.create("-w", &first)?;
        if !file.metadata()?.file_type().is_file() {
            anyhow::bail!(
                "-w {}: -C, -G and -W rotate regular files only; give a file name",
                first.display()
            );
        }
        let id = FileId::of_file(&file)?;
        let mut sink = TraceSink::new(&first, file, &header())?;
        sink.path = path.display().to_string();
        let mut r = Rotating {
            rotator,
            files,
            header,
            current: (first.clone(), id),
        };
        r.rotator.opened(first, id);
        sink.rotating = Some(r);
        Ok(sink)
    }

    /// The summary of this file's requests and its counts, for its trailer.
    fn trailer(&self) -> Summary<'static> {
        let (c, b) = (&self.latest, &self.base);
        let mut trailer = self.table.snapshot(true);
        trailer.counts = Some(TraceCounts {
            events: self.writer.events(),
            replies: self.replies,
            received: self.received,
            failures: self.failures,
            lost: c.lost.saturating_sub(b.lost),
            filtered: c.filtered.saturating_sub(b.filtered),
            undecodable: c.undecodable.saturating_sub(b.undecodable),
            missed: c.missed.saturating_sub(b.missed),
            discarded: c.discarded.saturating_sub(b.discarded),
            unjoined: c.unjoined.saturating_sub(b.unjoined),
            unmatched: c.unmatched.saturating_sub(b.unmatched),
            end_time: Time::now(),
        });
        trailer
    }

    /// Ends the current file if its size or time is up, and begins the next.
    fn rotate_if_due(&mut self) -> io::Result<()> {
        let Some(r) = &self.rotating else {
            return Ok(());
        };
        match r.rotator.due(self.writer.size(), Instant::now()) {
            Some(why) => self.rotate(why),
            None => Ok(()),
        }
    }

    fn rotate(&mut self, why: Why) -> io::Result<()> {
        let trailer = self.trailer();
        self.writer.close(&trailer)?;
        let Some(r) = self.rotating.as_mut() else {
            return Ok(());
        };
        r.files.forget(r.current.1);
        let path = r.rotator.advance(why);
        let file = r.files.create("-w", &path).map_err(io_err)?;
        let id = FileId::of_file(&file)?;
        for (old, old_id) in r.rotator.opened(path.clone(), id) {
            if let Err(e) = remove_if_same(&old, old_id) {
                eprintln!(
                    "arp-trace: warning: -W: cannot remove the old trace {}: {e}",
                    old.display()
                );
            }
        }
        let header = (r.header)();
        r.current = (path.clone(), id);
        self.writer = TraceWriter::new(&path, file, &header)?;
        self.table = Table::default();
        self.replies = 0;
        self.received = 0;
        self.failures = 0;
        self.base = self.latest;
        Ok(())
    }
}

impl Sink for TraceSink {
    fn output(&self) -> &str {
        &self.path
    }
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        self.rotate_if_due()?;
        let asked = rec.solicitation();
        match rec {
            Record::Arp(_) | Record::Ndisc(_) if asked.is_some() => self.table.add(asked),
            Record::Arp(e) if e.received() => self.received += 1,
            Record::Arp(_) | Record::Ndisc(_) => self.replies += 1,
            Record::NeighFailed(_) => self.failures += 1,
            Record::Conflict(c) => self.table.add_conflict(c),
            _ => {}
        }
        self.writer.write(rec)
    }
    fn progress(&mut self, c: &Counters) {
        self.latest = *c;
    }
    fn flush(&mut self) -> io::Result<()> {
        // A quiet window still ends on time: -G files hold their own time span.
        self.rotate_if_due()?;
        self.writer.flush()
    }
    fn finish(&mut self, c: &Counters) -> io::Result<()> {
        self.latest = *c;
        let trailer = self.trailer();
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

    /// Each rotated file, plain or compressed, reads back alone to a trailer holding its own
    /// requests and its share of the run's losses.
    #[test]
    fn rotated_files_are_whole_traces_with_their_own_counts() {
        for name in ["r.jsonl", "r.jsonl.gz"] {
            let dir = std::env::temp_dir()
                .join(format!("arp-trace-rotate-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let files = Files::new(super::super::outfile::Invoker {
                // SAFETY: getuid cannot fail.
                uid: unsafe { libc::getuid() },
                gid: None,
            });
            let rotation = Rotation {
                size: Some(4000),
                every: None,
                count: None,
            };
            let header = || Header::empty(FORMAT_VERSION);
            let mut s =
                TraceSink::rotating(&dir.join(name), files, Box::new(header), rotation).unwrap();
            let ev = crate::sinks::summary::tests::explained(
                "203.0.113.10",
                "198.51.100.20",
                Some("203.0.113.10"),
                1,
            );
            let mut c = Counters::default();
            for i in 0..300 {
                if i == 150 {
                    c.lost = 5;
                    s.progress(&c);
                }
                s.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
                // Compressed files grow at each batch, as the live run flushes.
                s.flush().unwrap();
            }
            c.lost = 7;
            s.finish(&c).unwrap();
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            paths.sort();
            assert!(paths.len() >= 3, "{name}: {paths:?}");
            let (mut requests, mut lost) = (0, 0);
            for p in &paths {
                let mut r = TraceReader::open(p).unwrap();
                let mut n = 0;
                while let Some(rec) = r.read_record().unwrap() {
                    n += matches!(rec, Record::Arp(_)) as u64;
                }
                let t = r.trailer.expect("a trailer");
                let counts = t.counts.unwrap();
                assert_eq!((t.requests, counts.events), (n, n), "{}", p.display());
                requests += n;
                lost += counts.lost;
            }
            assert_eq!((requests, lost), (300, 7), "{name}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
