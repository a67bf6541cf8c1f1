//! Trace files (`-w`, `-r`, `diff`): JSON Lines with a header, the `--json` event objects and a
//! summary trailer; plain, `.gz` or `.zst`; written so that a killed writer leaves a readable
//! file, and read so that no input can make arp-trace panic or use unbounded memory.
//!
//! # Format (version 2)
//! ```text
//! {"type":"header","format_version":2,"arp_trace_version":"0.1.0","kernel_release":...,
//!  "hostname":...,"start_time":...,"hooks":...,"own_netns":...,"netns_names":{...},
//!  "snapshot":{...}}
//! {"type":"arp",...}            exactly the objects `--json` prints, byte for byte
//! {"type":"neigh_failed",...}
//! {"type":"facts_change",...}   an address or arp_announce change (see below)
//! {"type":"summary","final":true,"requests":..,"foreign_requests":..,"rows":[...],
//!  "folded_requests":..,"events":N,"replies":..,"failures":..,"lost":..,"filtered":..,
//!  "undecodable":..,"end_time":...}
//! ```
//! The trailer is the summary object `--json` prints on exit, followed by the trace's counts
//! (`events` counts the records between header and trailer).
//!
//! `facts_change` records ([`crate::facts::FactsChange`]) let a reader rebuild a namespace's
//! state at any moment: `{"type":"facts_change","time":..,"netns":..,"netns_name":..,
//! "change":C,...}` with C one of
//! - `watched`: the tracer started watching the namespace (at its first request):
//!   `"arp_announce":{"all":0,"eth3":0,...}` and `"addrs":[{"ifname","addr","prefix_len",
//!   "scope","secondary"}...]`, the whole state from then on;
//! - `addr_added` / `addr_removed`: `"ifname","addr","prefix_len"` (and `scope`, `secondary`),
//!   seen through the namespace's RTNLGRP_IPV4_IFADDR subscription;
//! - `arp_announce`: `"conf"` (`all` or an interface), `"before"` (absent for an interface
//!   that is new), `"after"`; noticed when a request's facts are read and by re-reading every
//!   value once a second per watched namespace (no kernel notification exists for sysctls).
//!
//! The header snapshot covers the namespaces that exist at start (own, `ip netns`, and those
//! held only by a process); `watched` covers any namespace first seen later.
//!
//! # Compatibility rule
//! `format_version` is raised whenever a reader of the previous version would misread a file
//! (a field changes meaning or type, a record type is added that must not be skipped).
//! Adding a field is not such a change: readers ignore fields they do not know, and fields a
//! newer version added are optional (`#[serde(default)]`) when read. A reader accepts every
//! version from 1 up to its own [`FORMAT_VERSION`]; a file with a higher version is refused
//! with a message naming both versions and asking for a newer arp-trace, never misread.
//! Version 2 added `facts_change` records (a version 1 reader refuses unknown types) and the
//! full summary in the trailer; a `facts_change` in a version 1 file is an unknown type.
//!
//! # Durability
//! Records are serialized into a batch buffer that only ever holds whole lines; each batch
//! (one per ring-buffer wakeup, see [`crate::pipeline::Sink::flush`]) is handed to the file in
//! one `write(2)`. Compressed files are flushed per batch as well: gzip with a sync flush,
//! zstd by ending the block, so everything before a SIGKILL can be decompressed. SIGINT and
//! SIGTERM end the run through the pipeline's `finish`, which writes the trailer, closes the
//! gzip member / zstd frame and syncs the file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::attribution::NeighFailed;
use crate::event::{ArpEvent, Time};
use crate::facts::FactsChange;
use crate::netns::NetnsNames;
use crate::pipeline::{Counters, Output, Sink};
use crate::summary::{Summary, SummaryOut};

/// The format version this arp-trace writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;

/// Longest line a reader accepts. An event is well under 4 KiB; a header with thousands of
/// namespaces stays far below this. Keeps memory bounded on hostile input.
pub const MAX_LINE: usize = 64 << 20;

