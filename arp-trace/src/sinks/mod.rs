//! Where records go: the terminal (tcpdump-like lines), JSON Lines, the summary, pcapng for
//! Wireshark, trace files (rotated or not) and Prometheus metrics. Each is a
//! [`crate::pipeline::Sink`].

pub mod json;
pub mod metrics;
pub mod outfile;
pub mod pcapng;
pub mod rotate;
pub mod summary;
pub mod terminal;
pub mod text;
pub mod trace;

use std::io::{self, Write};

pub use crate::pipeline::is_closed_pipe;

/// A buffered writer several sinks may each hold onto stdout (or a test's buffer).
pub struct Output {
    inner: io::BufWriter<Box<dyn Write>>,
}

impl Output {
    pub fn stdout() -> Self {
        Output {
            inner: io::BufWriter::with_capacity(64 * 1024, Box::new(io::stdout())),
        }
    }
    pub fn new(w: Box<dyn Write>) -> Self {
        Output {
            inner: io::BufWriter::new(w),
        }
    }
    pub fn writer(&mut self) -> &mut impl Write {
        &mut self.inner
    }
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test reads back after the sink wrote them.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }
}
