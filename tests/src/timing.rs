//! Timeouts, and the one scale that stretches all of them for slow (emulated) machines.

use std::time::Duration;

/// How long to wait for an event that normally arrives in well under 100 ms. The machine is
/// shared and tests run in parallel, so be generous.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait for the tracer to attach its hooks.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for the tracer to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Multiplier for every timeout in this harness, from `ARP_TRACE_TIMEOUT_SCALE` (default 1).
/// The VM suite runs these tests under software emulation, many times slower than here.
pub fn timeout_scale() -> f64 {
    match std::env::var("ARP_TRACE_TIMEOUT_SCALE") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 1.0 => x,
            _ => panic!("ARP_TRACE_TIMEOUT_SCALE={v:?}: expected a number >= 1, e.g. 10"),
        },
        _ => 1.0,
    }
}

/// `d` times [`timeout_scale`]. Every wait in the harness goes through this, so callers pass
/// the unscaled figure.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(timeout_scale())
}