const BUF_SIZE: usize = 1 << 20;
const GZ_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The first record: where and how the trace was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    #[serde(rename = "type")]
    pub kind: String,
    pub format_version: u32,
    #[serde(default)]
    pub arp_trace_version: String,
    #[serde(default)]
    pub kernel_release: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub start_time: Time,
    /// The hooks the live run used, as its start line names them.
    #[serde(default)]
    pub hooks: String,
    /// The namespace the tracer ran in: its events are labelled without a prefix.
    #[serde(default)]
    pub own_netns: Option<u32>,
    /// `ip netns` names at start (inode -> name), so `-r --netns NAME` resolves offline.
    #[serde(default)]
    pub netns_names: BTreeMap<u32, String>,
    /// Per-namespace interfaces, addresses and sysctls at start.
    #[serde(default)]
    pub snapshot: serde_json::Value,
}

impl Header {
    pub fn new(hooks: String, own_netns: Option<u32>, snapshot: serde_json::Value) -> Header {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Header {
            kind: "header".into(),
            format_version: FORMAT_VERSION,
            arp_trace_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release: read("/proc/sys/kernel/osrelease"),
            hostname: read("/proc/sys/kernel/hostname"),
            start_time: Time(now),
            hooks,
            own_netns,
            netns_names: BTreeMap::new(),
            snapshot,
        }
    }
}

/// The header of a live trace, with the snapshot of every namespace taken now.
pub fn live_header(hooks: String, own_netns: Option<u32>) -> Header {
    let (snapshot, names) = crate::snapshot::take(own_netns);
    let mut h = Header::new(hooks, own_netns, snapshot);
    h.netns_names = names;
    h
}

/// The last record as read back: the counts, all optional (version 1 trailers had only
/// these; version 2 adds the summary's rows, which readers recompute from the events).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    #[serde(rename = "type")]
    pub kind: String,
    /// Records between header and trailer.
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub replies: u64,
    #[serde(default)]
    pub failures: u64,
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub filtered: u64,
    #[serde(default)]
    pub undecodable: u64,
    /// Hook runs the kernel skipped (program busy on that CPU).
    #[serde(default)]
    pub missed: u64,
    #[serde(default)]
    pub end_time: Time,
}

