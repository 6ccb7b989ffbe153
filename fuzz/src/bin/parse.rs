//! Fuzz target: any bytes as a Vast answer. The first two bytes choose the HTTP status,
//! the rest is the body; the next bytes also serve as an API key to redact. Must never
//! panic; what it parses is sorted without duplicate ids; a redacted error never holds
//! the key.

use vast_operator::vast::{VastError, classify_response};

fn check(data: &[u8]) {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + (u16::from_le_bytes([*a, *b]) % 500), rest),
        _ => (200, data),
    };
    match classify_response(status, body) {
        Ok(workers) => {
            assert!(workers.windows(2).all(|w| w[0].id < w[1].id));
        }
        Err(e) => {
            let key: String = body
                .iter()
                .take(24)
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            if key.len() >= 8 {
                let text = VastError::Remote(format!("echo {key} echo"))
                    .redact(&key)
                    .to_string();
                assert!(!text.contains(&key), "{text}");
            }
            let _ = e.redact(&key).to_string();
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
