//! Drop-behind for outputs that are regular files: every [`CHUNK`] bytes, writeback of what
//! was written since the last round is started, and the page cache of the stretch whose
//! writeback the round before started is let go. A storm writes ~30 MB/s of JSON; kept
//! cached, a long trace pushes the host's useful cache out, and every new page-cache page
//! is a fresh allocation. On VMs whose balloon reports free pages to the host (Firecracker,
//! QEMU with `free-page-reporting`) that first touch costs a host fault: 2.9 ms of system
//! time per MB written, against 0.7 ms when the pages just let go are reused
//! (BENCHMARKS.md, issue 14). Nothing waits: `sync_file_range(SYNC_FILE_RANGE_WRITE)` only
//! queues the writeback, and `POSIX_FADV_DONTNEED` skips pages still dirty or under
//! writeback, which then simply stay cached.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};

/// Bytes written between two rounds: about every 150 ms in a 20,000/s storm's JSON.
pub const CHUNK: u64 = 4 << 20;

/// A writer whose bytes, once on their way to disk, leave the page cache.
pub struct DropBehind<W> {
    inner: W,
    /// Only for a regular file, and off once the file refuses a call.
    on: bool,
    /// Written since the last round.
    since: u64,
    /// Writeback was started up to here...
    started: u64,
    /// ...and the page cache let go up to here: where this writer began, at first (what the
    /// file held before is not this writer's to drop).
    dropped: u64,
}

impl<W: Write + AsFd> DropBehind<W> {
    pub fn new(inner: W) -> DropBehind<W> {
        let fd = inner.as_fd().as_raw_fd();
        let pos = if is_regular_file(fd) {
            position(fd)
        } else {
            None
        };
        DropBehind {
            inner,
            on: pos.is_some(),
            since: 0,
            started: pos.unwrap_or(0),
            dropped: pos.unwrap_or(0),
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Whether the output is a regular file this writer keeps out of the page cache.
    pub fn is_on(&self) -> bool {
        self.on
    }

    fn round(&mut self) {
        let fd = self.inner.as_fd().as_raw_fd();
        let Some(pos) = position(fd) else {
            self.on = false;
            return;
        };
        if pos < self.started {
            // Truncated or rewound by someone else: begin again from here.
            (self.started, self.dropped) = (pos, pos);
            return;
        }
        // SAFETY: plain syscalls on a descriptor `inner` keeps open.
        unsafe {
            if libc::sync_file_range(
                fd,
                self.started as i64,
                (pos - self.started) as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            ) != 0
            {
                self.on = false;
                return;
            }
            if self.started > self.dropped {
                libc::posix_fadvise(
                    fd,
                    self.dropped as i64,
                    (self.started - self.dropped) as i64,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
        (self.dropped, self.started) = (self.started, pos);
    }
}

impl<W: Write + AsFd> Write for DropBehind<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.on {
            self.since += n as u64;
            if self.since >= CHUNK {
                self.since = 0;
                self.round();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn is_regular_file(fd: i32) -> bool {
    // SAFETY: fstat fills the struct it is given.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// The descriptor's offset: after the last write, for an `O_APPEND` file too.
fn position(fd: i32) -> Option<u64> {
    // SAFETY: lseek on an open descriptor.
    let p = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    u64::try_from(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::path::PathBuf;

    /// A directory on a disk-backed filesystem: tmpfs pages cannot leave the page cache.
    fn disk_dir() -> PathBuf {
        let tmp = std::env::temp_dir();
        // SAFETY: statfs fills the struct it is given; the path is NUL-terminated.
        let tmpfs = unsafe {
            let mut s: libc::statfs = std::mem::zeroed();
            let p = std::ffi::CString::new(tmp.as_os_str().as_encoded_bytes()).unwrap();
            libc::statfs(p.as_ptr(), &mut s) == 0 && s.f_type == libc::TMPFS_MAGIC
        };
        if tmpfs {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        } else {
            tmp
        }
    }

    /// Pages of `f` in `[from, to)` that are in the page cache (mincore over a mapping).
    fn resident(f: &File, from: u64, to: u64) -> usize {
        let len = (to - from) as usize;
        let page = 4096usize;
        // SAFETY: a shared read-only mapping of a range the file holds, unmapped below.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                from as i64,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let mut v = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(p, len, v.as_mut_ptr()), 0);
            libc::munmap(p, len);
            v.iter().filter(|b| *b & 1 != 0).count()
        }
    }

    #[test]
    fn written_stretches_leave_the_page_cache_a_round_later() {
        let path = disk_dir().join(format!(".drop-behind-test-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        let mut w = DropBehind::new(f);
        assert!(w.is_on());
        let block = vec![b'x'; 64 * 1024];
        let pages = (CHUNK / 4096) as usize;
        for _ in 0..CHUNK / block.len() as u64 {
            w.write_all(&block).unwrap();
        }
        // The first round started the first chunk's writeback; once it is done the next
        // round lets its pages go, and the second chunk's stay until the round after.
        w.get_ref().sync_data().unwrap();
        for _ in 0..CHUNK / block.len() as u64 {
            w.write_all(&block).unwrap();
        }
        // A descriptor of its own to map: the writer's is write-only.
        let r = File::open(&path).unwrap();
        let (first, second) = (resident(&r, 0, CHUNK), resident(&r, CHUNK, 2 * CHUNK));
        std::fs::remove_file(&path).unwrap();
        assert!(
            first < pages / 10,
            "{first} of {pages} pages of the first chunk still cached"
        );
        assert!(
            second > pages / 2,
            "{second} of {pages} pages of the second chunk cached"
        );
    }

    #[test]
    fn a_pipe_passes_through_untouched() {
        let mut fds = [0; 2];
        // SAFETY: pipe fills two descriptors, each owned by one File below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (r, wr) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        let mut w = DropBehind::new(wr);
        assert!(!w.is_on());
        w.write_all(b"line\n").unwrap();
        drop(w);
        assert_eq!(io::read_to_string(r).unwrap(), "line\n");
    }

    #[test]
    fn a_file_rewound_by_someone_else_begins_again() {
        let path = disk_dir().join(format!(".drop-behind-rewind-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        let mut w = DropBehind::new(f);
        let block = vec![b'y'; 1 << 20];
        for _ in 0..2 * CHUNK / block.len() as u64 {
            w.write_all(&block).unwrap();
        }
        assert_eq!((w.dropped, w.started), (CHUNK, 2 * CHUNK));
        w.get_ref().set_len(0).unwrap();
        use std::io::Seek;
        let mut f2 = w.get_ref().try_clone().unwrap();
        f2.rewind().unwrap();
        for _ in 0..CHUNK / block.len() as u64 {
            w.write_all(&block).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!((w.dropped, w.started), (CHUNK, CHUNK));
        assert!(w.is_on());
    }
}