/// The trailer as written: the `--json` summary object, then the counts.
#[derive(Serialize)]
struct FileTrailer<'a> {
    #[serde(flatten)]
    summary: &'a SummaryOut,
    events: u64,
    replies: u64,
    failures: u64,
    lost: u64,
    filtered: u64,
    undecodable: u64,
    #[serde(skip_serializing_if = "is_zero")]
    missed: u64,
    end_time: Time,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Trailer {
    pub fn from_counters(c: &Counters, events: u64) -> Trailer {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Trailer {
            kind: "summary".into(),
            events,
            requests: c.requests,
            replies: c.replies,
            failures: c.failures,
            lost: c.lost,
            filtered: c.filtered,
            undecodable: c.undecodable,
            missed: c.missed,
            end_time: Time(now),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Chosen by the name when writing: `.gz`, `.zst`, anything else is plain.
    pub fn for_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst") | Some("zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

enum Encoder {
    Plain(File),
    Gzip(flate2::write::GzEncoder<File>),
    Zstd(zstd::stream::write::Encoder<'static, File>),
}

/// Writes a trace; a [`Sink`] so live capture and replay feed it like any other output.
pub struct TraceWriter {
    path: PathBuf,
    enc: Option<Encoder>,
    /// Whole lines not yet handed to the file.
    batch: Vec<u8>,
    events: u64,
    /// The same summary the stdout sinks print, for the trailer.
    summary: Summary,
}

impl TraceWriter {
    pub fn create(path: &Path, header: &Header) -> Result<TraceWriter> {
        let file = File::create(path)
            .with_context(|| format!("{}: cannot create the trace file", path.display()))?;
        let enc = match Compression::for_path(path) {
            Compression::None => Encoder::Plain(file),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(file, 3)
                    .with_context(|| format!("{}: cannot start zstd", path.display()))?,
            ),
        };
        let mut w = TraceWriter {
            path: path.to_path_buf(),
            enc: Some(enc),
            batch: Vec::with_capacity(64 * 1024),
            events: 0,
            summary: Summary::new(Output::new(Box::new(io::sink())), true),
        };
        w.record(header)?;
        w.write_batch()
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(w)
    }

    fn record<T: Serialize>(&mut self, v: &T) -> io::Result<()> {
        let start = self.batch.len();
        if let Err(e) = serde_json::to_writer(&mut self.batch, v) {
            self.batch.truncate(start);
            return Err(io::Error::other(e));
        }
        self.batch.push(b'\n');
        if self.batch.len() >= BUF_SIZE {
            self.write_batch()?;
        }
        Ok(())
    }

    fn err(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }

    /// Hands the batch (whole lines only) to the file and flushes the compressor so the
    /// bytes on disk decode up to here.
    fn write_batch(&mut self) -> io::Result<()> {
        let r = match self.enc.as_mut() {
            None => Ok(()),
            Some(Encoder::Plain(f)) => f.write_all(&self.batch),
            Some(Encoder::Gzip(g)) => g.write_all(&self.batch).and_then(|_| g.flush()),
            Some(Encoder::Zstd(z)) => z.write_all(&self.batch).and_then(|_| z.flush()),
        };
        self.batch.clear();
        r.map_err(|e| self.err(e))
    }

    /// Writes the trailer (the summary with `trailer`'s counts), ends the compressed stream
    /// and syncs the file.
    pub fn close(&mut self, trailer: &Trailer) -> io::Result<()> {
        if self.enc.is_none() {
            return Ok(());
        }
        let summary = self.summary.snapshot(true);
        let t = FileTrailer {
            summary: &summary,
            events: trailer.events,
            replies: trailer.replies,
            failures: trailer.failures,
            lost: trailer.lost,
            filtered: trailer.filtered,
            undecodable: trailer.undecodable,
            missed: trailer.missed,
            end_time: trailer.end_time,
        };
        self.record(&t)?;
        self.write_batch()?;
        let file = match self.enc.take() {
            Some(Encoder::Plain(f)) => Ok(f),
            Some(Encoder::Gzip(g)) => g.finish(),
            Some(Encoder::Zstd(z)) => z.finish(),
            None => unreachable!("checked above"),
        };
        file.and_then(|f| f.sync_data()).map_err(|e| self.err(e))
    }
}

impl Sink for TraceWriter {
    fn arp(&mut self, ev: &ArpEvent, _: &mut NetnsNames) -> io::Result<()> {
        self.events += 1;
        self.summary.add(&ev.view());
        self.record(ev)
    }
    fn neigh_failed(&mut self, ev: &NeighFailed, _: &mut NetnsNames) -> io::Result<()> {
        self.events += 1;
        self.record(ev)
    }
    fn facts_change(&mut self, ch: &FactsChange, _: &mut NetnsNames) -> io::Result<()> {
        self.events += 1;
        self.record(ch)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.write_batch()
    }
    fn finish(&mut self, counters: &Counters) -> io::Result<()> {
        let t = Trailer::from_counters(counters, self.events);
        self.close(&t)
    }
}

/// A reading failure: always names the file, and the line when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    pub file: String,
    pub line: Option<u64>,
    pub cause: String,
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "{} line {n}: {}", self.file, self.cause),
            None => write!(f, "{}: {}", self.file, self.cause),
        }
    }
}

impl std::error::Error for TraceError {}

/// One record after the header.
#[derive(Debug)]
pub enum Record {
    Arp(Box<ArpEvent>),
    /// An ARP event read for the summary only (see [`ParallelReader::brief`]).
    Brief(crate::brief::BriefArp),
    Failed(NeighFailed),
    Change(Box<FactsChange>),
    Summary(Trailer),
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    format_version: Option<u64>,
}

enum Line {
    Whole,
    Eof,
    /// Bytes after the last newline: the writer was cut mid-record.
    Partial,
    /// The (decompressed) stream broke off.
    Broken(String),
    TooLong,
}

/// Reads a trace record by record with bounded memory. A cut at the end (a killed writer) is
/// a warning, read up to the cut; anything malformed before it is an error.
pub struct TraceReader {
    pub file: String,
    src: Box<dyn BufRead + Send>,
    /// The current line is `buf[start..]`. With `append` set, lines accumulate in `buf` (the
    /// parallel reader hands a batch of them on as they are, copying nothing).
    buf: Vec<u8>,
    start: usize,
    append: bool,
    /// Lines read so far (the number of the current line).
    pub line: u64,
    pub header: Header,
    pub trailer: Option<Trailer>,
    pub warnings: Vec<String>,
    done: bool,
    /// A summary line went by (seen by `advance`, which does not parse).
    saw_summary: bool,
}

