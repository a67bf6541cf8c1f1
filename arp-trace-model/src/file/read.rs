//! Reading a trace line by line with bounded memory. A cut at the end (a killed writer) is a
//! warning, read up to the cut; anything malformed before it is an error naming file and line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::{TraceError, BUF_SIZE, FORMAT_VERSION, GZ_MAGIC, ZSTD_MAGIC};
use crate::limits::{self, MAX_LARGE_LINE, MAX_LINE};
use crate::{Header, Held, Record, Summary};

/// How the trailer line begins: the one record line allowed up to [`MAX_LARGE_LINE`].
const SUMMARY_PREFIX: &[u8] = br#"{"type":"summary""#;

pub(crate) enum Line {
    Whole,
    Eof,
    /// Bytes after the last newline: the writer was cut mid-record.
    Partial,
    /// The compressed stream ended early (`UnexpectedEof`): a cut.
    Broken(String),
    /// The stream could not be read or decompressed before its end: damage, not a cut.
    Failed(String),
    /// Longer than the limit it carries.
    TooLong(usize),
}

pub struct TraceReader {
    pub file: String,
    src: Box<dyn BufRead + Send>,
    codec: Codec,
    /// The current line is `buf[start..]`. With `append` set, lines accumulate in `buf` (the
    /// parallel reader hands a batch of them on as they are, copying nothing).
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) append: bool,
    /// Lines read so far (the number of the current line).
    pub line: u64,
    pub header: Header,
    /// The summary trailer, once read.
    pub trailer: Option<Summary<'static>>,
    pub warnings: Vec<String>,
    done: bool,
    /// A summary line went by (seen by `advance`, which does not parse).
    saw_summary: bool,
}

/// How long `-r FIFO` waits for a writer before giving up. Never negative: poll(2) would
/// take that as "forever".
fn fifo_wait_ms() -> i32 {
    std::env::var("ARP_TRACE_FIFO_WAIT_MS")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .map_or(10_000, |ms| ms.min(i32::MAX as u32) as i32)
}

/// Opens a FIFO without blocking forever: waits for a writer to connect, for a while.
fn open_fifo(path: &Path, name: &str) -> Result<File, TraceError> {
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

/// How the trace is stored, for saying what went wrong reading it in plain words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Zstd,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Plain => "file",
            Codec::Gzip => "gzip stream",
            Codec::Zstd => "zstd stream",
        }
    }

    /// flate2's `incomplete deflate stream`, zstd's `incomplete frame`, in words.
    fn ended_early(self) -> String {
        format!("the {} ends early (file cut?)", self.name())
    }

    /// A read or decompression error that is not a cut: damage, named by what was damaged;
    /// the decoder's own words follow in parentheses for whoever knows them.
    fn damaged(self, e: &io::Error) -> String {
        let words = crate::errors::clip_quotes(&e.to_string());
        match self {
            Codec::Plain => format!("a read failed ({words})"),
            c => format!("the {} is damaged ({words})", c.name()),
        }
    }
}

#[derive(Deserialize)]
struct HeaderTag<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    format_version: Option<u64>,
}

