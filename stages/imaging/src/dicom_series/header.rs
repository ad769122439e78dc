//! Per-file header facts, read without touching PixelData (the series is sorted first).

use super::error::{chain, is_eof, DicomReadError};
use super::prescan::load_file;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use std::path::{Path, PathBuf};

/// Largest rows/columns accepted from a header.
pub const MAX_IN_PLANE: u32 = 16384;

/// The header facts of one slice file that the reader needs (no patient identifiers).
#[derive(Debug, Clone, PartialEq)]
pub struct SliceHeader {
    pub path: PathBuf,
    pub series_uid: String,
    pub study_uid: Option<String>,
    pub transfer_syntax: String,
    pub rows: u32,
    pub columns: u32,
    pub orientation: [f64; 6],
    pub position: [f64; 3],
    /// `[between rows, between columns]` mm.
    pub pixel_spacing: [f64; 2],
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub pixel_representation: u16,
    pub photometric: String,
    pub instance_number: Option<i64>,
    pub slice_thickness: Option<f64>,
}

/// Transfer syntaxes the reader decodes: implicit/explicit VR LE, deflate, JPEG baseline,
/// extended, lossless (.57, .70), JPEG 2000 (.90, .91) and RLE.
pub const SUPPORTED_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
];

pub(crate) fn open_error(path: &Path, e: dicom_object::ReadError) -> DicomReadError {
    if is_eof(&e) {
        DicomReadError::Truncated {
            path: path.to_path_buf(),
            detail: chain(&e),
        }
    } else if let dicom_object::ReadError::OpenFile { source, .. } = e {
        DicomReadError::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    } else {
        DicomReadError::NotDicom {
            path: path.to_path_buf(),
            detail: chain(&e),
        }
    }
}

/// Read the header of `path` (stopping before PixelData).
pub fn read_slice_header(path: &Path) -> Result<SliceHeader, DicomReadError> {
    let file = load_file(path)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(file.without_preamble())
        .map_err(|e| open_error(path, e))?;
    header_from_object(path, &obj)
}

pub(crate) fn header_from_object(
    path: &Path,
    obj: &DefaultDicomObject,
) -> Result<SliceHeader, DicomReadError> {
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let f = Fields { path, obj };
    let rows = f.uint(tags::ROWS, "Rows (0028,0010)")?;
    let columns = f.uint(tags::COLUMNS, "Columns (0028,0011)")?;
    for (v, tag) in [(rows, "Rows (0028,0010)"), (columns, "Columns (0028,0011)")] {
        if v == 0 || v > MAX_IN_PLANE as u64 {
            return Err(DicomReadError::AbsurdDims {
                path: path.to_path_buf(),
                detail: format!("{tag} is {v} (accepted 1..={MAX_IN_PLANE})"),
            });
        }
    }
    let samples = f
        .opt_uint(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel (0028,0002)")?
        .unwrap_or(1);
    if samples != 1 {
        return Err(f.bad(
            "SamplesPerPixel (0028,0002)",
            samples.to_string(),
            "only single-sample (grey) images are CT",
        ));
    }
    if let Some(frames) = f.opt_str(tags::NUMBER_OF_FRAMES)? {
        if frames.trim().parse::<u32>() != Ok(1) {
            return Err(f.bad(
                "NumberOfFrames (0028,0008)",
                frames,
                "multi-frame images are not supported",
            ));
        }
    }
    let photometric = f.req_str(
        tags::PHOTOMETRIC_INTERPRETATION,
        "PhotometricInterpretation (0028,0004)",
    )?;
    if photometric != "MONOCHROME1" && photometric != "MONOCHROME2" {
        return Err(f.bad(
            "PhotometricInterpretation (0028,0004)",
            photometric,
            "expected MONOCHROME1 or MONOCHROME2",
        ));
    }
    let bits_allocated = f.uint(tags::BITS_ALLOCATED, "BitsAllocated (0028,0100)")? as u16;
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(f.bad(
            "BitsAllocated (0028,0100)",
            bits_allocated.to_string(),
            "expected 8 or 16",
        ));
    }
    let bits_stored = f
        .opt_uint(tags::BITS_STORED, "BitsStored (0028,0101)")?
        .unwrap_or(bits_allocated as u64) as u16;
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(f.bad(
            "BitsStored (0028,0101)",
            bits_stored.to_string(),
            "must be 1..=BitsAllocated",
        ));
    }
    let pixel_representation = f.uint(
        tags::PIXEL_REPRESENTATION,
        "PixelRepresentation (0028,0103)",
    )? as u16;
    if pixel_representation > 1 {
        return Err(f.bad(
            "PixelRepresentation (0028,0103)",
            pixel_representation.to_string(),
            "expected 0 or 1",
        ));
    }
    let orientation: [f64; 6] = f.floats(
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient (0020,0037)",
    )?;
    check_orientation(&f, &orientation)?;
    let position: [f64; 3] = f.floats(
        tags::IMAGE_POSITION_PATIENT,
        "ImagePositionPatient (0020,0032)",
    )?;
    let pixel_spacing: [f64; 2] = f.floats(tags::PIXEL_SPACING, "PixelSpacing (0028,0030)")?;
    if pixel_spacing.iter().any(|&s| !(s > 0.0 && s < 1e3)) {
        return Err(f.bad(
            "PixelSpacing (0028,0030)",
            format!("{pixel_spacing:?}"),
            "must be positive and below 1000 mm",
        ));
    }
    let rescale_slope = f
        .opt_float(tags::RESCALE_SLOPE, "RescaleSlope (0028,1053)")?
        .unwrap_or(1.0);
    if rescale_slope == 0.0 {
        return Err(f.bad("RescaleSlope (0028,1053)", "0".into(), "must be non-zero"));
    }
    let rescale_intercept = f
        .opt_float(tags::RESCALE_INTERCEPT, "RescaleIntercept (0028,1052)")?
        .unwrap_or(0.0);
    Ok(SliceHeader {
        path: path.to_path_buf(),
        series_uid: f.req_str(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID (0020,000E)")?,
        study_uid: f.opt_str(tags::STUDY_INSTANCE_UID)?,
        transfer_syntax,
        rows: rows as u32,
        columns: columns as u32,
        orientation,
        position,
        pixel_spacing,
        rescale_slope,
        rescale_intercept,
        bits_allocated,
        bits_stored,
        pixel_representation,
        photometric,
        instance_number: f
            .opt_str(tags::INSTANCE_NUMBER)?
            .and_then(|s| s.trim().parse::<i64>().ok()),
        slice_thickness: f
            .opt_float(tags::SLICE_THICKNESS, "SliceThickness (0018,0050)")
            .ok()
            .flatten(),
    })
}