/// How long `-r FIFO` waits for a writer before giving up.
fn fifo_wait_ms() -> i32 {
    std::env::var("ARP_TRACE_FIFO_WAIT_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// Opens a FIFO without blocking forever: waits for a writer to connect, for a while.
fn open_fifo(path: &Path, name: &str) -> std::result::Result<File, TraceError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |cause: String| TraceError {
        file: name.to_string(),
        line: None,
        cause,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| err(format!("cannot open: {e}")))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let wait = fifo_wait_ms();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Linux reports a FIFO readable (or hung up) only once a writer has opened it.
    let n = loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, wait) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n == 0 {
        return Err(err(format!(
            "a FIFO with no writer for {} s; start the writer first (e.g. `arp-trace -w {name}` or `cat trace > {name}`)",
            wait / 1000
        )));
    }
    // SAFETY: plain fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
    }
    Ok(f)
}

impl TraceReader {
    /// Opens a trace: a path, or `-` for standard input. Compression is recognised by its
    /// magic bytes, whatever the name.
    pub fn open(path: &Path) -> std::result::Result<TraceReader, TraceError> {
        let name = path.display().to_string();
        if name == "-" {
            return TraceReader::from_reader("<stdin>", Box::new(io::stdin()));
        }
        let err = |cause: String| TraceError {
            file: name.clone(),
            line: None,
            cause,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let ft = meta.file_type();
        let file = if ft.is_dir() {
            return Err(err(
                "is a directory, not a trace file (give the file `arp-trace -w` wrote)".into(),
            ));
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            open_fifo(path, &name)?
        } else {
            File::open(path).map_err(|e| err(format!("cannot open: {e}")))?
        };
        TraceReader::from_reader(&name, Box::new(file))
    }

    /// Reads a trace from any byte stream; `name` is what messages call it.
    pub fn from_reader(
        name: &str,
        mut raw: Box<dyn Read + Send>,
    ) -> std::result::Result<TraceReader, TraceError> {
        let err = |line: Option<u64>, cause: String| TraceError {
            file: name.to_string(),
            line,
            cause,
        };
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            match raw.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(None, format!("cannot read: {e}"))),
            }
        }
        if got == 0 {
            return Err(err(
                None,
                "empty file: no header (an arp-trace trace starts with a {\"type\":\"header\"} line)"
                    .into(),
            ));
        }
        let head = io::Cursor::new(magic[..got].to_vec()).chain(raw);
        let src: Box<dyn BufRead + Send> = if got >= 2 && magic[..2] == GZ_MAGIC {
            Box::new(BufReader::with_capacity(
                BUF_SIZE,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUF_SIZE, head)),
            ))
        } else if got == 4 && magic == ZSTD_MAGIC {
            let dec =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF_SIZE, head))
                    .map_err(|e| err(None, format!("cannot start zstd: {e}")))?;
            Box::new(BufReader::with_capacity(BUF_SIZE, dec))
        } else {
            Box::new(BufReader::with_capacity(BUF_SIZE, head))
        };
        let mut r = TraceReader {
            file: name.to_string(),
            src,
            buf: Vec::with_capacity(4096),
            start: 0,
            append: false,
            line: 0,
            header: Header::new(String::new(), None, serde_json::Value::Null),
            trailer: None,
            warnings: Vec::new(),
            done: false,
            saw_summary: false,
        };
        r.read_header()?;
        Ok(r)
    }

    fn error(&self, cause: impl Into<String>) -> TraceError {
        TraceError {
            file: self.file.clone(),
            line: Some(self.line),
            cause: cause.into(),
        }
    }

    fn read_line(&mut self) -> Line {
        if !self.append {
            self.buf.clear();
        }
        self.start = self.buf.len();
        loop {
            let avail = match self.src.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Line::Broken(e.to_string()),
            };
            if avail.is_empty() {
                return if self.buf.len() == self.start {
                    Line::Eof
                } else {
                    Line::Partial
                };
            }
            match memchr::memchr(b'\n', avail) {
                Some(i) => {
                    if self.buf.len() - self.start + i > MAX_LINE {
                        return Line::TooLong;
                    }
                    self.buf.extend_from_slice(&avail[..i]);
                    self.src.consume(i + 1);
                    return Line::Whole;
                }
                None => {
                    let n = avail.len();
                    if self.buf.len() - self.start + n > MAX_LINE {
                        return Line::TooLong;
                    }
                    self.buf.extend_from_slice(avail);
                    self.src.consume(n);
                }
            }
        }
    }

    fn read_header(&mut self) -> std::result::Result<(), TraceError> {
        match self.read_line() {
            Line::Whole => {}
            Line::Partial => {
                self.line = 1;
                return Err(self.error("the trace was cut inside its header; nothing to read"));
            }
            Line::Eof => {
                return Err(TraceError {
                    file: self.file.clone(),
                    line: None,
                    cause: "empty trace: no header".into(),
                })
            }
            Line::Broken(e) => {
                self.line = 1;
                return Err(self.error(format!("cannot read the header: {e}")));
            }
            Line::TooLong => {
                self.line = 1;
                return Err(self.error(format!(
                    "line longer than {} MiB: not an arp-trace trace",
                    MAX_LINE >> 20
                )));
            }
        }
        self.line = 1;
        let tag: Tag = serde_json::from_slice(self.last_line()).map_err(|e| {
            self.error(format!(
                "not an arp-trace trace: the first line is not JSON ({e})"
            ))
        })?;
        match tag.kind.as_deref() {
            Some("header") => {}
            Some(other) => {
                return Err(self.error(format!(
                    "missing header: the first record is {other:?}; `-r` reads files written \
                     with `-w`, not `--json` output"
                )))
            }
            None => return Err(self.error("not an arp-trace trace: no \"type\" field")),
        }
        match tag.format_version {
            Some(v) if v > FORMAT_VERSION as u64 => {
                return Err(self.error(format!(
                    "format version {v} is newer than this arp-trace ({}) reads (up to {}); \
                     read it with a newer arp-trace",
                    env!("CARGO_PKG_VERSION"),
                    FORMAT_VERSION
                )))
            }
            Some(v) if v >= 1 => {}
            Some(v) => return Err(self.error(format!("format version {v} does not exist"))),
            None => return Err(self.error("header without format_version")),
        }
        self.header = serde_json::from_slice(self.last_line())
            .map_err(|e| self.error(format!("bad header: {e}")))?;
        Ok(())
    }

    /// The next record; `None` at the end (or at a cut, recorded in `warnings`).
    fn next_record(&mut self) -> std::result::Result<Option<Record>, TraceError> {
        if !self.advance()? {
            return Ok(None);
        }
        parse_line(
            &self.file,
            self.line,
            self.header.format_version,
            &self.buf[self.start..],
        )
        .map(Some)
        .inspect_err(|_| self.done = true)
    }

    /// Moves to the next non-blank whole line (left in `buf`); false at the end or a cut.
    fn advance(&mut self) -> std::result::Result<bool, TraceError> {
        loop {
            if self.done {
                return Ok(false);
            }
            match self.read_line() {
                Line::Whole => self.line += 1,
                Line::Eof => {
                    self.done = true;
                    if self.trailer.is_none() && !self.saw_summary {
                        self.warnings.push(format!(
                            "{}: no summary trailer after line {}: the trace was cut (the \
                             writer was killed?); read everything up to there",
                            self.file, self.line
                        ));
                    }
                    return Ok(false);
                }
                Line::Partial => {
                    self.done = true;
                    self.warnings.push(format!(
                        "{} line {}: the trace was cut mid-record (the writer was killed?); \
                         read the {} whole lines before it",
                        self.file,
                        self.line + 1,
                        self.line
                    ));
                    return Ok(false);
                }
                Line::Broken(e) => {
                    self.done = true;
                    self.warnings.push(format!(
                        "{} line {}: the trace was cut ({e}); read the {} whole lines before it",
                        self.file,
                        self.line + 1,
                        self.line
                    ));
                    return Ok(false);
                }
                Line::TooLong => {
                    self.line += 1;
                    self.done = true;
                    return Err(self.error(format!(
                        "line longer than {} MiB: not an arp-trace record",
                        MAX_LINE >> 20
                    )));
                }
            }
            if self.last_line().iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.last_line().starts_with(br#"{"type":"summary""#) {
                self.saw_summary = true;
            }
            return Ok(true);
        }
    }

    /// The raw bytes of the record `read_record` returned last, for readers wanting fields the
    /// typed records do not have (e.g. `diff` on traces from newer versions).
    pub fn last_line(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads the next record, remembering the trailer.
    pub fn read_record(&mut self) -> std::result::Result<Option<Record>, TraceError> {
        let r = self.next_record()?;
        if let Some(Record::Summary(t)) = &r {
            self.trailer = Some(t.clone());
        }
        Ok(r)
    }
}

