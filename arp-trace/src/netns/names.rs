//! Network namespace names: the kernel reports a namespace by inode; users know the names
//! `ip netns` gives them (bind mounts under /run/netns). Also resolves `--netns` arguments.

use std::borrow::Cow;

use foldhash::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::coarse::{self, Stamp};
use super::find::{inode_of, NETNS_RUN_DIR};

/// Maps namespace inodes to `ip netns` names, rescanning when an unknown inode shows up
/// (namespaces are created while tracing), at most once per `rescan_every`.
pub struct NetnsNames {
    dir: PathBuf,
    /// Inode -> (name as shown, the file name itself, when its bind mount last had it).
    /// The name is the run's name table's copy: every record of the namespace carries it.
    names: HashMap<u32, (Cow<'static, str>, OsString, Stamp)>,
    own: Option<u32>,
    last_scan: Option<Stamp>,
    /// Inodes a scan did not find, and when: each unknown inode triggers its own rescan,
    /// at most once per `rescan_every`.
    misses: HashMap<u32, Stamp>,
    rescan_every: Duration,
    /// Tells when a name is added, removed or renamed in `dir`, so cached names need no
    /// stat() per event (a quarter of the tracer's CPU in a storm).
    watch: DirWatch,
    /// Replaying a trace: names come from the trace, never from the machine reading it.
    offline: bool,
}

/// How long a cached name is trusted without a stat() of its bind mount, for the changes
/// inotify does not report (a namespace unmounted but its file left behind).
const RECHECK_EVERY: Duration = Duration::from_millis(100);

/// How often the directory watch is read: a name is at most this stale (or one tick of the
/// coarse clock, if longer) after `ip netns` deleted it and the kernel reused its inode.
const WATCH_POLL_EVERY: Duration = Duration::from_millis(1);

impl NetnsNames {
    pub fn new() -> Self {
        Self::with_dir(NETNS_RUN_DIR)
    }

    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        NetnsNames {
            dir: dir.into(),
            names: HashMap::default(),
            own: super::find::own_inode(),
            last_scan: None,
            misses: HashMap::default(),
            rescan_every: Duration::from_millis(200),
            watch: DirWatch::default(),
            offline: false,
        }
    }

    /// For replay: `own` is the namespace the recording tracer ran in; no lookups.
    pub fn offline(own: Option<u32>) -> Self {
        NetnsNames {
            own,
            offline: true,
            ..Self::with_dir("/nonexistent")
        }
    }

    /// The tracer's own namespace, shown without a prefix like tcpdump shows interfaces.
    pub fn own(&self) -> Option<u32> {
        self.own
    }

    fn scan(&mut self) {
        let now = coarse::now();
        self.last_scan = Some(now);
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names = HashMap::default();
        for entry in rd.flatten() {
            let file = entry.file_name();
            if let Ok(ino) = inode_of(&entry.path()) {
                // A name whose bind mount is gone stats as a plain file on the tmpfs; nsfs
                // inodes are what the kernel reports, so keep the first mount per inode.
                names.entry(ino).or_insert_with(|| {
                    (
                        arp_trace_model::intern::kernel_name(file.as_bytes()),
                        file,
                        now,
                    )
                });
            }
        }
        self.names = names;
    }

    /// The `ip netns` name of a namespace, if it has one.
    pub fn name(&mut self, inode: u32) -> Option<Cow<'static, str>> {
        if self.offline {
            return None;
        }
        let now = coarse::now();
        if self.watch.changed(&self.dir, now) {
            self.names.clear();
            self.misses.clear();
        }
        // The kernel reuses namespace inodes: a cached name is only trusted while its
        // bind mount still has that inode, as the watch tells or a recent stat() showed.
        let stale = match self.names.get_mut(&inode) {
            Some((_, file, checked)) => {
                if now.saturating_sub(*checked) < RECHECK_EVERY {
                    false
                } else if inode_of(&self.dir.join(&*file)).ok() == Some(inode) {
                    *checked = now;
                    false
                } else {
                    true
                }
            }
            None => {
                let recently_missed = self
                    .misses
                    .get(&inode)
                    .is_some_and(|t| now.saturating_sub(*t) < self.rescan_every);
                !recently_missed
            }
        };
        if stale {
            self.scan();
            if !self.names.contains_key(&inode) {
                if self.misses.len() > 4096 {
                    self.misses.clear();
                }
                self.misses.insert(inode, coarse::now());
            }
        }
        self.names.get(&inode).map(|(name, _, _)| name.clone())
    }

    /// Forces a rescan on the next lookup (tests, and after a namespace filter miss).
    pub fn invalidate(&mut self) {
        self.last_scan = None;
        self.misses.clear();
    }
}