impl TraceReader {
    /// Opens a trace: a path, or `-` for standard input. Compression is recognised by its
    /// magic bytes, whatever the name.
    pub fn open(path: &Path) -> Result<TraceReader, TraceError> {
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
    ) -> Result<TraceReader, TraceError> {
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
        let codec = if got >= 2 && magic[..2] == GZ_MAGIC {
            Codec::Gzip
        } else if got == 4 && magic == ZSTD_MAGIC {
            Codec::Zstd
        } else {
            Codec::Plain
        };
        let src: Box<dyn BufRead + Send> = if codec == Codec::Gzip {
            Box::new(BufReader::with_capacity(
                BUF_SIZE,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUF_SIZE, head)),
            ))
        } else if codec == Codec::Zstd {
            let dec =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF_SIZE, head))
                    .map_err(|e| err(None, Codec::Zstd.damaged(&e)))?;
            Box::new(BufReader::with_capacity(BUF_SIZE, dec))
        } else {
            Box::new(BufReader::with_capacity(BUF_SIZE, head))
        };
        let mut r = TraceReader {
            file: name.to_string(),
            src,
            codec,
            buf: Vec::with_capacity(4096),
            start: 0,
            append: false,
            line: 0,
            header: Header::empty(FORMAT_VERSION),
            trailer: None,
            warnings: Vec::new(),
            done: false,
            saw_summary: false,
        };
        r.read_header()?;
        Ok(r)
    }

    pub(crate) fn error(&self, cause: impl Into<String>) -> TraceError {
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
        // The header and the first summary trailer may be MAX_LARGE_LINE long, every other
        // line MAX_LINE; which one a line is is decided once it is long, by its first bytes.
        let (header, saw_summary) = (self.line == 0, self.saw_summary);
        let mut limit = MAX_LINE;
        loop {
            let avail = match self.src.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // flate2 and zstd report a stream that stops early as UnexpectedEof; a
                // checksum mismatch or bad block is something else, and a cut file is not.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Line::Broken(self.codec.ended_early())
                }
                Err(e) => return Line::Failed(self.codec.damaged(&e)),
            };
            if avail.is_empty() {
                return if self.buf.len() == self.start {
                    Line::Eof
                } else {
                    Line::Partial
                };
            }
            let (take, whole) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            let len = self.buf.len() - self.start + take;
            if len > limit {
                let line = &self.buf[self.start..];
                if header || (!saw_summary && line.starts_with(SUMMARY_PREFIX)) {
                    limit = MAX_LARGE_LINE;
                }
                if len > limit {
                    return Line::TooLong(limit);
                }
            }
            let avail = &avail[..take];
            self.buf.extend_from_slice(avail);
            self.src.consume(take + whole as usize);
            if whole {
                return Line::Whole;
            }
        }
    }

    fn read_header(&mut self) -> Result<(), TraceError> {
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
            Line::Broken(e) | Line::Failed(e) => {
                self.line = 1;
                return Err(self.error(format!("cannot read the header: {e}")));
            }
            Line::TooLong(limit) => {
                self.line = 1;
                return Err(self.error(format!(
                    "line longer than {} MiB: not an arp-trace trace",
                    limit >> 20
                )));
            }
        }
        self.line = 1;
        let tag: HeaderTag = serde_json::from_slice(self.last_line()).map_err(|e| {
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
        let line = std::str::from_utf8(self.last_line()).map_err(|e| {
            self.error(format!(
                "header: not UTF-8 text (bad byte at column {})",
                e.valid_up_to() + 1
            ))
        })?;
        let header: Header =
            limits::with_entries(limits::HEADER_ENTRIES, || serde_json::from_str(line)).map_err(
                |e| {
                    self.error(crate::errors::describe::<Header>(
                        line,
                        "header",
                        &e,
                        limits::HEADER_ENTRIES,
                    ))
                },
            )?;
        header
            .check()
            .map_err(|e| self.error(format!("header: {e}")))?;
        self.header = header;
        Ok(())
    }

    /// Moves to the next non-blank whole line (left in `buf`); false at the end or a cut.
    pub(crate) fn advance(&mut self) -> Result<bool, TraceError> {
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
                        "{} line {}: the trace was cut: {e}; read the {} whole lines before it",
                        self.file,
                        self.line + 1,
                        self.line
                    ));
                    return Ok(false);
                }
                Line::Failed(e) => {
                    self.line += 1;
                    self.done = true;
                    return Err(self.error(format!(
                        "cannot read past line {}: {e}; it is damaged, not cut",
                        self.line - 1
                    )));
                }
                Line::TooLong(limit) => {
                    self.line += 1;
                    self.done = true;
                    return Err(self.error(format!(
                        "line longer than {} MiB: not an arp-trace record (see the limits in \
                         arp-trace's README, Traces)",
                        limit >> 20
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

    /// The raw bytes of the record `read_record` returned last.
    pub fn last_line(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads the next record, borrowing from the reader's line; `None` at the end (or at a
    /// cut, recorded in `warnings`). Remembers the trailer.
    pub fn read_record(&mut self) -> Result<Option<Record<'_>>, TraceError> {
        if !self.advance()? {
            return Ok(None);
        }
        let version = self.header.format_version;
        let (file, line) = (&self.file, self.line);
        match parse_line(file, line, version, &self.buf[self.start..]) {
            Ok(Record::Summary(s)) => {
                let owned = s.into_inner().into_owned();
                self.trailer = Some(owned.clone());
                Ok(Some(Record::Summary(Held::Owned(owned))))
            }
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

/// Parses one record line; `line` and `file` go into the error.
pub(crate) fn parse_line<'a>(
    file: &str,
    line: u64,
    format_version: u32,
    b: &'a [u8],
) -> Result<Record<'a>, TraceError> {
    let err = |cause: String| TraceError {
        file: file.to_string(),
        line: Some(line),
        cause,
    };
    // One check of the line, not serde_json's check of each key and string (`from_slice`).
    let s = std::str::from_utf8(b).map_err(|e| {
        err(format!(
            "not UTF-8 text (bad byte at column {})",
            e.valid_up_to() + 1
        ))
    })?;
    Record::parse(s, format_version).map_err(err)
}

/// Reads all of `data` as a trace; the fuzz target and its stable smoke test. Returns the
/// number of records read before the end or the first error. One input in eight is also read
/// by the parallel reader, which must agree with the sequential one (its threads cost a
/// fuzzer four times its speed if every input went through them). The records are compared by
/// a hash of their JSON, so checking holds no more than reading does (a small compressed input
/// can hold millions of records).
pub fn read_bytes(data: &[u8]) -> (u64, Option<TraceError>) {
    use std::hash::{Hash, Hasher};
    let mut r = match TraceReader::from_reader("fuzz", Box::new(io::Cursor::new(data.to_vec()))) {
        Ok(r) => r,
        Err(e) => return (0, Some(e)),
    };
    let mut seen = std::collections::hash_map::DefaultHasher::new();
    let mut n = 0u64;
    let err = loop {
        match r.read_record() {
            Ok(Some(rec)) => {
                rec.to_json().hash(&mut seen);
                n += 1;
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    if !data.len().is_multiple_of(8) {
        return (n, err);
    }
    let p = TraceReader::from_reader("fuzz", Box::new(io::Cursor::new(data.to_vec())))
        .expect("the header read once already");
    let mut p = super::ParallelReader::new(p);
    let mut again = std::collections::hash_map::DefaultHasher::new();
    let mut m = 0u64;
    let perr = p
        .for_each(|rec| {
            rec.to_json().hash(&mut again);
            m += 1;
            Ok::<bool, TraceError>(true)
        })
        .err();
    p.join();
    assert_eq!(
        (n, seen.finish()),
        (m, again.finish()),
        "the parallel reader disagrees with the sequential one"
    );
    assert_eq!(err, perr, "the parallel reader ends differently");
    (n, err)
}
