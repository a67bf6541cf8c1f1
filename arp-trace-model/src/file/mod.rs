//! Trace files (`-w`, `-r`, `diff`): JSON Lines with a header, the `--json` records and a
//! summary trailer; plain, `.gz` or `.zst`; written so that a killed writer leaves a readable
//! file, and read so that no input can make the reader panic or use unbounded memory.
//!
//! # Format (version 2)
//! ```text
//! {"type":"header","format_version":4,"schema_version":3,"arp_trace_version":"0.1.0",
//!  "kernel_release":...,
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
//! `facts_change` records ([`crate::FactsChange`]) let a reader rebuild a namespace's state at
//! any moment: `{"type":"facts_change","time":..,"netns":..,"netns_name":..,"change":C,...}`
//! with C one of
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
//! The header's `schema_version` (the JSON Schema's version, [`crate::SCHEMA_VERSION`]) came
//! without a new format version: it is such an added field, which older readers skip.
//! Version 3 added `ndisc` records (IPv6 neighbour discovery) and IPv6 addresses in
//! `trigger.src`/`dst` and `neigh_failed.target_ip`. A version 2 reader would stop at the
//! first of them halfway through the file, having printed the records before it as if they
//! were the whole trace; with the version raised it refuses the file at its header instead.
//! Version 4 added received frames: `arp` records with `"direction":"in"` (and `"out"` on
//! the transmitted ones), and `conflict` records. A version 3 reader would skip the unknown
//! field and count every received request as one this host sent, with no verdict; version 4
//! files are refused by it instead. A record without `direction` (versions 1 to 3) was
//! transmitted.
//!
//! # Durability
//! Records are serialized into a batch buffer that only ever holds whole lines; each batch
//! (one per ring-buffer wakeup) is handed to the file in one `write(2)`. Compressed files are
//! flushed per batch as well: gzip with a sync flush, zstd by ending the block, so everything
//! before a SIGKILL can be decompressed. A clean end writes the trailer, closes the gzip
//! member / zstd frame and syncs the file.

mod drop_behind;
mod parallel;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use drop_behind::DropBehind;
pub use parallel::{Batch, ParallelReader, ReadBatch};
pub use read::{read_bytes, TraceReader};
pub use write::TraceWriter;

/// The format version this arp-trace writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 4;

/// Longest lines a reader accepts (records, and the header and trailer); with the limits on
/// each field ([`crate::limits`]) they bound what reading any input can hold.
pub use crate::limits::{MAX_LARGE_LINE, MAX_LINE};

pub(crate) const BUF_SIZE: usize = 1 << 20;
pub(crate) const GZ_MAGIC: [u8; 2] = [0x1f, 0x8b];
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

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