/// How every ARP record the writer writes begins.
const ARP_PREFIX: &str = r#"{"type":"arp","#;

/// Parses one record line; `line` and `file` go into the error.
fn parse_line(
    file: &str,
    line: u64,
    format_version: u32,
    b: &[u8],
) -> std::result::Result<Record, TraceError> {
    let err = |cause: &str| TraceError {
        file: file.to_string(),
        line: Some(line),
        cause: cause.to_string(),
    };
    // One check of the line, not serde_json's check of each key and string (`from_slice`).
    let b = std::str::from_utf8(b).map_err(|e| {
        err(&format!(
            "not UTF-8 text (bad byte at column {})",
            e.valid_up_to() + 1
        ))
    })?;
    // The writer always puts "type" first: skip the tag pass for the common records.
    if b.starts_with(ARP_PREFIX) {
        return serde_json::from_str(b)
            .map(|e| Record::Arp(Box::new(e)))
            .map_err(|e| err(&format!("corrupt ARP record: {e}")));
    }
    let tag: Tag = serde_json::from_str(b).map_err(|e| err(&format!("not JSON: {e}")))?;
    match tag.kind.as_deref() {
        Some("arp") => serde_json::from_str(b)
            .map(|e| Record::Arp(Box::new(e)))
            .map_err(|e| err(&format!("corrupt ARP record: {e}"))),
        Some("neigh_failed") => serde_json::from_str(b)
            .map(Record::Failed)
            .map_err(|e| err(&format!("corrupt neigh_failed record: {e}"))),
        Some("facts_change") if format_version >= 2 => serde_json::from_str(b)
            .map(|c| Record::Change(Box::new(c)))
            .map_err(|e| err(&format!("corrupt facts_change record: {e}"))),
        Some("summary") => serde_json::from_str(b)
            .map(Record::Summary)
            .map_err(|e| err(&format!("corrupt summary record: {e}"))),
        Some("header") => Err(err(
            "a second header: concatenated traces are not supported; read them one by one",
        )),
        Some(other) => Err(err(&format!(
            "unknown record type {other:?} for format version {} (written by a newer \
             arp-trace?)",
            format_version
        ))),
        None => Err(err("record without a \"type\" field")),
    }
}

