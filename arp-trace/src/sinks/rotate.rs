//! `-C`, `-G` and `-W`, tcpdump's rotation: when the `-w` trace moves on to a new file, what
//! the new file is called, and which of this run's old files go to keep `-W`. The files
//! themselves (each a whole trace) are the trace sink's.

use std::collections::VecDeque;
use std::ffi::OsString;
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

/// The conversions of a strftime format, in order: `(start, end)` byte ranges of each `%`
/// with its flags, width, `:` and `E`/`O` modifiers and its letter.
fn conversions(fmt: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < fmt.len() {
        if fmt[i] != b'%' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < fmt.len() && matches!(fmt[i], b'-' | b'_' | b'0' | b'^' | b'#' | b':') {
            i += 1;
        }
        while i < fmt.len() && fmt[i].is_ascii_digit() {
            i += 1;
        }
        if i < fmt.len() && matches!(fmt[i], b'E' | b'O') {
            i += 1;
        }
        // A trailing lone `%` is taken as the conversion it starts, and refused below.
        i = (i + 1).min(fmt.len());
        out.push((start, i));
    }
    out
}

/// `fmt` expanded for `t` in the local time zone, as tcpdump runs it through strftime(3).
/// Only the conversions go through jiff, so a file name's bytes that are not UTF-8 stay as
/// they are; `Err` names the first conversion jiff cannot expand.
fn strftime(fmt: &[u8], t: SystemTime) -> Result<Vec<u8>, String> {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let zoned = ts.to_zoned_datetime(super::text::local_zone().clone());
    let mut out = Vec::with_capacity(fmt.len() + 16);
    let mut last = 0;
    for (a, b) in conversions(fmt) {
        out.extend_from_slice(&fmt[last..a]);
        let conv = &fmt[a..b];
        match jiff::fmt::strtime::format(conv, &zoned) {
            Ok(v) => out.extend_from_slice(v.as_bytes()),
            Err(_) => {
                return Err(format!(
                    "{} is not a strftime field arp-trace can expand in a -w name: use \
                     fields such as %Y %m %d %H %M %S %s %j, or %% for a percent sign",
                    String::from_utf8_lossy(conv)
                ))
            }
        }
        last = b;
    }
    out.extend_from_slice(&fmt[last..]);
    Ok(out)
}

/// Whether `-w FILE`'s strftime fields can all be expanded: checked before tracing starts,
/// so a bad field is one line at start, not a failed rotation an hour in.
pub fn check_name(base: &Path, r: &Rotation) -> Result<(), String> {
    if r.every.is_some() {
        strftime(base.as_os_str().as_bytes(), SystemTime::now())?;
    }
    Ok(())
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
            // check_name() refused the name if a field cannot be expanded.
            strftime(self.base.as_bytes(), start).unwrap_or_else(|_| self.base.as_bytes().to_vec())
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
        let y = String::from_utf8(strftime(b"%Y", t).unwrap()).unwrap();
        assert!(y == "2027" || y == "2026", "{y}");
        assert_eq!(strftime(b"%s", t).unwrap(), b"1800000000");
        assert_eq!(strftime(b"a%%b", t).unwrap(), b"a%b");
        assert_eq!(strftime(b"", t).unwrap(), b"");
        // Bytes that are not UTF-8 stay, the fields around them expand.
        assert_eq!(
            strftime(b"\xff-%s-\xfe", t).unwrap(),
            b"\xff-1800000000-\xfe"
        );
        assert_eq!(strftime(b"%-m", at(0)).unwrap().len(), 1);
        for bad in [&b"x%!"[..], b"x%"] {
            let e = strftime(bad, t).unwrap_err();
            assert!(
                e.starts_with(&String::from_utf8_lossy(&bad[1..]).to_string()),
                "{e}"
            );
        }
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
