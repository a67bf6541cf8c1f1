//! Finding network namespaces: the kernel reports them by inode; a namespace is opened through
//! a path with that inode, an `ip netns` bind mount or /proc/PID/ns/net of a process in it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Inode of a namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`), following symlinks.
pub fn inode_of(path: &Path) -> std::io::Result<u32> {
    std::fs::metadata(path).map(|m| m.ino() as u32)
}

/// The tracer's own namespace.
pub fn own_inode() -> Option<u32> {
    inode_of(Path::new("/proc/self/ns/net")).ok()
}

/// A path that opens the namespace with this inode: an `ip netns` bind mount, else
/// /proc/PID/ns/net of a process inside it. `None` once nothing holds it.
pub fn find_path(inode: u32) -> Option<PathBuf> {
    find_path_in(Path::new(NETNS_RUN_DIR), Path::new("/proc"), inode)
}

fn pid_dirs(proc_dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(proc_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path())
}

fn find_path_in(run_dir: &Path, proc_dir: &Path, inode: u32) -> Option<PathBuf> {
    let named = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let procs = pid_dirs(proc_dir).map(|p| p.join("ns/net"));
    named.chain(procs).find(|p| inode_of(p).ok() == Some(inode))
}

/// One path per namespace held only by processes (not a /run/netns entry), by inode.
pub fn process_namespaces(
    skip: &std::collections::BTreeMap<u32, String>,
) -> std::collections::BTreeMap<u32, PathBuf> {
    let mut out = std::collections::BTreeMap::new();
    for p in pid_dirs(Path::new("/proc")).map(|p| p.join("ns/net")) {
        if let Ok(ino) = inode_of(&p) {
            if !skip.contains_key(&ino) {
                out.entry(ino).or_insert(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_path_for_a_namespace_inode() {
        let own = own_inode().unwrap();
        let p = find_path_in(Path::new("/nonexistent"), Path::new("/proc"), own).unwrap();
        assert_eq!(inode_of(&p).unwrap(), own);
        assert!(p.starts_with("/proc"), "{}", p.display());
        assert_eq!(
            find_path_in(Path::new("/nonexistent"), Path::new("/proc"), 1),
            None
        );
    }
}
