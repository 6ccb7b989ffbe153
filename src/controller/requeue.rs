//! The random draw that the schedule's rules take as an input (the rules themselves are
//! pure, in [`crate::sync::schedule`]).

use std::time::Duration;

pub use crate::sync::schedule::backoff;

/// A uniform draw in `[0, 1)`: where in its band a delay falls.
pub fn spread() -> f64 {
    rand::random::<f64>()
}

/// `d` spread by +-`fraction`, at random.
pub fn jitter(d: Duration, fraction: f64) -> Duration {
    crate::sync::schedule::jitter(d, fraction, spread())
}
