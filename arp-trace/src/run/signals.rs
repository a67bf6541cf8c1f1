//! Stopping on Ctrl-C and SIGTERM, unconditionally. The signals are blocked in every thread
//! and taken by one thread of their own with sigtimedwait(): it tells the event loop through
//! an eventfd, and if the run has not ended some seconds after the signal (an output that
//! blocks, a namespace that does not answer), or a second signal comes, it says so and ends
//! the process itself. No handler runs on an arbitrary thread, so no branch of the event loop
//! can miss the signal, and nothing can make a stop wait forever.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a clean stop may take before the process ends without it.
const GRACE: Duration = Duration::from_secs(10);

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread, so every thread it starts afterwards
/// inherits the block. Call it before any other thread exists.
pub fn block() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: changes this thread's signal mask with a valid set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// The readable end of the stop notice: an eventfd the signal thread writes the signal's
/// number to.
pub struct Stop {
    fd: OwnedFd,
}

impl std::os::fd::AsRawFd for Stop {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Stop {
    /// The signal that asked to stop, once it came (resets the notice).
    pub fn take(&self) -> Option<i32> {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a u64 from a non-blocking eventfd we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        (n == 8).then_some(v as i32)
    }
}

/// Starts the signal thread; [`block`] must have run first.
pub fn watch() -> io::Result<Stop> {
    // SAFETY: eventfd(2) returns a new descriptor or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: efd is a fresh descriptor; the thread gets its own duplicate.
    let fd = unsafe { OwnedFd::from_raw_fd(efd) };
    let notify = fd.try_clone()?;
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || signal_thread(notify))?;
    Ok(Stop { fd })
}

fn wait(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    loop {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: waits for a signal of `set`, which this thread has blocked.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), tsp) };
        if sig > 0 {
            return Some(sig);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None; // timed out
        }
    }
}

fn signal_thread(notify: OwnedFd) {
    let set = stop_set();
    let Some(first) = wait(&set, None) else {
        return;
    };
    let v = first as u64;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own.
    unsafe { libc::write(notify.as_raw_fd(), (&v as *const u64).cast(), 8) };
    let deadline = Instant::now() + GRACE;
    let left = deadline.saturating_duration_since(Instant::now());
    let why = match wait(&set, Some(left)) {
        Some(_) => "a second signal".to_string(),
        None => format!("no clean stop within {} s", GRACE.as_secs()),
    };
    eprintln!("arp-trace: {why}: exiting now; files may lack their trailer");
    // 128 + signal, as a shell reports a process its signal ended.
    std::process::exit(128 + first);
}