/// An inotify watch on the names directory, read at most every [`WATCH_POLL_EVERY`]. Without
/// one (no directory yet, or no inotify) names are re-checked every [`RECHECK_EVERY`] as
/// before, and the watch is tried again at each poll.
#[derive(Default)]
struct DirWatch {
    fd: Option<OwnedFd>,
    last_poll: Option<Stamp>,
}

impl DirWatch {
    /// Whether names may have changed since the last call that returned true.
    fn changed(&mut self, dir: &Path, now: Stamp) -> bool {
        if self
            .last_poll
            .is_some_and(|t| now.saturating_sub(t) < WATCH_POLL_EVERY)
        {
            return false;
        }
        self.last_poll = Some(now);
        let Some(fd) = &self.fd else {
            self.fd = watch(dir);
            // Whatever was cached predates the watch.
            return self.fd.is_some();
        };
        let mut buf = [0u8; 4096];
        let mut changed = false;
        loop {
            // SAFETY: reads into a buffer of the given length from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                changed = true;
                // The directory itself went away or was replaced: watch it again.
                if events_mask(&buf[..n as usize]) & libc::IN_IGNORED != 0 {
                    self.fd = None;
                    break;
                }
                continue;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        changed
    }
}

/// The union of the masks of the inotify events in `buf`.
fn events_mask(buf: &[u8]) -> u32 {
    let head = std::mem::size_of::<libc::inotify_event>();
    let mut mask = 0;
    let mut at = 0;
    while at + head <= buf.len() {
        // SAFETY: the kernel wrote whole events; read_unaligned copes with the byte buffer.
        let ev: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        mask |= ev.mask;
        at += head + ev.len as usize;
    }
    mask
}

fn watch(dir: &Path) -> Option<OwnedFd> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain syscalls; the descriptor is owned from here on.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_ATTRIB
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR;
        (libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) >= 0).then_some(fd)
    }
}

impl Default for NetnsNames {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves a `--netns` argument: an inode number, a path to a namespace file, or an
/// `ip netns` name.
pub fn resolve_spec(spec: &str, run_dir: &Path) -> Result<u32> {
    if spec.is_empty() {
        bail!("--netns needs a name, a path or an inode number");
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return spec
            .parse::<u32>()
            .map_err(|_| anyhow::anyhow!("--netns {spec}: inode number out of range"));
    }
    let path = if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        run_dir.join(spec)
    };
    match inode_of(&path) {
        Ok(ino) => Ok(ino),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !spec.contains('/') => bail!(
            "--netns {spec}: no network namespace of that name (`ip netns list` shows the names; \
             a path such as /proc/PID/ns/net or an inode number works too)"
        ),
        Err(e) => bail!("--netns {spec}: cannot open {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inode_numbers_paths_and_names() {
        let dir = std::env::temp_dir().join(format!("arp-trace-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("blue"), b"").unwrap();
        let blue = inode_of(&dir.join("blue")).unwrap();

        assert_eq!(resolve_spec("4026531840", &dir).unwrap(), 4026531840);
        assert_eq!(resolve_spec("blue", &dir).unwrap(), blue);
        assert_eq!(
            resolve_spec(dir.join("blue").to_str().unwrap(), &dir).unwrap(),
            blue
        );
        let e = resolve_spec("green", &dir).unwrap_err().to_string();
        assert!(e.contains("no network namespace of that name"), "{e}");
        assert!(resolve_spec("99999999999", &dir).is_err());
        assert!(resolve_spec("", &dir).is_err());
        assert!(resolve_spec("/nonexistent/ns", &dir)
            .unwrap_err()
            .to_string()
            .contains("cannot open"));

        let mut names = NetnsNames::with_dir(&dir);
        assert_eq!(names.name(blue).as_deref(), Some("blue"));
        assert_eq!(names.name(1), None);
        // A name added later is found once the rescan interval has passed.
        std::fs::write(dir.join("red"), b"").unwrap();
        let red = inode_of(&dir.join("red")).unwrap();
        names.invalidate();
        assert_eq!(names.name(red).as_deref(), Some("red"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn knows_its_own_namespace() {
        let names = NetnsNames::new();
        assert_eq!(names.own(), inode_of(Path::new("/proc/self/ns/net")).ok());
    }
}
