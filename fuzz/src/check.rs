//! What the fuzz target does with an input, in one copy: the target (`src/bin/parse.rs`)
//! runs it on what AFL++ makes, and `tests/fuzz_seeds.rs` (which includes this file by
//! path) on the seeds in `corpus/`, so that the seeds are decoded the way the target
//! decodes them.
//!
//! An input is four bytes of header, then the body Vast answered:
//! - bytes 0 and 1, little-endian `n`: the HTTP status, `100 + n % 500`;
//! - byte 2: where the API key starts in the body; byte 3: its length in bytes. The key
//!   is that slice of the body (cut to its longest valid UTF-8 start), so that what the
//!   body echoes of it, the redaction has to remove.
//!
//! An input shorter than the header is a body alone, with status 200 and no key.
//!
//! The checks: the real [`classify_response`] never panics; the workers it returns are
//! sorted by id without duplicates, and only for a 2xx status; an error, redacted with
//! the key by the real [`VastError::redact`], keeps its kind and shows, in its `Display`
//! and its `Debug` text, nothing that redaction promises to remove (see
//! [`find_key`] for that promise, exactly), not even in part across the final cut (see
//! [`check_cut`]).
//!
//! The same input is also a console listing ([`check_console`]): the real
//! [`parse_listing`] and the allow-list of its rows never panic, and its errors, which
//! quote no body, are redacted as the worker route's are.

use std::collections::HashSet;

use vast_operator::vast::console::{endpoint_row, group_row, parse_listing};
use vast_operator::vast::error::MIN_KEY_PIECE;
use vast_operator::vast::{VastError, classify_response};

/// What redaction puts in the place of what it removes.
pub const MARKER: &str = "<redacted>";

/// An input, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The API key: a slice of the body, possibly empty.
    pub key: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// Splits an input into status, key and body (see the module's documentation).
pub fn decode(data: &[u8]) -> Input<'_> {
    let [lo, hi, at, len, body @ ..] = data else {
        return Input {
            status: 200,
            key: "",
            body: data,
        };
    };
    let status = 100 + u16::from_le_bytes([*lo, *hi]) % 500;
    let from = usize::from(*at).min(body.len());
    let to = (from + usize::from(*len)).min(body.len());
    let key = match std::str::from_utf8(&body[from..to]) {
        Ok(key) => key,
        Err(e) => std::str::from_utf8(&body[from..from + e.valid_up_to()]).unwrap_or_default(),
    };
    Input { status, key, body }
}

/// Which branch of the parser an input reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed: this many workers.
    Workers(usize),
    /// [`VastError::RateLimited`].
    RateLimited,
    /// [`VastError::Authentication`].
    Authentication,
    /// [`VastError::NotFound`].
    NotFound,
    /// [`VastError::Http`], with its status.
    Http(u16),
    /// [`VastError::Remote`].
    Remote,
    /// [`VastError::Malformed`].
    Malformed,
}

/// What [`check`] found about an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The decoded HTTP status.
    pub status: u16,
    /// The branch reached.
    pub outcome: Outcome,
    /// An error whose text, before redaction, shows what redaction must remove (see
    /// [`find_key`]): the check of the redacted text had something to find.
    pub echoed: bool,
}

/// Runs the parser and the redaction on an input; panics when a check fails.
pub fn check(data: &[u8]) -> Report {
    let input = decode(data);
    check_console(&input);
    match classify_response(input.status, input.body) {
        Ok(workers) => {
            assert!(
                (200..300).contains(&input.status),
                "HTTP {} gave workers",
                input.status
            );
            assert!(
                workers.windows(2).all(|w| w[0].id < w[1].id),
                "workers not sorted by id without duplicates"
            );
            Report {
                status: input.status,
                outcome: Outcome::Workers(workers.len()),
                echoed: false,
            }
        }
        Err(e) => {
            let outcome = outcome_of(&e);
            let before = message(&e).to_string();
            let none = vec![false; before.len()];
            let echoed = find_key(before.as_bytes(), &none, &none, input.key).is_some();
            let shown = e.redact(input.key);
            assert_eq!(
                outcome_of(&shown),
                outcome,
                "redaction changed the error's kind"
            );
            check_redacted(&shown, input.key);
            check_cut(&before, message(&shown), input.key);
            Report {
                status: input.status,
                outcome,
                echoed,
            }
        }
    }
}

