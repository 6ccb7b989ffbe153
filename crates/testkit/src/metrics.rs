//! Samples of a Prometheus text (the operator's `/metrics`).

/// The value of the sample `series` (its full name with labels, as printed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The sum of the samples whose series starts with `prefix` (a name, or a name and the
/// first labels).
pub fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
vast_operator_reconciles_total{result=\"synced\"} 7
vast_operator_reconciles_total{result=\"error\"} 2
vast_operator_reconciles_total_extra 100
vast_operator_leader 1
";

    #[test]
    fn a_sample_is_its_exact_series() {
        assert_eq!(sample(TEXT, "vast_operator_leader"), Some(1.0));
        assert_eq!(
            sample(TEXT, "vast_operator_reconciles_total{result=\"error\"}"),
            Some(2.0)
        );
        assert_eq!(sample(TEXT, "vast_operator_reconciles_total"), None);
        assert_eq!(sum(TEXT, "vast_operator_reconciles_total{"), 9.0);
    }
}
