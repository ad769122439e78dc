//! Input mutation: byte-level edits for binary formats, plus token insertions that reach deeper
//! into text formats (YAML templates, CSV numbers).

use rand::seq::SliceRandom;
use rand::Rng;

/// Tokens that text parsers treat specially.
const TOKENS: &[&str] = &[
    "${",
    "}",
    "${params.",
    "${inputs.",
    "$${",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "\n  ",
    "\n    ",
    "foreach: {k: \"0..100000\"}",
    "0..99999999",
    "\"",
    "'",
    ",",
    ",,",
    "\r\n",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "-1",
    "0",
    "99999999999999999999",
    "1.2.840.10008.1.2",
    "&a",
    "*a",
    "!!binary",
    "<<: *a",
    "\u{0}",
    "\u{feff}",
    "é",
];

/// Values that sit on the edges of integer fields.
const EDGES: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// One to four random edits of `seed` (or a splice with `other`).
pub fn mutate<R: Rng>(rng: &mut R, seed: &[u8], other: &[u8], text: bool) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        edit(rng, &mut v, other, text);
    }
    v
}

fn edit<R: Rng>(rng: &mut R, v: &mut Vec<u8>, other: &[u8], text: bool) {
    let len = v.len();
    let at = |rng: &mut R| if len == 0 { 0 } else { rng.gen_range(0..len) };
    match rng.gen_range(0..if text { 10 } else { 8 }) {
        0 if len > 0 => {
            let i = at(rng);
            v[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            v[i] = rng.gen();
        }
        2 => {
            let i = at(rng);
            let n = rng.gen_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            v.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = at(rng);
            let n = rng.gen_range(1..=(len - i).min(64));
            v.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a chunk (repeated elements, repeated YAML keys).
            let i = at(rng);
            let n = rng.gen_range(1..=(len - i).min(256));
            let chunk = v[i..i + n].to_vec();
            let j = at(rng);
            v.splice(j..j, chunk);
        }
        5 if len > 0 => {
            v.truncate(at(rng));
        }
        6 if len > 0 => {
            // An edge value over 1, 2, 4 or 8 bytes, little endian (lengths, dims, offsets).
            let width = *[1usize, 2, 4, 8].choose(rng).expect("non-empty");
            let value = EDGES.choose(rng).expect("non-empty").to_le_bytes();
            let i = at(rng);
            let n = width.min(len - i);
            v[i..i + n].copy_from_slice(&value[..n]);
        }
        7 if !other.is_empty() => {
            // Splice: our head, the other seed's tail.
            let i = at(rng);
            let j = rng.gen_range(0..other.len());
            v.truncate(i);
            v.extend_from_slice(&other[j..]);
        }
        8 | 9 => {
            let token = TOKENS.choose(rng).expect("non-empty").as_bytes();
            let i = at(rng);
            if rng.gen_bool(0.5) || len == 0 {
                v.splice(i..i, token.iter().copied());
            } else {
                let end = (i + token.len()).min(len);
                v.splice(i..end, token.iter().copied());
            }
        }
        _ => {
            let i = at(rng);
            v.insert(i.min(v.len()), rng.gen());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_are_seeded_and_change_the_input() {
        let seed = b"name: t\nnodes:\n  a: {stage: command}\n".to_vec();
        let run = |s| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s);
            (0..200)
                .map(|_| mutate(&mut rng, &seed, b"other", true))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let changed = run(7).iter().filter(|m| **m != seed).count();
        assert!(changed > 190, "{changed} of 200 changed");
    }
}
