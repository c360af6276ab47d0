//! Progress for long runs: a line on stderr at most every second (so a pipe or a log file gets
//! a readable record, not a redrawn bar), and the summary on stdout.

use std::time::{Duration, Instant};

/// Prints at most one progress line per [`Progress::EVERY`].
pub struct Progress {
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// How often a line is printed at most.
    pub const EVERY: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        Progress {
            started: Instant::now(),
            last: None,
        }
    }

    /// Prints `line()` if a second has passed since the last line.
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_none_or(|last| now - last >= Self::EVERY) {
            self.last = Some(now);
            eprintln!("[{:>5.1}s] {}", self.elapsed().as_secs_f64(), line());
        }
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
