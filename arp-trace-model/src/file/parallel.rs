//! Replay's reader: one thread reads, decompresses and splits lines, others parse them, and the
//! records come back in file order, each batch still borrowing the bytes it was parsed from
//! (carried together by a [`yoke::Yoke`]). JSON parsing is most of replay's cost, so this is
//! what makes `-r` use more than one core. Errors and warnings are the sequential reader's,
//! delivered after every record before them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use yoke::{Yoke, Yokeable};

use super::read::{parse_line, TraceReader};
use super::TraceError;
use crate::Record;

/// Lines per batch handed to a parsing thread, and the byte size that ends a batch early.
const BATCH_LINES: usize = 2048;
const BATCH_BYTES: usize = 1 << 20;
/// Bytes of lines read but not yet handed to the consumer: what keeps memory bounded however
/// many threads parse, since a parsed batch can take several times its text (see the README,
/// Traces). A batch alone may be larger (a trailer line), and then goes through by itself.
pub const IN_FLIGHT_BYTES: usize = 8 << 20;

/// Bytes in flight, shared by the reading thread (which waits for room) and the consumer
/// (which makes room as it takes batches).
#[derive(Default)]
struct InFlight {
    state: Mutex<(usize, bool)>,
    room: Condvar,
}

impl InFlight {
    /// Waits until `n` more bytes fit (or nothing is in flight); false once the consumer is
    /// gone.
    fn reserve(&self, n: usize) -> bool {
        let Ok(mut g) = self.state.lock() else {
            return false;
        };
        while !g.1 && g.0 > 0 && g.0 + n > IN_FLIGHT_BYTES {
            g = match self.room.wait(g) {
                Ok(g) => g,
                Err(_) => return false,
            };
        }
        g.0 += n;
        !g.1
    }

    fn release(&self, n: usize) {
        if let Ok(mut g) = self.state.lock() {
            g.0 = g.0.saturating_sub(n);
        }
        self.room.notify_all();
    }

    fn close(&self) {
        if let Ok(mut g) = self.state.lock() {
            g.1 = true;
        }
        self.room.notify_all();
    }
}

/// The records of one batch of lines, borrowing from the batch's bytes.
#[derive(Yokeable)]
pub struct Batch<'a> {
    pub records: Vec<Record<'a>>,
}

/// A batch with the bytes its records borrow from.
pub type ReadBatch = Yoke<Batch<'static>, Vec<u8>>;

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
    Records(u64, ReadBatch, Option<TraceError>),
    End(u64, Vec<String>, Option<TraceError>),
}

impl Parsed {
    fn seq(&self) -> u64 {
        match self {
            Parsed::Records(s, ..) | Parsed::End(s, ..) => *s,
        }
    }
}

pub struct ParallelReader {
    in_flight: Arc<InFlight>,
    /// The reading and parsing threads: left to end on their own (a reader blocked on a pipe
    /// must not hold up an early exit), or joined by [`ParallelReader::join`].
    threads: Vec<std::thread::JoinHandle<()>>,
    rx: mpsc::Receiver<Parsed>,
    pending: BTreeMap<u64, Parsed>,
    next_seq: u64,
    ready: VecDeque<ReadBatch>,
    error: Option<TraceError>,
    finished: bool,
    pub warnings: Vec<String>,
}

impl ParallelReader {
    pub fn new(mut r: TraceReader) -> ParallelReader {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(workers);
        let (done_tx, done_rx) = mpsc::sync_channel::<Parsed>(workers);
        let (file, version) = (r.file.clone(), r.header.format_version);
        let in_flight = Arc::new(InFlight::default());
        let room = in_flight.clone();
        let mut threads = Vec::with_capacity(workers + 1);
        threads.push(std::thread::spawn(move || {
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
                    if !room.reserve(data.len()) {
                        return;
                    }
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
        }));
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        for _ in 0..workers {
            let (rx, tx, file) = (chunk_rx.clone(), done_tx.clone(), file.clone());
            threads.push(std::thread::spawn(move || loop {
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
                        let mut error = None;
                        let batch = Yoke::<Batch<'static>, Vec<u8>>::attach_to_cart(data, |d| {
                            let mut records = Vec::with_capacity(lines.len());
                            for (n, a, b) in lines {
                                match parse_line(&file, n, version, &d[a..b]) {
                                    Ok(r) => records.push(r),
                                    Err(e) => {
                                        error = Some(e);
                                        break;
                                    }
                                }
                            }
                            Batch { records }
                        });
                        Parsed::Records(seq, batch, error)
                    }
                };
                if tx.send(out).is_err() {
                    return;
                }
            }));
        }
        ParallelReader {
            in_flight,
            threads,
            rx: done_rx,
            pending: BTreeMap::new(),
            next_seq: 0,
            ready: VecDeque::new(),
            error: None,
            finished: false,
            warnings: Vec::new(),
        }
    }

    /// The next batch of records in file order; `None` at the end (see `warnings`). An error
    /// comes after the batch holding the records before it.
    pub fn next_batch(&mut self) -> Result<Option<ReadBatch>, TraceError> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                self.in_flight.release(b.backing_cart().len());
                return Ok(Some(b));
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
                Parsed::Records(_, batch, error) => {
                    self.ready.push_back(batch);
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

    /// Hands every record in file order to `f` until it returns `Ok(false)`; a reading error
    /// comes after the records before it.
    pub fn for_each<E: From<TraceError>>(
        &mut self,
        mut f: impl FnMut(&Record<'_>) -> Result<bool, E>,
    ) -> Result<(), E> {
        while let Some(batch) = self.next_batch()? {
            for rec in &batch.get().records {
                if !f(rec)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl ParallelReader {
    /// Stops reading and waits for every thread to end, for a caller that must know they
    /// have (the fuzz target, whose leak check would count a thread still ending). Only for an
    /// input that cannot block, such as bytes in memory.
    pub fn join(mut self) {
        self.in_flight.close();
        let threads = std::mem::take(&mut self.threads);
        // Parsing threads waiting to hand over a batch see the channel close.
        drop(self);
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for ParallelReader {
    /// Lets a reading thread waiting for room end (the consumer stopped early: `-c`).
    fn drop(&mut self) {
        self.in_flight.close();
    }
}
