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

/// The cumulative buckets `(le, count)` of histogram `name`, summed over the series whose
/// labels include every `labels` pair, by bound (`+Inf` last).
pub fn buckets(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    let head = format!("{name}_bucket{{");
    for line in text.lines().filter(|l| l.starts_with(&head)) {
        if !labels
            .iter()
            .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .and_then(|v| match v {
                "+Inf" => Some(f64::INFINITY),
                v => v.parse().ok(),
            });
        let count = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(le), Some(count)) = (le, count) {
            match by_le.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => by_le.push((le, count)),
            }
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// The smallest bucket bound under which a fraction `q` of the observations made between
/// two scrapes (`before`, `after`: [`buckets`] of each) fell; None without observations.
pub fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let count =
        |b: &[(f64, f64)], le: f64| b.iter().find(|(x, _)| *x == le).map_or(0.0, |(_, c)| *c);
    let total = count(after, f64::INFINITY) - count(before, f64::INFINITY);
    if total <= 0.0 {
        return None;
    }
    after
        .iter()
        .find(|(le, c)| c - count(before, *le) >= q * total)
        .map(|(le, _)| *le)
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

    #[test]
    fn a_quantile_bound_is_taken_from_the_observations_between_two_scrapes() {
        let scrape = |a: u32, b: u32, inf: u32| {
            format!(
                "q_bucket{{queue=\"reconcile\",le=\"0.25\"}} {a}\n\
                 q_bucket{{queue=\"reconcile\",le=\"1.0\"}} {b}\n\
                 q_bucket{{queue=\"reconcile\",le=\"+Inf\"}} {inf}\n\
                 q_bucket{{queue=\"vast\",le=\"+Inf\"}} 1000\n"
            )
        };
        let l = [("queue", "reconcile")];
        let before = buckets(&scrape(10, 10, 10), "q", &l);
        assert_eq!(before, [(0.25, 10.0), (1.0, 10.0), (f64::INFINITY, 10.0)]);
        // 100 more: 90 under 0.25 s, 9 more under 1 s, 1 above.
        let after = buckets(&scrape(100, 109, 110), "q", &l);
        assert_eq!(quantile_bound(&before, &after, 0.5), Some(0.25));
        assert_eq!(quantile_bound(&before, &after, 0.99), Some(1.0));
        assert_eq!(quantile_bound(&before, &after, 1.0), Some(f64::INFINITY));
        assert_eq!(quantile_bound(&before, &before, 0.99), None);
    }
}