/// The input as a console listing: parsed, its rows reduced to the allow-list, its error
/// redacted and checked like the worker route's.
pub fn check_console(input: &Input<'_>) {
    match parse_listing(input.status, input.body) {
        Ok(rows) => {
            assert!(
                (200..300).contains(&input.status),
                "HTTP {} gave rows",
                input.status
            );
            for row in &rows {
                let _ = (group_row(row), endpoint_row(row));
            }
        }
        Err(e) => {
            let before = message(&e).to_string();
            let shown = e.redact(input.key);
            check_redacted(&shown, input.key);
            check_cut(&before, message(&shown), input.key);
        }
    }
}

fn outcome_of(e: &VastError) -> Outcome {
    match e {
        VastError::RateLimited(_) => Outcome::RateLimited,
        VastError::Authentication(_) => Outcome::Authentication,
        VastError::NotFound(_) => Outcome::NotFound,
        VastError::Http { status, .. } => Outcome::Http(*status),
        VastError::Remote(_) => Outcome::Remote,
        VastError::Malformed(_) => Outcome::Malformed,
        VastError::Transport(_) => panic!("the parser made a transport error: {e:?}"),
    }
}

/// The text of Vast's an error carries (what redaction rewrites).
fn message(e: &VastError) -> &str {
    match e {
        VastError::Transport(s)
        | VastError::RateLimited(s)
        | VastError::Authentication(s)
        | VastError::NotFound(s)
        | VastError::Remote(s)
        | VastError::Malformed(s)
        | VastError::Http { body: s, .. } => s,
    }
}

/// Checks the `Display` and the `Debug` text of a redacted error for the key.
fn check_redacted(shown: &VastError, key: &str) {
    let msg = message(shown);
    let (hidden, broken) = marks(msg);

    // Display: a fixed text, then the message.
    let display = shown.to_string();
    assert!(
        display.ends_with(msg),
        "Display does not end with the message"
    );
    let fixed = display.len() - msg.len();
    let mut d_hidden = vec![true; fixed];
    d_hidden.extend_from_slice(&hidden);
    let mut d_broken = vec![false; fixed];
    d_broken.extend_from_slice(&broken);
    if let Some(found) = find_key(display.as_bytes(), &d_hidden, &d_broken, key) {
        panic!("the redacted Display shows {found}: {display:?}");
    }

    // Debug: a fixed text around the message, quoted and escaped character by
    // character; what an escape writes is not the message's, so it is not searched.
    let debug = format!("{shown:?}");
    let start = debug.find('"').expect("Debug quotes the message");
    let mut g_hidden = vec![true; start + 1];
    let mut g_broken = vec![false; start + 1];
    let mut escaped = String::from("\"");
    for (i, c) in msg.char_indices() {
        let quoted = format!("{:?}", c.to_string());
        let esc = &quoted[1..quoted.len() - 1];
        let plain = esc.len() == c.len_utf8() && esc.starts_with(c);
        let range = i..i + c.len_utf8();
        let h = !plain || hidden[range.clone()].contains(&true);
        let b = plain && broken[range].contains(&true);
        g_hidden.extend(std::iter::repeat_n(h, esc.len()));
        g_broken.extend(std::iter::repeat_n(b, esc.len()));
        escaped.push_str(esc);
    }
    escaped.push('"');
    assert_eq!(escaped, format!("{msg:?}"), "Debug escapes differently");
    assert!(
        debug[start..].starts_with(&escaped),
        "Debug does not show the quoted message"
    );
    g_hidden.resize(debug.len(), true);
    g_broken.resize(debug.len(), false);
    if let Some(found) = find_key(debug.as_bytes(), &g_hidden, &g_broken, key) {
        panic!("the redacted Debug shows {found}: {debug}");
    }
}

