//! A deterministic pseudo-random stream for the unit tests (no rand dependency in the
//! library's unit tests).

/// Uniform values in [0, 1) from an xorshift generator seeded with `seed` (not 0).
pub fn stream(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}
