//! When to look at an object again: backoff after failures and jitter on every delay, so
//! that many WorkerGroups do not poll in step.

use std::time::Duration;

use rand::Rng;

/// `d` spread by +-`fraction`.
pub fn jitter(d: Duration, fraction: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - fraction)..=(1.0 + fraction));
    d.mul_f64(f)
}

/// Delay before retry number `failures` (1-based) of a transient error: `base` doubling
/// up to `max`.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)));
    exp.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(5);
        let m = Duration::from_secs(300);
        assert_eq!(backoff(1, b, m), Duration::from_secs(5));
        assert_eq!(backoff(2, b, m), Duration::from_secs(10));
        assert_eq!(backoff(4, b, m), Duration::from_secs(40));
        assert_eq!(backoff(7, b, m), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX, b, m), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_in_band() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(100), 0.1);
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110));
        }
    }
}
