//! Network namespace names: the kernel reports a namespace by inode; users know the names
//! `ip netns` gives them (bind mounts under /run/netns). Also resolves `--netns` arguments.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::find::{inode_of, NETNS_RUN_DIR};

/// Maps namespace inodes to `ip netns` names, rescanning when an unknown inode shows up
/// (namespaces are created while tracing), at most once per `rescan_every`.
pub struct NetnsNames {
    dir: PathBuf,
    /// Inode -> (name as shown, the file name itself).
    names: HashMap<u32, (String, OsString)>,
    own: Option<u32>,
    last_scan: Option<Instant>,
    /// Inodes a scan did not find, and when: each unknown inode triggers its own rescan,
    /// at most once per `rescan_every`.
    misses: HashMap<u32, Instant>,
    rescan_every: Duration,
    /// Replaying a trace: names come from the trace, never from the machine reading it.
    offline: bool,
}

impl NetnsNames {
    pub fn new() -> Self {
        Self::with_dir(NETNS_RUN_DIR)
    }

    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        NetnsNames {
            dir: dir.into(),
            names: HashMap::new(),
            own: super::find::own_inode(),
            last_scan: None,
            misses: HashMap::new(),
            rescan_every: Duration::from_millis(200),
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
        self.last_scan = Some(Instant::now());
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names = HashMap::new();
        for entry in rd.flatten() {
            let file = entry.file_name();
            if let Ok(ino) = inode_of(&entry.path()) {
                // A name whose bind mount is gone stats as a plain file on the tmpfs; nsfs
                // inodes are what the kernel reports, so keep the first mount per inode.
                names
                    .entry(ino)
                    .or_insert_with(|| (arp_trace_model::kernel_name(file.as_bytes()), file));
            }
        }
        self.names = names;
    }

    /// The `ip netns` name of a namespace, if it has one.
    pub fn name(&mut self, inode: u32) -> Option<&str> {
        if self.offline {
            return None;
        }
        // The kernel reuses namespace inodes: a cached name is only trusted while its
        // bind mount still has that inode.
        let stale = match self.names.get(&inode) {
            Some((_, file)) => inode_of(&self.dir.join(file)).ok() != Some(inode),
            None => {
                let recently_missed = self
                    .misses
                    .get(&inode)
                    .is_some_and(|t| t.elapsed() < self.rescan_every);
                !recently_missed
            }
        };
        if stale {
            self.scan();
            if !self.names.contains_key(&inode) {
                if self.misses.len() > 4096 {
                    self.misses.clear();
                }
                self.misses.insert(inode, Instant::now());
            }
        }
        self.names.get(&inode).map(|(name, _)| name.as_str())
    }

    /// Forces a rescan on the next lookup (tests, and after a namespace filter miss).
    pub fn invalidate(&mut self) {
        self.last_scan = None;
        self.misses.clear();
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
        assert_eq!(names.name(blue), Some("blue"));
        assert_eq!(names.name(1), None);
        // A name added later is found once the rescan interval has passed.
        std::fs::write(dir.join("red"), b"").unwrap();
        let red = inode_of(&dir.join("red")).unwrap();
        names.invalidate();
        assert_eq!(names.name(red), Some("red"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn knows_its_own_namespace() {
        let names = NetnsNames::new();
        assert_eq!(names.own(), inode_of(Path::new("/proc/self/ns/net")).ok());
    }
}
