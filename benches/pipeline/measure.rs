//! One timed step: a child process's wall time and peak RSS, each run after an idle wait, and
//! the medians of several runs. fxpipe and its peers are measured the same way.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of one step.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub seconds: f64,
    pub peak_rss_mb: f64,
}

/// Every run of one step, in the order they ran.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<Measured>);

impl Samples {
    pub fn push(&mut self, run: Measured) {
        self.0.push(run);
    }

    pub fn seconds(&self) -> Vec<f64> {
        self.0.iter().map(|m| m.seconds).collect()
    }

    pub fn peak_rss_mb(&self) -> Vec<f64> {
        self.0.iter().map(|m| m.peak_rss_mb).collect()
    }

    pub fn median_seconds(&self) -> f64 {
        median(self.seconds())
    }

    pub fn median_peak_rss_mb(&self) -> f64 {
        median(self.peak_rss_mb())
    }

    /// Fastest and slowest run: how noisy the shared machine was.
    pub fn range_seconds(&self) -> (f64, f64) {
        let seconds = self.seconds();
        let min = seconds.iter().copied().fold(f64::INFINITY, f64::min);
        let max = seconds.iter().copied().fold(0.0, f64::max);
        (min, max)
    }
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// How runs are spaced on a machine shared with others.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Runs per step; the tables show their median.
    pub runs: usize,
    /// Pause before every timed run, so one run's page-cache writeback and the neighbours'
    /// bursts are less likely to land in the next.
    pub idle: Duration,
}

/// Runs the command to completion after `sync` and the idle pause and returns its wall time, peak RSS
/// and standard output. Panics, naming the command, if it fails.
// The child is reaped by wait4 (which also gives its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
pub fn measure(pacing: &Pacing, command: &mut Command) -> (Measured, String) {
    // Earlier steps' dirty pages are written back now, not during this step.
    let _ = Command::new("sync").status();
    std::thread::sleep(pacing.idle);
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    // Read stdout while the child runs, so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4");
    let output = reader.join().unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed; its output:\n{output}"
    );
    let measured = Measured {
        seconds,
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    };
    (measured, output)
}