/// Two marks on each byte of a redacted message.
///
/// Hidden: bytes that redaction wrote, not Vast: each [`MARKER`]; each U+FFFD (what
/// `from_utf8_lossy` puts for a multi-byte character a redacted piece split); the `…`
/// that the final cut adds, and the start of a marker that cut split just before it.
///
/// Broken: the two bytes on either side of a marker, or before that `…`, which are a
/// `%` or hex digits: they may be what is left of a percent escape the redaction cut
/// through, and then they decode differently from the text redaction looked at.
fn marks(msg: &str) -> (Vec<bool>, Vec<bool>) {
    let b = msg.as_bytes();
    let mut hidden = vec![false; b.len()];
    let mut edges = Vec::new();
    for (i, m) in msg.match_indices(MARKER) {
        hidden[i..i + m.len()].fill(true);
        edges.push((i, i + m.len()));
    }
    for (i, c) in msg.char_indices() {
        if c == '\u{FFFD}' {
            hidden[i..i + c.len_utf8()].fill(true);
        }
    }
    if msg.ends_with('…') {
        let mut end = b.len() - '…'.len_utf8();
        hidden[end..].fill(true);
        if let Some(n) = (1..MARKER.len())
            .rev()
            .find(|&n| b[..end].ends_with(&MARKER.as_bytes()[..n]))
        {
            hidden[end - n..end].fill(true);
            end -= n;
        }
        edges.push((end, b.len()));
    }
    let mut broken = vec![false; b.len()];
    for (from, to) in edges {
        // After: "XY" or "Y" of an escape whose "%" was redacted.
        for i in to..(to + 2).min(b.len()) {
            if !b[i].is_ascii_hexdigit() || hidden[i] {
                break;
            }
            broken[i] = true;
        }
        // Before: "%" or "%X" of an escape whose rest was redacted or cut.
        for n in 1..=2 {
            if from >= n
                && b[from - n] == b'%'
                && b[from - n + 1..from].iter().all(u8::is_ascii_hexdigit)
            {
                broken[from - n..from].fill(true);
            }
        }
    }
    (hidden, broken)
}

/// The first thing of the key that `text` shows outside the `hidden` bytes, if any.
///
/// What [`VastError::redact`] promises (`src/vast/error.rs`), exactly:
/// - an empty key: nothing;
/// - a key shorter than [`MIN_KEY_PIECE`] bytes: neither the key nor its URL-encoded
///   form (RFC 3986 unreserved bytes kept, every other byte as `%` and two upper-case
///   hex digits) occurs whole;
/// - a longer key: no window of [`MIN_KEY_PIECE`] bytes of the key occurs, in the text
///   as it is or in the text percent-decoded (every `%` and two hex digits, either
///   case, as one byte). Every longer piece, the key whole and its URL-encoded form
///   contain such a window. In the decoded text, a window spanning a `broken` byte is
///   not searched.
pub fn find_key(text: &[u8], hidden: &[bool], broken: &[bool], key: &str) -> Option<String> {
    let k = key.as_bytes();
    let shown = |from: usize, to: usize| !hidden[from..to].contains(&true);
    if k.is_empty() {
        return None;
    }
    if k.len() < MIN_KEY_PIECE {
        for (form, whole) in [
            ("the key", k.to_vec()),
            ("the URL-encoded key", url_encoded(k)),
        ] {
            if let Some(i) = (0..(text.len() + 1).saturating_sub(whole.len()))
                .find(|&i| text[i..].starts_with(&whole) && shown(i, i + whole.len()))
            {
                return Some(format!("{form} at byte {i}"));
            }
        }
        return None;
    }
    let pieces: HashSet<&[u8]> = k.windows(MIN_KEY_PIECE).collect();
    for (i, w) in text.windows(MIN_KEY_PIECE).enumerate() {
        if pieces.contains(w) && shown(i, i + MIN_KEY_PIECE) {
            return Some(format!("a piece of the key at byte {i}"));
        }
    }
    let (decoded, spans) = percent_decoded(text);
    for (i, w) in decoded.windows(MIN_KEY_PIECE).enumerate() {
        let (from, to) = (spans[i].0, spans[i + MIN_KEY_PIECE - 1].1);
        if pieces.contains(w) && shown(from, to) && !broken[from..to].contains(&true) {
            return Some(format!("a percent-encoded piece of the key at byte {from}"));
        }
    }
    None
}

