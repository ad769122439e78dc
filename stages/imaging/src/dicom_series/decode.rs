//! Decoding one slice's PixelData to Hounsfield units (int16), for native and compressed
//! transfer syntaxes (via dicom-pixeldata; grey-scale JPEG Lossless through our own
//! [`jpeg_lossless`] decoder, which is several times faster).

use super::error::{chain, is_eof, DicomReadError};
use super::header::{header_from_object, open_error, SliceHeader};
use super::jpeg_lossless::{self, LosslessError};
use super::prescan::load_file;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;
use std::path::Path;

/// One decoded slice: HU values row by row (`values[row * columns + column]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SliceImage {
    pub header: SliceHeader,
    pub hu: Vec<i16>,
    /// How many values fell outside int16 and were saturated.
    pub clamped: usize,
    /// Whether any value needed rounding (non-integer slope or intercept).
    pub rounded: bool,
}

/// Read and decode one file completely: header checks, pixel decoding, rescale to HU.
///
/// MONOCHROME1 is not inverted: for CT the Modality LUT (rescale) already yields HU, and
/// the photometric interpretation only affects display.
pub fn read_slice(path: &Path) -> Result<SliceImage, DicomReadError> {
    let mut hu = Vec::new();
    let (header, clamped, rounded) = decode_into(path, |n| {
        hu.resize(n, 0);
        Some(&mut hu[..])
    })?;
    Ok(SliceImage {
        header,
        hu,
        clamped,
        rounded,
    })
}

/// The text of a caught panic.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Decode `path` into the buffer `out(n_pixels)` hands back (None: size mismatch, reported
/// by the caller). Returns the header, the saturated count and whether values were rounded.
pub(crate) fn decode_into<'o>(
    path: &Path,
    out: impl FnOnce(usize) -> Option<&'o mut [i16]>,
) -> Result<(SliceHeader, usize, bool), DicomReadError> {
    let file = load_file(path)?;
    let obj = OpenFileOptions::new()
        .from_reader(file.without_preamble())
        .map_err(|e| open_error(path, e))?;
    drop(file);
    let header = header_from_object(path, &obj)?;
    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or(DicomReadError::MissingTag {
            path: path.to_path_buf(),
            tag: "PixelData (7FE0,0010)",
        })?;
    let n = header.rows as usize * header.columns as usize;
    let bytes_per = header.bits_allocated as usize / 8;
    let size_mismatch = || DicomReadError::MixedSeries {
        path: path.to_path_buf(),
        tag: "Rows x Columns (0028,0010/0011)",
        found: format!("{}x{}", header.rows, header.columns),
        expected: "the size of the series' first slice".into(),
        first: path.to_path_buf(),
    };
    // JPEG Lossless, 16-bit words (SamplesPerPixel 1 and a single frame are header checks):
    // our decoder, unless the stream uses what it does not support.
    let lossless = matches!(
        header.transfer_syntax.as_str(),
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70"
    );
    if let (true, 16, Some(fragments)) = (lossless, header.bits_allocated, pixel.fragments()) {
        // A single-frame image: every fragment after the offset table is part of the frame.
        let joined;
        let frame: &[u8] = match fragments {
            [one] => one,
            many => {
                joined = many.concat();
                &joined
            }
        };
        // Our decoder is tested not to panic on mutated streams; a panic would still be a bad
        // file for the user, not a crash.
        let decoded =
            std::panic::catch_unwind(|| jpeg_lossless::decode(frame, header.rows, header.columns))
                .unwrap_or_else(|panic| {
                    Err(LosslessError::Corrupt(format!(
                        "the decoder failed with \"{}\"",
                        panic_message(&panic)
                    )))
                });
        match decoded {
            Ok(words) => {
                let target = out(n).ok_or_else(size_mismatch)?;
                let (clamped, rounded) = words_to_hu(&words, &header, target);
                return Ok((header, clamped, rounded));
            }
            Err(LosslessError::Unsupported(why)) => {
                tracing::debug!(
                    transfer_syntax = %header.transfer_syntax,
                    "JPEG Lossless frame left to dicom-pixeldata: {why}"
                );
            }
            Err(LosslessError::Truncated(detail)) => {
                return Err(DicomReadError::Truncated {
                    path: path.to_path_buf(),
                    detail: format!("PixelData (7FE0,0010) JPEG Lossless frame: {detail}"),
                })
            }
            Err(LosslessError::Corrupt(detail)) => {
                return Err(DicomReadError::Decode {
                    path: path.to_path_buf(),
                    detail: format!(
                        "corrupt JPEG Lossless frame (transfer syntax {}): {detail}",
                        header.transfer_syntax
                    ),
                })
            }
        }
    }
    if header.transfer_syntax == "1.2.840.10008.1.2"
        || header.transfer_syntax == "1.2.840.10008.1.2.1"
    {
        let have = pixel.value().to_bytes().map(|b| b.len()).unwrap_or(0);
        if have < n * bytes_per {
            return Err(DicomReadError::Truncated {
                path: path.to_path_buf(),
                detail: format!(
                    "PixelData (7FE0,0010) holds {have} bytes, Rows x Columns need {}",
                    n * bytes_per
                ),
            });
        }
    }
    // A decoder adapter can panic on corrupt compressed data (seen: an index out of range in
    // the JPEG 2000 adapter on a bit-flipped slice): that is a bad file, not a crash.
    let decoded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
            .map_err(|panic| DicomReadError::Decode {
                path: path.to_path_buf(),
                detail: format!(
                    "corrupt compressed data (transfer syntax {}): the decoder failed with \"{}\"",
                    header.transfer_syntax,
                    panic_message(&panic)
                ),
            })?
            .map_err(|e| {
                if is_eof(&e) {
                    DicomReadError::Truncated {
                        path: path.to_path_buf(),
                        detail: chain(&e),
                    }
                } else {
                    DicomReadError::Decode {
                        path: path.to_path_buf(),
                        detail: chain(&e),
                    }
                }
            })?;
    if decoded.rows() != header.rows || decoded.columns() != header.columns {
        return Err(DicomReadError::Decode {
            path: path.to_path_buf(),
            detail: format!(
                "decoded frame is {}x{}, header says {}x{}",
                decoded.rows(),
                decoded.columns(),
                header.rows,
                header.columns
            ),
        });
    }
    let frame = decoded.frame_data(0).map_err(|e| DicomReadError::Decode {
        path: path.to_path_buf(),
        detail: chain(&e),
    })?;
    if frame.len() < n * bytes_per {
        return Err(DicomReadError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "decoded PixelData (7FE0,0010) holds {} bytes, need {}",
                frame.len(),
                n * bytes_per
            ),
        });
    }
    let target = out(n).ok_or_else(size_mismatch)?;
    let (clamped, rounded) = to_hu(&frame[..n * bytes_per], &header, target);
    Ok((header, clamped, rounded))
}

