//! Figure 3b: the tracer as a fleet runs it (`-q --metrics`), scraped every second during the
//! storm: its CPU and memory, what a scrape costs, and whether the metrics counted every
//! request tcpdump saw.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::stats::{median, opt};
use super::storm::{GenStats, Storm, DRAIN};
use super::system::{check_interrupt, pause, status_kib, TmpFiles, Tracer, Usage};

#[derive(Debug, Clone)]
pub(super) struct ScrapedRun {
    pub(super) gen: GenStats,
    pub(super) tcpdump: u64,
    /// Requests the last scrape counted (every `arp_trace_requests_total` series).
    pub(super) counted: u64,
    pub(super) usage: Usage,
    /// Seconds per scrape, and the exposition's size in bytes.
    pub(super) scrape_secs: Vec<f64>,
    pub(super) bytes: usize,
}

impl ScrapedRun {
    pub(super) fn text(&self) -> String {
        let ms: Vec<f64> = self.scrape_secs.iter().map(|s| s * 1e3).collect();
        format!(
            "{} scrapes, median {} ms, max {} ms, {} kB each; {} of {} requests counted",
            ms.len(),
            opt(median(&ms), 1),
            opt(ms.iter().cloned().reduce(f64::max), 1),
            self.bytes / 1000,
            self.counted,
            self.tcpdump
        )
    }
}

/// `GET /metrics` over HTTP/1.0; the body.
fn get(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    match r.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => bail!(
            "GET http://{addr}/metrics: {}",
            r.lines().next().unwrap_or("")
        ),
    }
}

/// The sum of every `arp_trace_requests_total` sample and of every neighbour solicitation
/// series of `arp_trace_ndisc_total`.
pub(super) fn requests_counted(text: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with("arp_trace_requests_total{")
                || (l.starts_with("arp_trace_ndisc_total{") && l.contains("op=\"solicit\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One storm with the tracer in daemon mode, scraped every second from another thread.
pub(super) fn storm_scraped(
    bin: &Path,
    storm: &Storm,
    rate: u64,
    dur: Duration,
    files: &mut TmpFiles,
) -> Result<ScrapedRun> {
    let tcpdumps = storm.start_tcpdumps(files)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let listen = addr.to_string();
    let args = [
        vec!["-q".to_string()],
        storm.filter_args(),
        vec!["--metrics".to_string(), listen],
    ]
    .concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tracer = Tracer::start(bin, &args, files, "scraped")?;
    let on = Arc::new(AtomicBool::new(true));
    let scraper = {
        let on = on.clone();
        thread::spawn(move || {
            let mut times = Vec::new();
            let mut last = String::new();
            while on.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                if let Ok(body) = get(addr) {
                    times.push(t0.elapsed().as_secs_f64());
                    last = body;
                }
                thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
            }
            (times, last)
        })
    };
    pause(Duration::from_millis(300))?;
    let gen = storm.generate(rate, dur);
    on.store(false, Ordering::Relaxed);
    let (scrape_secs, _) = scraper.join().unwrap_or_default();
    let gen = gen?;
    check_interrupt()?;
    pause(DRAIN)?;
    // The count once the last requests are in, from the same endpoint.
    let last = get(addr)?;
    let hwm_kib = status_kib(tracer.proc.pid(), "VmHWM");
    let (mut usage, _, _) = tracer.stop()?;
    usage.max_rss_kib = hwm_kib.unwrap_or(0);
    let seen = tcpdumps.stop()?;
    let run = ScrapedRun {
        gen,
        tcpdump: seen.total(),
        counted: requests_counted(&last),
        usage,
        scrape_secs,
        bytes: last.len(),
    };
    eprintln!(
        "xtask bench: scraped storm {rate}/s for {:.1} s: {}; {:.2} CPU s, {} KiB peak RSS",
        run.gen.secs,
        run.text(),
        run.usage.cpu_secs,
        run.usage.max_rss_kib
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_sums_every_request_series() {
        let text = "# TYPE arp_trace_requests_total counter\n\
                    arp_trace_requests_total{direction=\"sent\",netns=\"a\"} 3\n\
                    arp_trace_requests_total{direction=\"sent\",netns=\"b\"} 4\n\
                    arp_trace_replies_total{direction=\"sent\"} 9\n\
                    arp_trace_ndisc_total{direction=\"sent\",netns=\"a\",op=\"solicit\"} 5\n\
                    arp_trace_ndisc_total{direction=\"sent\",netns=\"a\",op=\"advert\"} 6\n";
        assert_eq!(requests_counted(text), 12);
    }
}
