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
    let file = load_file(path)?;
    let obj = OpenFileOptions::new().from_reader(file.without_preamble()).map_err(|e| open_error(path, e))?;
    drop(file);
    let header = header_from_object(path, &obj)?;
    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or(DicomReadError::MissingTag { path: path.to_path_buf(), tag: "PixelData (7FE0,0010)" })?;
    let n = header.rows as usize * header.columns as usize;
    let bytes_per = header.bits_allocated as usize / 8;
    if header.transfer_syntax == "1.2.840.10008.1.2" || header.transfer_syntax == "1.2.840.10008.1.2.1" {
        let have = pixel.value().to_bytes().map(|b| b.len()).unwrap_or(0);
        if have < n * bytes_per {
            return Err(DicomReadError::Truncated {
                path: path.to_path_buf(),
                detail: format!("PixelData (7FE0,0010) holds {have} bytes, Rows x Columns need {}", n * bytes_per),
            });
        }
    }
    let decoded = obj.decode_pixel_data().map_err(|e| {
        if is_eof(&e) {
            DicomReadError::Truncated { path: path.to_path_buf(), detail: chain(&e) }
        } else {
            DicomReadError::Decode { path: path.to_path_buf(), detail: chain(&e) }
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
    let frame = decoded
        .frame_data(0)
        .map_err(|e| DicomReadError::Decode { path: path.to_path_buf(), detail: chain(&e) })?;
    if frame.len() < n * bytes_per {
        return Err(DicomReadError::Truncated {
            path: path.to_path_buf(),
            detail: format!("decoded PixelData (7FE0,0010) holds {} bytes, need {}", frame.len(), n * bytes_per),
        });
    }
    let stored = stored_values(&frame[..n * bytes_per], &header);
    let (hu, clamped, rounded) = rescale_to_hu(&stored, header.rescale_slope, header.rescale_intercept);
    Ok(SliceImage { header, hu, clamped, rounded })
}

/// Stored pixel values as integers: little-endian words, masked to BitsStored, sign-extended
/// when PixelRepresentation is 1.
pub(crate) fn stored_values(bytes: &[u8], h: &SliceHeader) -> Vec<i32> {
    let shift = (32 - h.bits_stored as u32) as i32;
    let signed = h.pixel_representation == 1;
    let fix = |raw: u32| -> i32 {
        let v = raw << shift;
        if signed {
            (v as i32) >> shift
        } else {
            (v >> shift) as i32
        }
    };
    match h.bits_allocated {
        8 => bytes.iter().map(|&b| fix(b as u32)).collect(),
        _ => bytes.chunks_exact(2).map(|c| fix(u16::from_le_bytes([c[0], c[1]]) as u32)).collect(),
    }
}

/// HU = stored * slope + intercept, rounded and saturated to int16.
pub(crate) fn rescale_to_hu(stored: &[i32], slope: f64, intercept: f64) -> (Vec<i16>, usize, bool) {
    let mut clamped = 0;
    let integral = slope.fract() == 0.0 && intercept.fract() == 0.0;
    let hu = stored
        .iter()
        .map(|&s| {
            let v = if integral && slope == 1.0 { (s as f64) + intercept } else { s as f64 * slope + intercept };
            let r = v.round();
            if r < i16::MIN as f64 || r > i16::MAX as f64 {
                clamped += 1;
            }
            r.clamp(i16::MIN as f64, i16::MAX as f64) as i16
        })
        .collect();
    (hu, clamped, !integral)
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

    #[test]
    fn twelve_bit_signed_values_are_sign_extended() {
        // 0x0FFF in 12 bits signed is -1; 0x0800 is -2048; high garbage bits are dropped.
        let bytes = [0xFF, 0x0F, 0x00, 0xF8];
        assert_eq!(stored_values(&bytes, &header(12, true, 16)), vec![-1, -2048]);
        assert_eq!(stored_values(&bytes, &header(12, false, 16)), vec![4095, 2048]);
        assert_eq!(stored_values(&bytes, &header(16, true, 16)), vec![4095, -2048]);
        assert_eq!(stored_values(&[0xFF, 0x01], &header(8, true, 8)), vec![-1, 1]);
    }

    #[test]
    fn rescale_saturates_and_flags_rounding() {
        let (hu, clamped, rounded) = rescale_to_hu(&[0, 40000, 3], 1.0, -1024.0);
        assert_eq!(hu, vec![-1024, i16::MAX, -1021]);
        assert_eq!((clamped, rounded), (1, false));
        let (hu, _, rounded) = rescale_to_hu(&[3], 0.5, 0.0);
        assert_eq!((hu, rounded), (vec![2], true));
    }
}
