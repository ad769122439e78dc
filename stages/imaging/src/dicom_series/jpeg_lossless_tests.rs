//! Tests of the JPEG Lossless decoder: round trips through the test encoder (any predictor,
//! generated Huffman tables, point transform, restart intervals, odd sizes), agreement with
//! the `jpeg-decoder` crate and (with FLOW_PYTHON) with libjpeg, and damaged streams, which
//! must be errors and never panics.

use super::encoder::{encode, expected, image, segment, Opts, Rng, Table};
use super::*;
use proptest::prelude::*;

/// Encode a random case and check that it decodes back.
fn round_trip(seed: u64, rows: usize, columns: usize, o: &Opts) {
    let img = image(&mut Rng(seed | 1), rows * columns, o.precision);
    let stream = encode(&img, rows, columns, o);
    let back = decode(&stream, rows as u32, columns as u32)
        .unwrap_or_else(|e| panic!("{rows}x{columns} {o:?}: {e:?}"));
    assert_eq!(
        back,
        expected(&img, o.point_transform),
        "{rows}x{columns} {o:?}"
    );
}

#[test]
fn round_trips_odd_sizes_every_predictor_restarts_and_point_transforms() {
    let mut rng = Rng(0x51ED_2701);
    for (rows, columns) in [(1, 1), (3, 7), (17, 5), (1, 40), (40, 1), (9, 9)] {
        for precision in [2, 8, 12, 16] {
            for predictor in 1..=7 {
                for (pt, restart_rows) in [(0, 0), (1, 1), (0, 2), (precision - 1, 3)] {
                    let table = match rng.below(2) {
                        0 => Table::fixed(),
                        _ => Table::random(&mut rng),
                    };
                    let o = Opts {
                        point_transform: pt,
                        restart_rows,
                        table,
                        ..Opts::new(precision, predictor)
                    };
                    round_trip(rng.next(), rows, columns, &o);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn round_trips_random_images(
        rows in 1usize..24, columns in 1usize..24, precision in 2u32..=16,
        predictor in 1u8..=7, pt_seed: u32, restart_seed: u8, seed: u64, table_seed: u64,
    ) {
        let restart_rows = restart_seed as usize % (rows + 1);
        let o = Opts {
            point_transform: pt_seed % precision,
            restart_rows,
            table: Table::random(&mut Rng(table_seed | 1)),
            ..Opts::new(precision, predictor)
        };
        round_trip(seed, rows, columns, &o);
    }
}

/// 16-bit extremes: 0 after the initial prediction 32768 is the difference 32768 (category
/// 16, no extra bits); 0 -> 65535 wraps to -1.
#[test]
fn sixteen_bit_extremes_and_category_16() {
    let img = [0, 32768, 0, 65535, 1, 65535, 0, 32767, 32768, 0, 65535, 0];
    for predictor in 1..=7 {
        let stream = encode(&img, 3, 4, &Opts::new(16, predictor));
        assert_eq!(decode(&stream, 3, 4).unwrap(), img, "predictor {predictor}");
    }
    // The 12-bit range with a restart per row.
    let img: Vec<u16> = (0..30).map(|i| [0, 4095][i % 2]).collect();
    let o = Opts {
        restart_rows: 1,
        ..Opts::new(12, 4)
    };
    assert_eq!(decode(&encode(&img, 5, 6, &o), 5, 6).unwrap(), img);
}

/// Samples decoded by the `jpeg-decoder` crate (what dicom-pixeldata uses).
fn jpeg_decoder_samples(stream: &[u8], precision: u32) -> Vec<u16> {
    let mut d = jpeg_decoder::Decoder::new(stream);
    let bytes = d.decode().expect("jpeg-decoder decodes the stream");
    if precision == 8 {
        bytes.iter().map(|&b| b as u16).collect()
    } else {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect()
    }
}

/// The same streams through `jpeg-decoder`, an independent implementation: identical samples.
/// Without point transform or restarts, which jpeg-decoder 0.3 mishandles (it predicts from
/// the shifted samples and does not reset the prediction at a restart).
#[test]
fn agrees_with_the_jpeg_decoder_crate() {
    let mut rng = Rng(0xD1C0_4A70);
    for case in 0..400 {
        let (rows, columns) = (1 + rng.below(20) as usize, 1 + rng.below(20) as usize);
        let precision = 2 + rng.below(15) as u32;
        let predictor = 1 + (case % 7) as u8;
        let table = if case % 2 == 0 {
            Table::fixed()
        } else {
            Table::random(&mut rng)
        };
        let o = Opts {
            table,
            ..Opts::new(precision, predictor)
        };
        let img = image(&mut rng, rows * columns, precision);
        let stream = encode(&img, rows, columns, &o);
        let ours = decode(&stream, rows as u32, columns as u32).unwrap();
        assert_eq!(ours, img, "case {case}");
        assert_eq!(
            jpeg_decoder_samples(&stream, precision),
            ours,
            "case {case}: {rows}x{columns} {o:?}"
        );
    }
}

/// With FLOW_PYTHON (scripts/test.sh): restart intervals, which the jpeg-decoder test leaves
/// out, against libjpeg (pylibjpeg-libjpeg, Thomas Richter's codec that pydicom uses). Without
/// point transform: for Pt > 0 libjpeg 2.x starts each line from another neutral value than
/// the 2^(P-Pt-1) of T.81 H.1.2.1 that IJG/libjpeg-turbo (and this decoder) use.
#[test]
fn agrees_with_libjpeg_on_restart_intervals() {
    let Some(python) = std::env::var_os("FLOW_PYTHON").filter(|p| !p.is_empty()) else {
        assert_ne!(
            std::env::var("FLOW_REQUIRE_ORACLES").as_deref(),
            Ok("1"),
            "FLOW_REQUIRE_ORACLES=1 but FLOW_PYTHON is unset"
        );
        println!("skipped: FLOW_PYTHON unset");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x011B_13E6);
    let mut cases = Vec::new();
    for case in 0..56 {
        let (rows, columns) = (1 + rng.below(16) as usize, 1 + rng.below(16) as usize);
        let precision = [8, 12, 16, 2 + rng.below(15) as u32][case % 4];
        let o = Opts {
            restart_rows: 1 + rng.below(rows as u64) as usize,
            table: Table::random(&mut rng),
            ..Opts::new(precision, 1 + (case % 7) as u8)
        };
        let img = image(&mut rng, rows * columns, precision);
        let path = tmp.path().join(format!("{case}.jpg"));
        std::fs::write(&path, encode(&img, rows, columns, &o)).unwrap();
        cases.push((path, img, rows, columns, o));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/ljpeg.py");
    let run = std::process::Command::new(python)
        .arg(script)
        .args(cases.iter().map(|c| &c.0))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for (path, img, rows, columns, o) in &cases {
        let stream = std::fs::read(path).unwrap();
        let ours = decode(&stream, *rows as u32, *columns as u32).unwrap();
        assert_eq!(ours, expected(img, o.point_transform), "{o:?}");
        let raw = std::fs::read(path.with_extension("raw")).unwrap();
        let theirs: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(theirs, ours, "{}: {rows}x{columns} {o:?}", path.display());
    }
}

/// A small valid stream and its image.
fn sample_stream(o: &Opts) -> (Vec<u8>, Vec<u16>) {
    let img = image(&mut Rng(77), 6 * 5, o.precision);
    (encode(&img, 6, 5, o), img)
}

/// Position of the first marker segment `marker` in `stream` and its whole length.
fn find_segment(stream: &[u8], marker: u8) -> (usize, usize) {
    let at = stream.windows(2).position(|w| w == [0xFF, marker]).unwrap();
    (
        at,
        2 + u16::from_be_bytes([stream[at + 2], stream[at + 3]]) as usize,
    )
}

fn without_segment(stream: &[u8], marker: u8) -> Vec<u8> {
    let (at, len) = find_segment(stream, marker);
    [&stream[..at], &stream[at + len..]].concat()
}

fn message(r: Result<Vec<u16>, LosslessError>) -> String {
    match r {
        Err(Corrupt(m)) | Err(Truncated(m)) | Err(Unsupported(m)) => m,
        Ok(_) => panic!("decoded a bad stream"),
    }
}

#[test]
fn every_truncation_is_an_error_and_the_eoi_is_optional() {
    for o in [
        Opts::new(16, 1),
        Opts {
            restart_rows: 2,
            ..Opts::new(12, 5)
        },
    ] {
        let (stream, img) = sample_stream(&o);
        for cut in 0..stream.len() - 2 {
            let r = decode(&stream[..cut], 6, 5);
            assert!(r.is_err(), "cut at {cut} of {} decoded", stream.len());
        }
        let scan = find_segment(&stream, 0xDA);
        let r = decode(&stream[..stream.len() - 4], 6, 5);
        assert!(matches!(r, Err(Truncated(_))), "{r:?}");
        assert!(stream.len() - 4 > scan.0 + scan.1);
        assert_eq!(decode(&stream[..stream.len() - 2], 6, 5).unwrap(), img);
    }
}

#[test]
fn missing_segments_and_wrong_sizes_are_errors() {
    let (stream, _) = sample_stream(&Opts::new(12, 1));
    let m = message(decode(&without_segment(&stream, 0xC3), 6, 5));
    assert!(m.contains("before the frame header"), "{m}");
    let m = message(decode(&without_segment(&stream, 0xC4), 6, 5));
    assert!(m.contains("which no DHT defines"), "{m}");
    assert!(decode(&without_segment(&stream, 0xDA), 6, 5).is_err());
    assert!(decode(&stream[2..], 6, 5).is_err(), "no SOI");
    for (rows, columns) in [(5, 5), (6, 6), (1, 1), (16384, 16384)] {
        let m = message(decode(&stream, rows, columns));
        assert!(m.contains("frame header says 6x5"), "{m}");
    }
}

/// A stream with a hand-made table (`counts`, `values`) and scan bytes.
fn hand_made(counts: &[u8; 16], values: &[u8], scan: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    segment(&mut out, 0xC3, &[16, 0, 1, 0, 4, 1, 1, 0x11, 0]);
    segment(&mut out, 0xC4, &[&[0x00][..], counts, values].concat());
    segment(&mut out, 0xDA, &[1, 1, 0x00, 1, 0, 0]);
    out.extend(scan);
    out
}

#[test]
fn codes_not_in_the_table_and_categories_above_16_are_errors() {
    let mut counts = [0u8; 16];
    counts[0] = 1; // "0" -> category 0
    counts[1] = 1; // "10" -> category 1
    let ok = hand_made(&counts, &[0, 1], &[0b0101_0000, 0xFF, 0xD9]);
    assert_eq!(decode(&ok, 1, 4).unwrap(), vec![32768, 32769, 32769, 32769]);
    // "11" is not a code.
    let m = message(decode(
        &hand_made(&counts, &[0, 1], &[0xC0, 0, 0xFF, 0xD9]),
        1,
        4,
    ));
    assert!(m.contains("not in the table"), "{m}");
    // Category 17 does not exist.
    let m = message(decode(
        &hand_made(&counts, &[0, 17], &[0x80, 0, 0xFF, 0xD9]),
        1,
        4,
    ));
    assert!(m.contains("category 17"), "{m}");
    // Three codes of one bit do not fit.
    counts[0] = 3;
    let m = message(decode(&hand_made(&counts, &[0, 1, 2, 3], &[0; 4]), 1, 4));
    assert!(m.contains("more codes of 1 bits"), "{m}");
}

#[test]
fn unsupported_streams_are_told_apart_from_corrupt_ones() {
    let (stream, _) = sample_stream(&Opts::new(12, 1));
    let (sof, _) = find_segment(&stream, 0xC3);
    for (at, byte) in [(sof + 1, 0xC0), (sof + 1, 0xCB), (sof + 9, 3), (sof + 6, 0)] {
        let mut bad = stream.clone();
        bad[at] = byte; // SOF0, SOF11 (arithmetic), three components, zero lines (DNL)
        assert!(matches!(decode(&bad, 6, 5), Err(Unsupported(_))), "{at}");
    }
    // A restart interval that splits rows of 5.
    let o = Opts {
        restart_rows: 1,
        ..Opts::new(12, 1)
    };
    let (mut bad, _) = sample_stream(&o);
    let (dri, _) = find_segment(&bad, 0xDD);
    bad[dri + 5] = 3;
    assert!(matches!(decode(&bad, 6, 5), Err(Unsupported(_))));
    // The wrong restart marker, a predictor 0, a point transform as large as the precision.
    let (mut bad, _) = sample_stream(&o);
    let rst1 = bad.windows(2).position(|w| w == [0xFF, 0xD1]).unwrap();
    bad[rst1 + 1] = 0xD2;
    let m = message(decode(&bad, 6, 5));
    assert!(m.contains("where RST1 was expected"), "{m}");
    let (sos, _) = find_segment(&stream, 0xDA);
    for (at, byte) in [(sos + 7, 0), (sos + 9, 12)] {
        let mut bad = stream.clone();
        bad[at] = byte;
        assert!(matches!(decode(&bad, 6, 5), Err(Corrupt(_))), "{at}");
    }
}

/// A header of 16384 x 16384 samples over a few bytes of scan: refused before 512 MiB are
/// allocated.
#[test]
fn a_huge_frame_over_little_data_is_refused_before_allocating() {
    let mut stream = hand_made(
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0],
        &[0; 64],
    );
    let (sof, _) = find_segment(&stream, 0xC3);
    stream[sof + 5..sof + 9].copy_from_slice(&[0x40, 0, 0x40, 0]);
    let m = message(decode(&stream, 16384, 16384));
    assert!(m.contains("samples need at least"), "{m}");
}

/// Random damage (byte changes, inserted markers, cuts, zeroed runs, pure garbage) is an
/// error or a full-size image, never a panic, and quick.
#[test]
fn mutated_streams_never_panic() {
    let mut rng = Rng(0xBAD5_EED5);
    let bases: Vec<Vec<u8>> = (1..=7)
        .map(|predictor| {
            let o = Opts {
                restart_rows: (predictor % 3) as usize,
                point_transform: (predictor % 2) as u32,
                table: Table::random(&mut rng),
                ..Opts::new(8 + predictor as u32, predictor)
            };
            sample_stream(&o).0
        })
        .collect();
    let (mut errors, mut decoded) = (0, 0);
    for round in 0..4000 {
        let mut s = bases[round % bases.len()].clone();
        for _ in 0..1 + rng.below(4) {
            if s.is_empty() {
                break;
            }
            let at = rng.below(s.len() as u64) as usize;
            match rng.below(5) {
                0 => s[at] = rng.next() as u8,
                1 => s[at] ^= 1 << rng.below(8),
                2 => s.splice(at..at, [0xFF, rng.next() as u8]).for_each(drop),
                3 => s.truncate(at),
                _ => s[at..].iter_mut().take(6).for_each(|b| *b = 0),
            }
        }
        if round % 50 == 0 {
            s = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            s.splice(0..0, [0xFF, 0xD8]).for_each(drop);
        }
        let t = std::time::Instant::now();
        let r = std::panic::catch_unwind(|| decode(&s, 6, 5));
        let r = r.unwrap_or_else(|_| panic!("round {round} panicked on {s:02X?}"));
        assert!(
            t.elapsed().as_millis() < 200,
            "round {round} took {:?}",
            t.elapsed()
        );
        match r {
            Ok(v) => {
                assert_eq!(v.len(), 30);
                decoded += 1;
            }
            Err(_) => errors += 1,
        }
    }
    assert!(
        errors > 1000 && decoded > 0,
        "{errors} errors, {decoded} decoded"
    );
}