/// Redaction comes before the final cut, "so that no piece of the key survives a cut":
/// a cut text that holds no marker (not even the start of one, before the `…`) is the
/// start of the original text, and then redaction found nothing to remove in that start:
/// no occurrence of the key whole, or of its URL-encoded form, and no window of
/// [`MIN_KEY_PIECE`] bytes (as it is or percent-decoded), may start there, even if it
/// runs on past the cut (a U+FFFD just before the `…` aside). Only what lies before the first occurrence of the key whole or
/// URL-encoded counts for a window or for the URL-encoded form: those are replaced first,
/// and what they overlap is no longer there to be found.
fn check_cut(before: &str, after: &str, key: &str) {
    let Some(kept) = after.strip_suffix('…') else {
        return;
    };
    let partial = (1..MARKER.len()).any(|n| kept.ends_with(&MARKER[..n]));
    if key.is_empty() || kept.contains(MARKER) || partial {
        return;
    }
    // A marker just past the cut may have split a character whose start, just before
    // the cut, `from_utf8_lossy` made a U+FFFD.
    let kept = kept.strip_suffix('\u{FFFD}').unwrap_or(kept);
    assert!(
        before.starts_with(kept),
        "a redacted text without a marker is not the start of the original"
    );
    if let Some(found) = across_the_cut(before, kept.len(), key) {
        panic!(
            "redaction missed {found}, across the cut at byte {}: {after:?}",
            kept.len()
        );
    }
}

/// What redaction must have removed from `text` starting before byte `end` (see
/// [`check_cut`]).
fn across_the_cut(text: &str, end: usize, key: &str) -> Option<String> {
    let encoded = String::from_utf8(url_encoded(key.as_bytes())).expect("ASCII");
    let first_key = text.find(key).unwrap_or(text.len());
    if first_key < end {
        return Some(format!("the key at byte {first_key}"));
    }
    let first_encoded = text.find(&encoded).unwrap_or(text.len());
    if first_encoded < end && first_encoded + encoded.len() <= first_key {
        return Some(format!("the URL-encoded key at byte {first_encoded}"));
    }
    if key.len() < MIN_KEY_PIECE {
        return None;
    }
    let replaced = first_key.min(first_encoded);
    let pieces: HashSet<&[u8]> = key.as_bytes().windows(MIN_KEY_PIECE).collect();
    let t = text.as_bytes();
    for (i, w) in t.windows(MIN_KEY_PIECE).enumerate().take(end) {
        if i + MIN_KEY_PIECE <= replaced && pieces.contains(w) {
            return Some(format!("a piece of the key at byte {i}"));
        }
    }
    let (decoded, spans) = percent_decoded(t);
    for (i, w) in decoded.windows(MIN_KEY_PIECE).enumerate() {
        let (from, to) = (spans[i].0, spans[i + MIN_KEY_PIECE - 1].1);
        if from >= end {
            break;
        }
        if to <= replaced && pieces.contains(w) {
            return Some(format!("a percent-encoded piece of the key at byte {from}"));
        }
    }
    None
}

/// The key as a URL encoder writes it.
fn url_encoded(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// `text` percent-decoded, with the span of `text` each decoded byte came from.
fn percent_decoded(text: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let (mut out, mut spans) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < text.len() {
        let escape = text[i] == b'%'
            && text.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && text.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape {
            let hex = std::str::from_utf8(&text[i + 1..i + 3]).expect("hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
            spans.push((i, i + 3));
            i += 3;
        } else {
            out.push(text[i]);
            spans.push((i, i + 1));
            i += 1;
        }
    }
    (out, spans)
}
