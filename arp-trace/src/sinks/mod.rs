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
use std::time::{Duration, Instant};

use arp_trace_model::file::DropBehind;

pub use crate::pipeline::is_closed_pipe;

/// A buffered writer several sinks may each hold onto stdout (or a test's buffer).
pub struct Output {
    inner: io::BufWriter<Box<dyn Write>>,
    /// Standard output is a regular file: nobody reads it line by line as it is written, so
    /// a batch's flush waits for [`FILE_FLUSH_EVERY`] (a write() per batch was a tenth of
    /// the CPU in a storm). Pipes and terminals get every batch at once.
    file: bool,
    last_flush: Option<Instant>,
}

/// How long lines may wait in the buffer when standard output is a regular file.
const FILE_FLUSH_EVERY: Duration = Duration::from_millis(100);

impl Output {
    pub fn stdout() -> Self {
        let out = DropBehind::new(io::stdout());
        let file = out.is_on();
        Output {
            inner: io::BufWriter::with_capacity(64 * 1024, Box::new(out)),
            file,
            last_flush: None,
        }
    }
    pub fn new(w: Box<dyn Write>) -> Self {
        Output {
            inner: io::BufWriter::new(w),
            file: false,
            last_flush: None,
        }
    }
    pub fn writer(&mut self) -> &mut impl Write {
        &mut self.inner
    }
    /// The end of a batch: out now to a pipe or terminal, soon to a file.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.file {
            let now = Instant::now();
            if self
                .last_flush
                .is_some_and(|t| now.duration_since(t) < FILE_FLUSH_EVERY)
            {
                return Ok(());
            }
            self.last_flush = Some(now);
        }
        self.inner.flush()
    }
    /// Out now, whatever the output: before another sink on the same output writes (the
    /// summary) and at the end.
    pub fn flush_now(&mut self) -> io::Result<()> {
        self.last_flush = Some(Instant::now());
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

    /// A request whose every name comes from someone hostile: an interface named with an
    /// escape sequence and a byte that is not UTF-8 (as the kernel reports it), a namespace
    /// name with BEL, a process renaming the terminal's window, and an explanation and remedy
    /// carrying the same.
    pub(crate) fn hostile_event() -> arp_trace_model::ArpEvent<'static> {
        use crate::kernel::ring::tests::{raw, seed_frame};
        use arp_trace_model::{Origin, Reason, Remedy, Verdict};
        let f = seed_frame();
        let mut r = raw(&f, 14);
        r.ifname = *b"e\x1b[2J\xff\0\0\0\0\0\0\0\0\0\0";
        let mut ev = crate::kernel::ring::decode_arp(&r, 0).unwrap();
        ev.netns_name = Some("n\x07s".into());
        let mut t = crate::explain::tests::trigger("203.0.113.10", Origin::Local);
        t.comm = Some(crate::kernel::ring::cstr(b"\x1b]2;owned\x07\0"));
        ev.trigger = Some(t);
        ev.verdict = Some(Verdict {
            foreign_sender: true,
            reason: Reason::Announce0LocalSource,
            explanation: "e\x1b[2J announces\u{202e}".into(),
            consequence: Some("\x1b[31mred\r".into()),
            remedy: Some(Remedy {
                command: "sysctl -w 'net.ipv4.conf.e\x1b[2J.arp_announce=1'".into(),
                persistent: "# \u{9b}".into(),
                tradeoff: "\x7f".into(),
            }),
        });
        ev
    }

    /// Fails unless `text` holds no character a terminal acts on, other than line ends and the
    /// colours in `allowed`.
    pub(crate) fn assert_inert(text: &str, allowed: &[&str]) {
        let mut t = text.to_string();
        for a in allowed {
            t = t.replace(a, "");
        }
        let bad: Vec<char> = t
            .chars()
            .filter(|&c| c != '\n' && (c.is_control() || c == '\u{202e}'))
            .collect();
        assert!(bad.is_empty(), "{bad:?} in {text:?}");
    }
}
