//! Writing a trace: records go into a batch of whole lines, handed to the file (and the
//! compressor's flush) one batch at a time, so a killed writer leaves whole records.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Compression, DropBehind, BUF_SIZE};
use crate::{Header, Held, Record, Summary};

enum Encoder {
    Plain(DropBehind<File>),
    Gzip(flate2::write::GzEncoder<DropBehind<File>>),
    Zstd(zstd::stream::write::Encoder<'static, DropBehind<File>>),
}

pub struct TraceWriter {
    path: PathBuf,
    enc: Option<Encoder>,
    /// Whole lines not yet handed to the file.
    batch: Vec<u8>,
    /// Records written after the header.
    events: u64,
    /// Bytes on disk as of the last batch (compressed streams: after compression).
    written: u64,
}

impl TraceWriter {
    /// Creates `path` (compressed by its name) and writes `header`, stamped with the schema
    /// version the records after it follow.
    pub fn create(path: &Path, header: &Header) -> io::Result<TraceWriter> {
        let file = File::create(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: cannot create the trace file: {e}", path.display()),
            )
        })?;
        TraceWriter::new(path, file, header)
    }

    /// Writes a trace into `file`, which `path` names in messages.
    pub fn new(path: &Path, file: File, header: &Header) -> io::Result<TraceWriter> {
        let file = DropBehind::new(file);
        let enc = match Compression::for_path(path) {
            Compression::None => Encoder::Plain(file),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(file, 3).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("{}: cannot start zstd: {e}", path.display()),
                    )
                })?)
            }
        };
        let mut w = TraceWriter {
            path: path.to_path_buf(),
            enc: Some(enc),
            batch: Vec::with_capacity(64 * 1024),
            events: 0,
            written: 0,
        };
        w.line(&Record::Header(Held::Owned(header.current())))?;
        w.write_batch().map_err(|e| {
            io::Error::new(e.kind(), format!("{}: cannot write: {e}", path.display()))
        })?;
        Ok(w)
    }

    /// Records written after the header so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The file's size so far, for `-C`: exact for a plain file (what is batched included);
    /// for a compressed one, what reached the file by the last batch.
    pub fn size(&self) -> u64 {
        match self.enc {
            Some(Encoder::Plain(_)) => self.written + self.batch.len() as u64,
            _ => self.written,
        }
    }

    /// Appends one record (written out at the next `flush`, or when the batch is full).
    pub fn write(&mut self, rec: &Record<'_>) -> io::Result<()> {
        self.events += 1;
        self.line(rec)
    }

    fn line(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let start = self.batch.len();
        if let Err(e) = rec.write_json(&mut self.batch) {
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
            Some(Encoder::Plain(f)) => f.write_all(&self.batch).map(|_| {
                self.written += self.batch.len() as u64;
            }),
            // One fstat per batch: the compressor's output size is only known on disk.
            Some(Encoder::Gzip(g)) => g.write_all(&self.batch).and_then(|_| g.flush()).map(|_| {
                self.written = g
                    .get_ref()
                    .get_ref()
                    .metadata()
                    .map_or(self.written, |m| m.len());
            }),
            Some(Encoder::Zstd(z)) => z.write_all(&self.batch).and_then(|_| z.flush()).map(|_| {
                self.written = z
                    .get_ref()
                    .get_ref()
                    .metadata()
                    .map_or(self.written, |m| m.len());
            }),
        };
        self.batch.clear();
        r.map_err(|e| self.err(e))
    }

    /// Writes out what is batched.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.write_batch()
    }

    /// Writes the trailer, ends the compressed stream and syncs the file. Later calls do
    /// nothing.
    pub fn close(&mut self, trailer: &Summary<'_>) -> io::Result<()> {
        if self.enc.is_none() {
            return Ok(());
        }
        self.line(&Record::Summary(Held::Borrowed(trailer)))?;
        self.write_batch()?;
        let file = match self.enc.take() {
            Some(Encoder::Plain(f)) => Ok(f),
            Some(Encoder::Gzip(g)) => g.finish(),
            Some(Encoder::Zstd(z)) => z.finish(),
            None => unreachable!("checked above"),
        };
        file.and_then(|f| match f.get_ref().sync_data() {
            // A pipe, a FIFO or /dev/null has nothing to sync (fdatasync says EINVAL).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            r => r,
        })
        .map_err(|e| self.err(e))
    }
}