/// Lines per batch handed to a parsing thread, and the byte size that ends a batch early.
const BATCH_LINES: usize = 2048;
const BATCH_BYTES: usize = 1 << 20;

enum Chunk {
    /// Whole lines: (line number, start, end) into `data`.
    Lines {
        seq: u64,
        data: Vec<u8>,
        lines: Vec<(u64, usize, usize)>,
    },
    End {
        seq: u64,
        warnings: Vec<String>,
        error: Option<TraceError>,
    },
}

enum Parsed {
    Records(u64, Vec<Record>, Option<TraceError>),
    End(u64, Vec<String>, Option<TraceError>),
}

impl Parsed {
    fn seq(&self) -> u64 {
        match self {
            Parsed::Records(s, ..) | Parsed::End(s, ..) => *s,
        }
    }
}

/// Replay's reader: one thread reads, decompresses and splits lines, others parse them, and
/// the records come back in file order. JSON parsing is most of replay's cost, so this is
/// what makes `-r` use more than one core. Errors and warnings are the sequential reader's,
/// delivered after every record before them.
pub struct ParallelReader {
    rx: std::sync::mpsc::Receiver<Parsed>,
    pending: BTreeMap<u64, Parsed>,
    next_seq: u64,
    current: std::collections::VecDeque<Record>,
    error: Option<TraceError>,
    finished: bool,
    pub warnings: Vec<String>,
}

impl ParallelReader {
    pub fn new(r: TraceReader) -> ParallelReader {
        Self::with_mode(r, false)
    }

    /// Reads ARP events as [`Record::Brief`] where the line allows it: for a pipeline whose
    /// sinks all read brief events (`Pipeline::reads_brief`).
    pub fn brief(r: TraceReader) -> ParallelReader {
        Self::with_mode(r, true)
    }

