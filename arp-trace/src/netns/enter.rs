//! Entering a network namespace: setns() moves only the calling thread, so work inside another
//! namespace runs on a thread of its own and the tracer's threads stay where they are.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Moves the calling thread into the namespace `file` opens, and checks it arrived in the one
/// with inode `ino` (the path could have been reused in between).
pub fn enter(file: &File, ino: u32) -> Result<(), String> {
    // SAFETY: setns(2) on a valid namespace descriptor; it moves only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "setns into namespace {ino}: {}",
            std::io::Error::last_os_error()
        ));
    }
    if super::find::inode_of(Path::new("/proc/thread-self/ns/net")).ok() != Some(ino) {
        return Err(format!("setns did not enter namespace {ino}"));
    }
    Ok(())
}

/// Runs `f` on a short-lived thread inside the namespace at `path` (inode `ino`).
pub fn run_in<T: Send + 'static>(
    path: &Path,
    ino: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name(format!("netns-{ino}"))
        .stack_size(256 * 1024)
        .spawn(move || -> Result<T, String> {
            let file = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
            enter(&file, ino)?;
            Ok(f())
        })
        .map_err(|e| format!("cannot start a thread for namespace {ino}: {e}"))?
        .join()
        .unwrap_or_else(|_| Err(format!("the thread reading namespace {ino} failed")))
}
