//! Go-style duration strings (`30s`, `2m`, `1h30m`, `1.5h`), as the apiserver's CEL
//! `duration()` reads them, so that what the CRD accepts is what the operator parses.

use std::time::Duration;

/// The OpenAPI pattern for `spec.pollInterval`: one or more `<number><unit>` groups.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Parses a duration such as `30s`, `2m`, `1h30m` or `1.5h` (units `ms`, `s`, `m`, `h`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: expected a value such as 30s, 2m or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "30", "s", "30x", "-5s", "1d", "1h 30m", "..5s", "5.s5"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