/// Stored pixel value `raw` (one little-endian word or byte) as an integer: masked to
/// BitsStored, sign-extended when PixelRepresentation is 1.
#[inline]
fn stored_value(raw: u32, shift: u32, signed: bool) -> i32 {
    let v = raw << shift;
    if signed {
        (v as i32) >> shift
    } else {
        (v >> shift) as i32
    }
}

/// Write HU = stored * slope + intercept (rounded, saturated to int16) for every pixel of
/// `bytes` (little-endian words, or bytes when BitsAllocated is 8) into `out`; returns
/// (saturated count, whether rounding happened).
pub(crate) fn to_hu(bytes: &[u8], h: &SliceHeader, out: &mut [i16]) -> (usize, bool) {
    match h.bits_allocated {
        8 => rescale(bytes.iter().map(|&b| b as u32), h, out),
        _ => rescale(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
            h,
            out,
        ),
    }
}

/// [`to_hu`] for 16-bit words already decoded (JPEG Lossless samples).
pub(crate) fn words_to_hu(words: &[u16], h: &SliceHeader, out: &mut [i16]) -> (usize, bool) {
    rescale(words.iter().map(|&w| w as u32), h, out)
}

/// The conversion shared by [`to_hu`] and [`words_to_hu`]: `raw` are the stored words.
#[inline(always)]
fn rescale(raw: impl Iterator<Item = u32>, h: &SliceHeader, out: &mut [i16]) -> (usize, bool) {
    let shift = 32 - h.bits_stored as u32;
    let signed = h.pixel_representation == 1;
    let (slope, intercept) = (h.rescale_slope, h.rescale_intercept);
    let integral = slope == 1.0 && intercept.fract() == 0.0 && intercept.abs() < 1e6;
    let mut clamped = 0usize;
    let mut put = |o: &mut i16, s: i32| {
        let v = if integral {
            s + intercept as i32
        } else {
            let f = (s as f64 * slope + intercept).round();
            if f < i16::MIN as f64 || f > i16::MAX as f64 {
                clamped += 1;
            }
            *o = f.clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            return;
        };
        if v < i16::MIN as i32 || v > i16::MAX as i32 {
            clamped += 1;
        }
        *o = v.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    };
    for (o, r) in out.iter_mut().zip(raw) {
        put(o, stored_value(r, shift, signed));
    }
    (clamped, !(slope.fract() == 0.0 && intercept.fract() == 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bits_stored: u16, signed: bool, bits_allocated: u16) -> SliceHeader {
        SliceHeader {
            path: "x.dcm".into(),
            series_uid: "1.2".into(),
            study_uid: None,
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            rows: 1,
            columns: 2,
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [0.0; 3],
            pixel_spacing: [1.0, 1.0],
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            bits_allocated,
            bits_stored,
            pixel_representation: signed as u16,
            photometric: "MONOCHROME2".into(),
            instance_number: None,
            slice_thickness: None,
        }
    }

    fn hu(bytes: &[u8], h: &SliceHeader) -> (Vec<i16>, usize, bool) {
        let mut out = vec![0i16; bytes.len() / (h.bits_allocated as usize / 8)];
        let (c, r) = to_hu(bytes, h, &mut out);
        (out, c, r)
    }

    #[test]
    fn twelve_bit_signed_values_are_sign_extended() {
        // 0x0FFF in 12 bits signed is -1; 0x0800 is -2048; high garbage bits are dropped.
        let bytes = [0xFF, 0x0F, 0x00, 0xF8];
        assert_eq!(hu(&bytes, &header(12, true, 16)).0, vec![-1, -2048]);
        assert_eq!(hu(&bytes, &header(12, false, 16)).0, vec![4095, 2048]);
        assert_eq!(hu(&bytes, &header(16, true, 16)).0, vec![4095, -2048]);
        assert_eq!(hu(&[0xFF, 0x01], &header(8, true, 8)).0, vec![-1, 1]);
    }

    #[test]
    fn rescale_saturates_and_flags_rounding() {
        let mut h = header(16, false, 16);
        h.rescale_intercept = -1024.0;
        // 40000 + (-1024) does not fit int16.
        let bytes: Vec<u8> = [0u16, 40000, 3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(hu(&bytes, &h), (vec![-1024, i16::MAX, -1021], 1, false));
        h.rescale_intercept = 0.0;
        h.rescale_slope = 0.5;
        assert_eq!(hu(&3u16.to_le_bytes(), &h), (vec![2], 0, true));
    }

    use crate::dicom_series::jpeg_lossless::encoder::{encode, Opts, Rng, Table};
    use crate::dicom_writer::{write_ct_series, CtSeriesSpec, PixelStorage};
    use crate::{Geometry, Volume};
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

    const SV1: &str = "1.2.840.10008.1.2.4.70";
    const ANY_SV: &str = "1.2.840.10008.1.2.4.57";

    /// A 3-slice series of 13 x 11 with HU from -1024 to 3071 (stored signed or unsigned
    /// with intercept -1024); the paths of its files.
    fn plain_series(dir: &Path, storage: PixelStorage) -> Vec<std::path::PathBuf> {
        let dims = [13, 11, 3];
        let data = (0..dims[0] * dims[1] * dims[2])
            .map(|n| [-1024, 3071, ((n * 7919) % 4096) as i16 - 1024][n % 3])
            .collect();
        let v = Volume::from_vec(dims, data, Geometry::identity()).unwrap();
        let mut spec = CtSeriesSpec::new(
            "1.2.826.0.1.3680043.8.498.70",
            "1.2.826.0.1.3680043.8.498.71",
        );
        spec.storage = storage;
        spec.rescale_intercept = -1024.0;
        write_ct_series(&v, dir, &spec).unwrap()
    }

    /// Copy `plain` to `to` with its PixelData as one JPEG Lossless frame (transfer syntax
    /// `uid`) in two fragments; `mangle` may damage the stream first.
    fn jpeg_copy(plain: &Path, to: &Path, uid: &str, o: &Opts, mangle: impl Fn(&mut Vec<u8>)) {
        let mut file = dicom_object::open_file(plain).unwrap();
        let size = |tag| file.element(tag).unwrap().to_int::<usize>().unwrap();
        let (rows, columns) = (size(tags::ROWS), size(tags::COLUMNS));
        let bytes = file.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        let words: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let mut stream = encode(&words, rows, columns, o);
        mangle(&mut stream);
        if stream.len() % 2 == 1 {
            stream.push(0);
        }
        let half = stream.len() / 4 * 2;
        let fragments = vec![stream[..half].to_vec(), stream[half..].to_vec()];
        let value: dicom_object::mem::InMemElement = DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(Vec::new(), fragments)),
        );
        file.put(value);
        let ts = TransferSyntaxRegistry.get(uid).unwrap();
        file.update_meta(|m| m.set_transfer_syntax(ts));
        file.write_to_file(to).unwrap();
    }

    /// Our JPEG Lossless path gives the HU of the uncompressed original, for signed and
    /// unsigned storage, predictors 1, 4 and 6, a generated table and restart intervals; and
    /// the same HU as the general dicom-pixeldata path where that one decodes correctly.
    #[test]
    fn jpeg_lossless_slices_read_like_their_uncompressed_originals() {
        let tmp = tempfile::tempdir().unwrap();
        for storage in [PixelStorage::Signed, PixelStorage::Unsigned] {
            let dir = tmp.path().join(format!("{storage:?}"));
            let plain = plain_series(&dir, storage);
            let cases = [
                (SV1, Opts::new(16, 1)),
                (
                    ANY_SV,
                    Opts {
                        restart_rows: 2,
                        ..Opts::new(16, 6)
                    },
                ),
                (
                    ANY_SV,
                    Opts {
                        table: Table::random(&mut Rng(5)),
                        ..Opts::new(16, 4)
                    },
                ),
            ];
            for (k, (uid, o)) in cases.iter().enumerate() {
                let copy = tmp.path().join(format!("{storage:?}-{k}.dcm"));
                jpeg_copy(&plain[k], &copy, uid, o, |_| {});
                let want = read_slice(&plain[k]).unwrap();
                let got = read_slice(&copy).unwrap();
                assert_eq!(got.header.transfer_syntax, *uid);
                assert_eq!(
                    (&got.hu, got.clamped, got.rounded),
                    (&want.hu, want.clamped, want.rounded)
                );
                assert!(got.hu.contains(&-1024) && got.hu.contains(&3071));
                if o.restart_rows == 0 {
                    let obj = dicom_object::open_file(&copy).unwrap();
                    let decoded = obj.decode_pixel_data().unwrap();
                    let mut hu = vec![0i16; got.hu.len()];
                    to_hu(decoded.frame_data(0).unwrap(), &got.header, &mut hu);
                    assert_eq!(hu, got.hu, "{storage:?} case {k}: dicom-pixeldata differs");
                }
            }
        }
    }

    /// Damaged JPEG Lossless PixelData is a typed error naming the file: a cut scan is
    /// Truncated; a marker inside the scan, an unknown Huffman code or a frame size that
    /// disagrees with Rows x Columns is Decode.
    #[test]
    fn damaged_jpeg_lossless_pixel_data_is_a_typed_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = plain_series(&tmp.path().join("plain"), PixelStorage::Signed);
        let sos_end = |s: &Vec<u8>| s.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap() + 10;
        type Mangle = fn(&mut Vec<u8>);
        let manglers: [(&str, Mangle); 4] = [
            ("cut", |s| s.truncate(s.len() / 2)),
            ("marker", |s| {
                let at = s.len() - 20;
                s.splice(at..at, [0xFF, 0xD5]).for_each(drop);
            }),
            ("code", |s| {
                let at = s.len() - 30;
                s.splice(at..at, [0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00])
                    .for_each(drop);
            }),
            ("size", |s| {
                let sof = s.windows(2).position(|w| w == [0xFF, 0xC3]).unwrap();
                s[sof + 6] += 1;
            }),
        ];
        for (name, mangle) in manglers {
            let copy = tmp.path().join(format!("{name}.dcm"));
            jpeg_copy(&plain[0], &copy, SV1, &Opts::new(16, 1), |s| {
                assert!(s.len() > sos_end(s) + 40);
                mangle(s)
            });
            let err = read_slice(&copy).unwrap_err();
            assert_eq!(err.path(), copy, "{name}");
            let text = err.to_string();
            match name {
                "cut" => assert!(matches!(err, DicomReadError::Truncated { .. }), "{text}"),
                _ => assert!(
                    matches!(err, DicomReadError::Decode { .. }),
                    "{name}: {text}"
                ),
            }
            assert!(text.contains("JPEG Lossless"), "{text}");
        }
    }
}
