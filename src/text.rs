//! Text helpers shared by every layer.

/// Cuts `s` to at most `max` bytes on a char boundary, ending with `…` when cut (the
/// ellipsis counts towards `max`).
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries_within_max() {
        assert_eq!(cut("short".into(), 10), "short");
        let c = cut("é".repeat(600), 512);
        assert!(c.len() <= 512, "{}", c.len());
        assert!(c.ends_with('…'));
        assert_eq!(cut("abcdef".into(), 4), "a…");
    }
}