    fn with_mode(mut r: TraceReader, brief: bool) -> ParallelReader {
        use std::sync::{mpsc, Arc, Mutex};
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(workers);
        let (done_tx, done_rx) = mpsc::sync_channel::<Parsed>(workers);
        let (file, version) = (r.file.clone(), r.header.format_version);
        std::thread::spawn(move || {
            let mut seq = 0;
            // Lines are read straight into the batch's buffer.
            r.append = true;
            loop {
                r.buf = Vec::with_capacity(BATCH_BYTES + 4096);
                let mut lines = Vec::with_capacity(BATCH_LINES);
                let mut end = None;
                while lines.len() < BATCH_LINES && r.buf.len() < BATCH_BYTES {
                    match r.advance() {
                        Ok(true) => lines.push((r.line, r.start, r.buf.len())),
                        Ok(false) => {
                            end = Some(None);
                            break;
                        }
                        Err(e) => {
                            end = Some(Some(e));
                            break;
                        }
                    }
                }
                if !lines.is_empty() {
                    let data = std::mem::take(&mut r.buf);
                    if chunk_tx.send(Chunk::Lines { seq, data, lines }).is_err() {
                        return;
                    }
                    seq += 1;
                }
                if let Some(error) = end {
                    let warnings = std::mem::take(&mut r.warnings);
                    let _ = chunk_tx.send(Chunk::End {
                        seq,
                        warnings,
                        error,
                    });
                    return;
                }
            }
        });
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        for _ in 0..workers {
            let (rx, tx, file) = (chunk_rx.clone(), done_tx.clone(), file.clone());
            let mut brief = brief.then(crate::brief::BriefParser::default);
            std::thread::spawn(move || loop {
                let chunk = match rx.lock() {
                    Ok(g) => g.recv(),
                    Err(_) => return,
                };
                let out = match chunk {
                    Err(_) => return,
                    Ok(Chunk::End {
                        seq,
                        warnings,
                        error,
                    }) => Parsed::End(seq, warnings, error),
                    Ok(Chunk::Lines { seq, data, lines }) => {
                        let mut recs = Vec::with_capacity(lines.len());
                        let mut error = None;
                        for (n, a, b) in lines {
                            let line = &data[a..b];
                            let quick = match &mut brief {
                                Some(p) if line.starts_with(ARP_PREFIX.as_bytes()) => p.parse(line),
                                _ => None,
                            };
                            if let Some(ev) = quick {
                                recs.push(Record::Brief(ev));
                                continue;
                            }
                            match parse_line(&file, n, version, line) {
                                Ok(r) => recs.push(r),
                                Err(e) => {
                                    error = Some(e);
                                    break;
                                }
                            }
                        }
                        Parsed::Records(seq, recs, error)
                    }
                };
                if tx.send(out).is_err() {
                    return;
                }
            });
        }
        ParallelReader {
            rx: done_rx,
            pending: BTreeMap::new(),
            next_seq: 0,
            current: Default::default(),
            error: None,
            finished: false,
            warnings: Vec::new(),
        }
    }

    /// The next record in file order; `None` at the end (see `warnings`).
    pub fn read_record(&mut self) -> std::result::Result<Option<Record>, TraceError> {
        loop {
            if let Some(r) = self.current.pop_front() {
                return Ok(Some(r));
            }
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            if self.finished {
                return Ok(None);
            }
            let next = loop {
                if let Some(p) = self.pending.remove(&self.next_seq) {
                    break p;
                }
                match self.rx.recv() {
                    Ok(p) => {
                        self.pending.insert(p.seq(), p);
                    }
                    Err(_) => {
                        self.finished = true;
                        return Ok(None);
                    }
                }
            };
            self.next_seq += 1;
            match next {
                Parsed::Records(_, recs, error) => {
                    self.current = recs.into();
                    if error.is_some() {
                        self.error = error;
                        self.finished = true;
                    }
                }
                Parsed::End(_, warnings, error) => {
                    self.warnings = warnings;
                    self.error = error;
                    self.finished = true;
                }
            }
        }
    }
}

/// Reads all of `data` as a trace; the fuzz target and its stable smoke test. Returns the
/// number of records read before the end or the first error. Every ARP line is also read
/// in brief, which must agree with the full event wherever it takes the line.
pub fn read_bytes(data: &[u8]) -> (u64, Option<TraceError>) {
    let mut r = match TraceReader::from_reader("fuzz", Box::new(io::Cursor::new(data.to_vec()))) {
        Ok(r) => r,
        Err(e) => return (0, Some(e)),
    };
    let mut brief = crate::brief::BriefParser::default();
    let mut n = 0;
    loop {
        match r.read_record() {
            Ok(Some(rec)) => {
                if let (Record::Arp(full), Some(b)) = (&rec, brief.parse(r.last_line())) {
                    assert_eq!(b.view(None), full.view(), "brief and full parse disagree");
                }
                n += 1
            }
            Ok(None) => return (n, None),
            Err(e) => return (n, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests;
