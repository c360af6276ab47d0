//! Progress for long runs: a line on stderr at most every second (so a pipe or a log file gets
//! a readable record, not a redrawn bar), and the summary on stdout.

use std::time::{Duration, Instant};

/// Prints at most one progress line per [`Progress::EVERY`].
pub struct Progress {
    started: Instant,
    last: Instant,
}

impl Progress {
    /// How often a line is printed at most.
    pub const EVERY: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        let started = Instant::now();
        // The first line after a second: a short run prints none.
        Progress {
            started,
            last: started,
        }
    }

    /// Prints `line()` if a second has passed since the last line.
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if now - self.last >= Self::EVERY {
            self.last = now;
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
