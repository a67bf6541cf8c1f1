//! `-C`, `-G` and `-W`, tcpdump's rotation: when the `-w` trace moves on to a new file, what
//! the new file is called, and which of this run's old files go to keep `-W`. The files
//! themselves (each a whole trace) are the trace sink's.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::outfile::FileId;

/// The rotation options as given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `-C`, in bytes: a new file once the current one is larger.
    pub size: Option<u64>,
    /// `-G`: a new file this long after the current one began.
    pub every: Option<Duration>,
    /// `-W`: at most this many files of the run at once.
    pub count: Option<u32>,
}

impl Rotation {
    pub fn is_on(&self) -> bool {
        self.size.is_some() || self.every.is_some()
    }
}

/// Why the current file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Size,
    Time,
}

/// tcpdump's names (its `MakeFilename`): FILE through strftime(3) at the file's start when
/// `-G` is given; then a counter appended when `-C` is given or when the name has no time
/// field that would tell the files apart (tcpdump would overwrite one file there): nothing on
/// the first file, then 1, 2, ...; with `-W N` always, 0 to N-1 zero-padded to the digits
/// of N-1.
#[derive(Debug, Clone)]
pub struct Names {
    base: OsString,
    time_fields: bool,
    numbered: bool,
    digits: usize,
}

/// Digits of `x` (0 for 0), as tcpdump pads `-W` counters.
fn digits(mut x: u32) -> usize {
    let mut n = 0;
    while x > 0 {
        n += 1;
        x /= 10;
    }
    n
}

/// Whether a strftime format holds a conversion (`%%` is a literal percent sign).
fn has_time_field(fmt: &[u8]) -> bool {
    let mut i = 0;
    while i < fmt.len() {
        if fmt[i] == b'%' {
            match fmt.get(i + 1) {
                Some(b'%') => i += 2,
                Some(_) => return true,
                None => return false,
            }
        } else {
            i += 1;
        }
    }
    false
}

/// `fmt` expanded by strftime(3) for `t` in local time, as tcpdump does; the format as it is
/// when the C library cannot (a NUL byte, an unrepresentable time).
fn strftime(fmt: &[u8], t: SystemTime) -> Vec<u8> {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as libc::time_t,
        Err(_) => 0,
    };
    let Ok(cfmt) = CString::new(fmt) else {
        return fmt.to_vec();
    };
    // SAFETY: tm is plain data, filled by localtime_r from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return fmt.to_vec();
    }
    // A result of 0 can also mean an empty expansion; grow until it fits or is clearly empty.
    let mut cap = fmt.len() * 4 + 64;
    while cap <= 64 * 1024 {
        let mut buf = vec![0u8; cap];
        // SAFETY: buf has `cap` writable bytes; format and tm are valid.
        let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), cap, cfmt.as_ptr(), &tm) };
        if n > 0 {
            buf.truncate(n);
            return buf;
        }
        cap *= 4;
    }
    Vec::new()
}

impl Names {
    pub fn new(base: &Path, r: &Rotation) -> Names {
        let time_fields = r.every.is_some() && has_time_field(base.as_os_str().as_bytes());
        let numbered = r.size.is_some() || !time_fields;
        Names {
            base: base.as_os_str().to_owned(),
            time_fields,
            numbered,
            digits: match r.count {
                Some(n) if numbered => digits(n - 1),
                _ => 0,
            },
        }
    }

    /// The name of file `n` of the window that began at `start`.
    pub fn name(&self, start: SystemTime, n: u32) -> PathBuf {
        let mut name = if self.time_fields {
            strftime(self.base.as_bytes(), start)
        } else {
            self.base.as_bytes().to_vec()
        };
        if self.numbered && (n > 0 || self.digits > 0) {
            name.extend_from_slice(format!("{n:0width$}", width = self.digits).as_bytes());
        }
        PathBuf::from(OsString::from_vec(name))
    }
}

/// Where the rotation stands: the current window and counter, and the files this run wrote
/// that are still there.
#[derive(Debug)]
pub struct Rotator {
    opts: Rotation,
    names: Names,
    window_start: SystemTime,
    window_began: Instant,
    n: u32,
    /// Oldest first; only this run's files, which `-W` may remove.
    kept: VecDeque<(PathBuf, FileId)>,
}

impl Rotator {
    /// Starts the first window now.
    pub fn new(base: &Path, opts: Rotation) -> Rotator {
        Rotator {
            opts,
            names: Names::new(base, &opts),
            window_start: SystemTime::now(),
            window_began: Instant::now(),
            n: 0,
            kept: VecDeque::new(),
        }
    }

    /// The current file's name.
    pub fn current(&self) -> PathBuf {
        self.names.name(self.window_start, self.n)
    }

    /// Whether the current file must end before anything more is written to it: tcpdump's
    /// tests, the window's first (its new file would be the counter's first anyway).
    pub fn due(&self, size: u64, now: Instant) -> Option<Why> {
        if self
            .opts
            .every
            .is_some_and(|every| now.duration_since(self.window_began) >= every)
        {
            return Some(Why::Time);
        }
        if self.opts.size.is_some_and(|limit| size > limit) {
            return Some(Why::Size);
        }
        None
    }

    /// Moves on and names the next file. A new window restarts the counter when the names
    /// carry the time (tcpdump's `-C` count is per `-G` window); `-W` wraps it.
    pub fn advance(&mut self, why: Why) -> PathBuf {
        if why == Why::Time {
            self.window_start = SystemTime::now();
            self.window_began = Instant::now();
        }
        self.n = if why == Why::Time && self.names.time_fields {
            0
        } else {
            match self.opts.count {
                Some(c) if self.n + 1 >= c && self.names.numbered => 0,
                _ => self.n.saturating_add(1),
            }
        };
        self.current()
    }

