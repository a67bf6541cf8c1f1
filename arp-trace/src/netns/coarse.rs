//! The coarse monotonic clock (the kernel's tick, 1-4 ms) for the caches every request goes
//! through (namespace names, namespace facts): they only need milliseconds, and reading the
//! precise clock several times per request was a visible share of a storm's CPU.

use std::time::Duration;

/// A time on the coarse monotonic clock.
pub type Stamp = Duration;

pub fn now() -> Stamp {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; CLOCK_MONOTONIC_COARSE exists since Linux 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn moves_forward_in_ticks() {
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::now();
        assert!(
            b > a && b - a >= std::time::Duration::from_millis(10),
            "{a:?} {b:?}"
        );
    }
}
