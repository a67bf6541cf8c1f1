//! Fuzz target: any bytes (plain, gzip or zstd) through the trace reader, sequential and
//! parallel, must end in records or a one-line error, never a panic, hang or unbounded
//! allocation, and both readers must agree. The same reader runs as a seeded, bounded smoke
//! test on stable: `cargo test -p arp-trace-model fuzz_smoke`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = arp_trace_model::file::read_bytes(data);
});
