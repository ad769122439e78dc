//! Decoding one slice's PixelData to Hounsfield units (int16), for native and compressed
//! transfer syntaxes (via dicom-pixeldata).

use super::error::{chain, is_eof, DicomReadError};
use super::header::{header_from_object, open_error, SliceHeader};
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
    let target = out(n).ok_or_else(|| DicomReadError::MixedSeries {
        path: path.to_path_buf(),
        tag: "Rows x Columns (0028,0010/0011)",
        found: format!("{}x{}", header.rows, header.columns),
        expected: "the size of the series' first slice".into(),
        first: path.to_path_buf(),
    })?;
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
/// `bytes` into `out`; returns (saturated count, whether rounding happened).
pub(crate) fn to_hu(bytes: &[u8], h: &SliceHeader, out: &mut [i16]) -> (usize, bool) {
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
    match h.bits_allocated {
        8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                put(o, stored_value(b as u32, shift, signed));
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                put(
                    o,
                    stored_value(u16::from_le_bytes([c[0], c[1]]) as u32, shift, signed),
                );
            }
        }
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
}
