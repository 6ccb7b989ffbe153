//! Fuzz target: any bytes as a Vast answer, decoded and checked by
//! [`vast_operator_fuzz::check`] (status, key, body; see there). Must never panic.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        vast_operator_fuzz::check::check(data);
    });
}
