//! Writes a [`Volume`] of HU values as a series of CT Image Storage files (one slice each).
//!
//! Used by tests and by the synthetic cohort to produce competition-like studies, including
//! their quirks: file numbers that run superior-to-inferior or the reverse, unsigned storage
//! with a rescale intercept. No patient identifiers are written: PatientName and PatientID
//! are present (CT requires them) but empty.

use crate::dicom_frame::DicomFrame;
use crate::geometry::dot;
use crate::volume::Volume;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Which physical end of the stack gets the first file number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileOrder {
    /// File `first_number` is the most superior slice (most competition studies).
    SuperiorFirst,
    /// File `first_number` is the most inferior slice.
    InferiorFirst,
}

/// How stored pixel values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PixelStorage {
    /// PixelRepresentation 1 (two's complement int16).
    Signed,
    /// PixelRepresentation 0 (uint16); needs an intercept that makes every value >= 0.
    Unsigned,
}

/// Transfer syntax of the written files (both uncompressed little endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteSyntax {
    ExplicitVrLittleEndian,
    ImplicitVrLittleEndian,
}

/// Everything about the written series except its voxels and geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct CtSeriesSpec {
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference_uid: String,
    /// SOP Instance UIDs are `<sop_uid_root>.<file number>`.
    pub sop_uid_root: String,
    pub order: FileOrder,
    /// Number of the first file (`<n>.dcm`); the competition starts at 1.
    pub first_number: u32,
    pub storage: PixelStorage,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub syntax: WriteSyntax,
    /// Patient identifiers to write (only to test that none of them leaks: a PHI canary);
    /// `None` leaves them empty.
    pub identity: Option<PatientIdentity>,
}

/// Identifying attributes of a series: PatientName, PatientID, PatientBirthDate (YYYYMMDD),
/// InstitutionName.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientIdentity {
    pub name: String,
    pub id: String,
    pub birth_date: String,
    pub institution: String,
}

impl CtSeriesSpec {
    /// Signed storage, slope 1, intercept 0, superior first, explicit VR LE, files from 1.
    pub fn new(study_uid: &str, series_uid: &str) -> Self {
        CtSeriesSpec {
            study_uid: study_uid.to_string(),
            series_uid: series_uid.to_string(),
            frame_of_reference_uid: format!("{series_uid}.1"),
            sop_uid_root: format!("{series_uid}.2"),
            order: FileOrder::SuperiorFirst,
            first_number: 1,
            storage: PixelStorage::Signed,
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            syntax: WriteSyntax::ExplicitVrLittleEndian,
            identity: None,
        }
    }
}

/// Errors writing a CT series.
#[derive(Debug, Error)]
pub enum DicomWriteError {
    #[error("UID {uid:?} is not a valid DICOM UID (digits and dots, at most 64 characters)")]
    BadUid { uid: String },
    #[error("rescale slope {0} must be finite and non-zero")]
    BadSlope(f64),
    #[error("slice {slice}: HU value {hu} cannot be stored as {storage:?} with slope {slope} and intercept {intercept}")]
    ValueOutOfRange {
        slice: usize,
        hu: i16,
        storage: PixelStorage,
        slope: f64,
        intercept: f64,
    },
    #[error("volume of {dims:?} voxels exceeds DICOM's 65535 rows/columns")]
    TooLarge { dims: [usize; 3] },
    #[error("{path}: cannot create folder: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: cannot write DICOM file: {message}")]
    Write { path: PathBuf, message: String },
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

/// Format a decimal string (DS): at most 16 characters, rounded to 1e-6.
pub(crate) fn format_ds(v: f64) -> String {
    let mut s = format!("{:.6}", v);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    if s.len() > 16 {
        s = format!("{:.9e}", v);
        s.truncate(16);
    }
    s
}

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|&v| format_ds(v)).collect())
}

fn el(tag: dicom_core::Tag, vr: VR, value: PrimitiveValue) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value)
}

fn text(s: &str) -> PrimitiveValue {
    PrimitiveValue::from(s)
}