fn check_orientation(f: &Fields, o: &[f64; 6]) -> Result<(), DicomReadError> {
    let r = [o[0], o[1], o[2]];
    let c = [o[3], o[4], o[5]];
    let n = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let d = r[0] * c[0] + r[1] * c[1] + r[2] * c[2];
    if (n(r) - 1.0).abs() > 1e-3 || (n(c) - 1.0).abs() > 1e-3 || d.abs() > 1e-3 {
        return Err(f.bad(
            "ImageOrientationPatient (0020,0037)",
            format!("{o:?}"),
            "row and column cosines must be orthonormal",
        ));
    }
    Ok(())
}

/// Typed access to header elements with errors naming file and tag.
struct Fields<'a> {
    path: &'a Path,
    obj: &'a DefaultDicomObject,
}

impl Fields<'_> {
    fn bad(&self, tag: &'static str, value: String, reason: &str) -> DicomReadError {
        DicomReadError::BadTag {
            path: self.path.to_path_buf(),
            tag,
            value,
            reason: reason.to_string(),
        }
    }

    fn missing(&self, tag: &'static str) -> DicomReadError {
        DicomReadError::MissingTag {
            path: self.path.to_path_buf(),
            tag,
        }
    }

    fn opt_str(&self, tag: Tag) -> Result<Option<String>, DicomReadError> {
        Ok(self
            .obj
            .get(tag)
            .and_then(|e| e.value().to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    fn req_str(&self, tag: Tag, name: &'static str) -> Result<String, DicomReadError> {
        self.opt_str(tag)?.ok_or_else(|| self.missing(name))
    }

    fn opt_uint(&self, tag: Tag, name: &'static str) -> Result<Option<u64>, DicomReadError> {
        match self.obj.get(tag) {
            None => Ok(None),
            Some(e) if e.value().multiplicity() == 0 => Ok(None),
            Some(e) => e.value().to_int::<u64>().map(Some).map_err(|err| {
                self.bad(
                    name,
                    format!("{:?}", e.value().to_str().unwrap_or_default()),
                    &err.to_string(),
                )
            }),
        }
    }

    fn uint(&self, tag: Tag, name: &'static str) -> Result<u64, DicomReadError> {
        self.opt_uint(tag, name)?.ok_or_else(|| self.missing(name))
    }

    fn opt_float(&self, tag: Tag, name: &'static str) -> Result<Option<f64>, DicomReadError> {
        match self.obj.get(tag) {
            None => Ok(None),
            Some(e) if e.value().multiplicity() == 0 => Ok(None),
            Some(e) => match e.value().to_float64() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                Ok(v) => Err(self.bad(name, v.to_string(), "not finite")),
                Err(err) => Err(self.bad(
                    name,
                    e.value().to_str().unwrap_or_default().to_string(),
                    &err.to_string(),
                )),
            },
        }
    }

    fn floats<const N: usize>(
        &self,
        tag: Tag,
        name: &'static str,
    ) -> Result<[f64; N], DicomReadError> {
        let e = self.obj.get(tag).ok_or_else(|| self.missing(name))?;
        let text = || e.value().to_str().unwrap_or_default().to_string();
        let v = e
            .value()
            .to_multi_float64()
            .map_err(|err| self.bad(name, text(), &err.to_string()))?;
        if v.len() != N {
            return Err(self.bad(
                name,
                text(),
                &format!("expected {N} values, found {}", v.len()),
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(self.bad(name, text(), "not finite"));
        }
        let mut out = [0.0; N];
        out.copy_from_slice(&v);
        Ok(out)
    }
}