    /// Notes the file just created at `path`; returns the old files to remove so that at most
    /// `-W` remain. A name reused (the `-W` ring, or a time field coarser than `-G`) is the
    /// new file now, not an old one.
    pub fn opened(&mut self, path: PathBuf, id: FileId) -> Vec<(PathBuf, FileId)> {
        self.kept.retain(|(p, _)| *p != path);
        self.kept.push_back((path, id));
        let mut gone = Vec::new();
        if let Some(c) = self.opts.count {
            while self.kept.len() > c as usize {
                gone.extend(self.kept.pop_front());
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(base: &str, size: bool, every: bool, count: Option<u32>) -> Names {
        Names::new(
            Path::new(base),
            &Rotation {
                size: size.then_some(1),
                every: every.then_some(Duration::from_secs(1)),
                count,
            },
        )
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn names_follow_tcpdump() {
        let s = |n: &Names, i: u32| n.name(at(0), i).to_string_lossy().into_owned();
        // -C: the first file keeps the name, then 1, 2, ...
        let c = names("t.jsonl", true, false, None);
        assert_eq!(
            [s(&c, 0), s(&c, 1), s(&c, 12)],
            ["t.jsonl", "t.jsonl1", "t.jsonl12"]
        );
        // -C -W 10: 0 to 9, one digit; -W 100: two.
        let w = names("t.jsonl", true, false, Some(10));
        assert_eq!([s(&w, 0), s(&w, 9)], ["t.jsonl0", "t.jsonl9"]);
        assert_eq!(s(&names("t", true, false, Some(100)), 7), "t07");
        // -W 1: one name, as tcpdump.
        assert_eq!(s(&names("t", true, false, Some(1)), 0), "t");
        // -G without a time field is numbered rather than overwriting one file.
        assert_eq!(s(&names("t", false, true, None), 3), "t3");
        assert_eq!(s(&names("t", false, true, Some(3)), 0), "t0");
        // -G with one: the start time; %% is no field.
        let g = names("t-%Y.jsonl.zst", false, true, Some(5));
        assert!(s(&g, 0).starts_with("t-19") || s(&g, 0).starts_with("t-20"));
        assert_eq!(s(&g, 4), s(&g, 0));
        assert_eq!(s(&names("100%%", false, true, None), 2), "100%%2");
        // -G and -C: the time, then the count within the window.
        let gc = names("t-%Y-", true, true, None);
        assert!(s(&gc, 2).ends_with("-2"));
    }

    #[test]
    fn strftime_expands_local_time_fields() {
        let t = at(1_800_000_000);
        let y = String::from_utf8(strftime(b"%Y", t)).unwrap();
        assert!(y == "2027" || y == "2026", "{y}");
        assert_eq!(strftime(b"%s", t), b"1800000000");
        assert_eq!(strftime(b"a%%b", t), b"a%b");
        assert_eq!(strftime(b"", t), b"");
        assert!(has_time_field(b"x%H") && !has_time_field(b"x%%") && !has_time_field(b"x%"));
    }

    /// Any file's identity: the policy only keeps it to hand back.
    fn id() -> FileId {
        FileId::of_file(&std::fs::File::open(std::env::temp_dir()).unwrap()).unwrap()
    }

    #[test]
    fn the_ring_wraps_and_only_count_files_stay() {
        let mut r = Rotator::new(
            Path::new("t"),
            Rotation {
                size: Some(10),
                every: None,
                count: Some(3),
            },
        );
        assert_eq!(r.current(), Path::new("t0"));
        assert_eq!(r.due(10, Instant::now()), None);
        assert_eq!(r.due(11, Instant::now()), Some(Why::Size));
        let mut seen = vec![r.current()];
        for _ in 0..4 {
            seen.push(r.advance(Why::Size));
        }
        let seen: Vec<_> = seen
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(seen, ["t0", "t1", "t2", "t0", "t1"]);
        // Reused names replace their entry; nothing is removed in the ring.
        for p in ["t0", "t1", "t2", "t0", "t1"] {
            assert!(r.opened(p.into(), id()).is_empty());
        }
        // Time-named files: the oldest goes once a fourth exists.
        let mut g = Rotator::new(
            Path::new("g"),
            Rotation {
                size: None,
                every: Some(Duration::from_secs(3600)),
                count: Some(3),
            },
        );
        assert_eq!(g.due(u64::MAX, Instant::now()), None);
        assert_eq!(
            g.due(0, Instant::now() + Duration::from_secs(3600)),
            Some(Why::Time)
        );
        let mut gone = Vec::new();
        for p in ["a", "b", "c", "d", "e"] {
            gone.extend(g.opened(p.into(), id()).into_iter().map(|(p, _)| p));
        }
        assert_eq!(gone, [PathBuf::from("a"), PathBuf::from("b")]);
    }

    #[test]
    fn a_new_window_restarts_the_count_only_for_time_named_files() {
        let opts = Rotation {
            size: Some(1),
            every: Some(Duration::from_secs(60)),
            count: None,
        };
        let mut timed = Rotator::new(Path::new("t-%s-"), opts);
        timed.advance(Why::Size);
        assert!(timed.current().to_string_lossy().ends_with("-1"));
        timed.advance(Why::Time);
        assert!(timed.current().to_string_lossy().ends_with('-'));
        let mut plain = Rotator::new(Path::new("p"), opts);
        plain.advance(Why::Size);
        assert_eq!(plain.advance(Why::Time), Path::new("p2"));
    }
}