/// Write `volume` (HU, int16) into `dir` as `<n>.dcm` files; returns the paths in file-number
/// order. Slice `k` of the volume is the k-th slice along its third axis.
pub fn write_ct_series(
    volume: &Volume<i16>,
    dir: &Path,
    spec: &CtSeriesSpec,
) -> Result<Vec<PathBuf>, DicomWriteError> {
    for uid in [
        &spec.study_uid,
        &spec.series_uid,
        &spec.frame_of_reference_uid,
    ] {
        if !valid_uid(uid) {
            return Err(DicomWriteError::BadUid { uid: uid.clone() });
        }
    }
    let longest_sop = format!(
        "{}.{}",
        spec.sop_uid_root,
        spec.first_number as u64 + volume.dims()[2] as u64
    );
    if !valid_uid(&longest_sop) {
        return Err(DicomWriteError::BadUid { uid: longest_sop });
    }
    if !(spec.rescale_slope.is_finite() && spec.rescale_slope != 0.0) {
        return Err(DicomWriteError::BadSlope(spec.rescale_slope));
    }
    let [nx, ny, nz] = volume.dims();
    if nx > 65535 || ny > 65535 {
        return Err(DicomWriteError::TooLarge {
            dims: volume.dims(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| DicomWriteError::CreateDir {
        path: dir.to_path_buf(),
        cause: source,
    })?;
    let frame = DicomFrame::from_geometry(&volume.geometry);
    let normal = frame.normal();
    // Slice k climbs superior when the slice axis has a positive S (LPS z) component.
    let k_goes_superior = frame.slice_step[2] >= 0.0;
    let superior_first = spec.order == FileOrder::SuperiorFirst;
    let slice_of_file = |f: usize| {
        if k_goes_superior == superior_first {
            nz - 1 - f
        } else {
            f
        }
    };

    let mut paths = Vec::with_capacity(nz);
    for f in 0..nz {
        let k = slice_of_file(f);
        let number = spec.first_number as usize + f;
        let pixels = stored_slice(volume, k, spec)?;
        let position = frame.position(k);
        let sop_uid = format!("{}.{}", spec.sop_uid_root, number);
        let obj = slice_object(
            spec,
            &frame,
            position,
            dot(position, normal),
            number,
            &sop_uid,
            nx,
            ny,
            pixels,
        );
        let ts = match spec.syntax {
            WriteSyntax::ExplicitVrLittleEndian => uids::EXPLICIT_VR_LITTLE_ENDIAN,
            WriteSyntax::ImplicitVrLittleEndian => uids::IMPLICIT_VR_LITTLE_ENDIAN,
        };
        let path = dir.join(format!("{number}.dcm"));
        let werr = |message: String| DicomWriteError::Write {
            path: path.clone(),
            message,
        };
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
            .map_err(|e| werr(e.to_string()))?;
        file.write_to_file(&path).map_err(|e| werr(e.to_string()))?;
        paths.push(path);
    }
    tracing::debug!(dir = %dir.display(), slices = nz, order = ?spec.order, "wrote CT series");
    Ok(paths)
}

/// Stored values of slice `k` as 16-bit words (bit patterns of int16 or uint16).
fn stored_slice(
    volume: &Volume<i16>,
    k: usize,
    spec: &CtSeriesSpec,
) -> Result<Vec<u16>, DicomWriteError> {
    let [nx, ny, _] = volume.dims();
    let plane = &volume.data()[k * nx * ny..(k + 1) * nx * ny];
    let (lo, hi) = match spec.storage {
        PixelStorage::Signed => (i16::MIN as f64, i16::MAX as f64),
        PixelStorage::Unsigned => (0.0, u16::MAX as f64),
    };
    plane
        .iter()
        .map(|&hu| {
            let stored = ((hu as f64 - spec.rescale_intercept) / spec.rescale_slope).round();
            if stored < lo || stored > hi {
                return Err(DicomWriteError::ValueOutOfRange {
                    slice: k,
                    hu,
                    storage: spec.storage,
                    slope: spec.rescale_slope,
                    intercept: spec.rescale_intercept,
                });
            }
            Ok(match spec.storage {
                PixelStorage::Signed => (stored as i16) as u16,
                PixelStorage::Unsigned => stored as u16,
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn slice_object(
    spec: &CtSeriesSpec,
    frame: &DicomFrame,
    position: [f64; 3],
    slice_location: f64,
    number: usize,
    sop_uid: &str,
    nx: usize,
    ny: usize,
    pixels: Vec<u16>,
) -> InMemDicomObject {
    let signed = spec.storage == PixelStorage::Signed;
    let who = |field: fn(&PatientIdentity) -> &String| match &spec.identity {
        Some(p) => text(field(p)),
        None => PrimitiveValue::Empty,
    };
    InMemDicomObject::from_element_iter([
        el(tags::SPECIFIC_CHARACTER_SET, VR::CS, text("ISO_IR 100")),
        el(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::Strs(
                ["ORIGINAL", "PRIMARY", "AXIAL"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        ),
        el(tags::SOP_CLASS_UID, VR::UI, text(uids::CT_IMAGE_STORAGE)),
        el(tags::SOP_INSTANCE_UID, VR::UI, text(sop_uid)),
        el(tags::STUDY_DATE, VR::DA, PrimitiveValue::Empty),
        el(tags::STUDY_TIME, VR::TM, PrimitiveValue::Empty),
        el(tags::ACCESSION_NUMBER, VR::SH, PrimitiveValue::Empty),
        el(tags::MODALITY, VR::CS, text("CT")),
        el(tags::MANUFACTURER, VR::LO, text("flow-imaging")),
        el(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            PrimitiveValue::Empty,
        ),
        el(tags::PATIENT_NAME, VR::PN, who(|p| &p.name)),
        el(tags::PATIENT_ID, VR::LO, who(|p| &p.id)),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, who(|p| &p.birth_date)),
        el(tags::INSTITUTION_NAME, VR::LO, who(|p| &p.institution)),
        el(tags::PATIENT_SEX, VR::CS, PrimitiveValue::Empty),
        el(tags::KVP, VR::DS, PrimitiveValue::Empty),
        el(
            tags::SLICE_THICKNESS,
            VR::DS,
            ds(&[crate::geometry::norm(frame.slice_step)]),
        ),
        el(tags::PATIENT_POSITION, VR::CS, text("HFS")),
        el(tags::STUDY_INSTANCE_UID, VR::UI, text(&spec.study_uid)),
        el(tags::SERIES_INSTANCE_UID, VR::UI, text(&spec.series_uid)),
        el(tags::STUDY_ID, VR::SH, PrimitiveValue::Empty),
        el(tags::SERIES_NUMBER, VR::IS, text("1")),
        el(tags::INSTANCE_NUMBER, VR::IS, text(&number.to_string())),
        el(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&position)),
        el(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&frame.orientation()),
        ),
        el(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            text(&spec.frame_of_reference_uid),
        ),
        el(
            tags::POSITION_REFERENCE_INDICATOR,
            VR::LO,
            PrimitiveValue::Empty,
        ),
        el(tags::SLICE_LOCATION, VR::DS, ds(&[slice_location])),
        el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        el(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            text("MONOCHROME2"),
        ),
        el(tags::ROWS, VR::US, PrimitiveValue::from(ny as u16)),
        el(tags::COLUMNS, VR::US, PrimitiveValue::from(nx as u16)),
        el(tags::PIXEL_SPACING, VR::DS, ds(&frame.pixel_spacing)),
        el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        el(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16)),
        el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16)),
        el(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(if signed { 1u16 } else { 0u16 }),
        ),
        el(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            ds(&[spec.rescale_intercept]),
        ),
        el(tags::RESCALE_SLOPE, VR::DS, ds(&[spec.rescale_slope])),
        el(tags::RESCALE_TYPE, VR::LO, text("HU")),
        el(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        assert_eq!(format_ds(0.7), "0.7");
        assert_eq!(format_ds(-299.20000000000005), "-299.2");
        assert_eq!(format_ds(-0.0000001), "0");
        assert_eq!(format_ds(1.0), "1");
        assert!(format_ds(1.234e20).len() <= 16);
    }

    #[test]
    fn uids_are_validated() {
        assert!(valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(!valid_uid("1.2..3"));
        assert!(!valid_uid("PatientName"));
        assert!(!valid_uid(&"1".repeat(65)));
    }
}
