//! NIfTI-1 (`.nii`, `.nii.gz`) reading and writing of [`Volume`]s through the `nifti` crate.
//!
//! Written files carry the geometry twice, as dcm2niix does: sform and qform with code 1
//! (scanner anatomical). On reading, sform wins over qform (NIfTI's rule). Header dimensions
//! are checked before the voxel buffer is allocated.

use crate::geometry::Geometry;
use crate::volume::{check_dims, AnyVolume, Volume, Voxel};
use nalgebra::Matrix4;
use ndarray::{ArrayView3, ShapeBuilder};
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions, XForm};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Errors reading or writing a NIfTI file; each names the file.
#[derive(Debug, Error)]
pub enum NiftiIoError {
    #[error("{path}: cannot access file: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: invalid NIfTI header: {cause}")]
    Header {
        path: PathBuf,
        cause: nifti::NiftiError,
    },
    #[error("{path}: header dim {dim:?} is absurd (need 3 spatial axes, 1..=65536 each, at most 2^31 voxels, no 4th axis > 1)")]
    AbsurdDims { path: PathBuf, dim: [u16; 8] },
    #[error("{path}: header datatype code {code} is not supported")]
    UnsupportedDatatype { path: PathBuf, code: i16 },
    #[error("{path}: file holds {got} bytes but the header needs {expected} (truncated)")]
    Truncated {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("{path}: header affine is degenerate or not finite")]
    BadAffine { path: PathBuf },
    #[error("{path}: cannot read voxel data: {cause}")]
    Data {
        path: PathBuf,
        cause: nifti::NiftiError,
    },
    #[error("{path}: {cause}")]
    Volume {
        path: PathBuf,
        cause: crate::volume::VolumeError,
    },
    #[error("{path}: inconsistent NIfTI header: {detail}")]
    Inconsistent { path: PathBuf, detail: String },
    #[error("{path}: file name must end in .nii or .nii.gz")]
    BadExtension { path: PathBuf },
}

/// Element types that map to a NIfTI datatype for writing.
pub trait NiftiVoxel: Voxel + nifti::DataElement + bytemuck::Pod {}
impl NiftiVoxel for i16 {}
impl NiftiVoxel for u8 {}
impl NiftiVoxel for f32 {}

fn is_gz(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".nii.gz")
}

/// Read a NIfTI-1 file as an int16, uint8 or float32 volume (other datatypes, and any file
/// with a non-identity scl_slope/scl_inter, become float32 with the scaling applied).
pub fn read_nifti(path: &Path) -> Result<AnyVolume, NiftiIoError> {
    let p = || path.to_path_buf();
    let name = path.to_string_lossy();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        return Err(NiftiIoError::BadExtension { path: p() });
    }
    let header = NiftiHeader::from_file(path).map_err(|source| match source {
        nifti::NiftiError::Io(source) => NiftiIoError::Io {
            path: p(),
            cause: source,
        },
        source => NiftiIoError::Header {
            path: p(),
            cause: source,
        },
    })?;
    let dims = checked_dims(&header).ok_or(NiftiIoError::AbsurdDims {
        path: p(),
        dim: header.dim,
    })?;
    let dtype = header
        .data_type()
        .ok()
        .filter(|t| {
            !matches!(
                t,
                NiftiType::Rgb24
                    | NiftiType::Rgba32
                    | NiftiType::Complex64
                    | NiftiType::Complex128
                    | NiftiType::Complex256
                    | NiftiType::Float128
            )
        })
        .ok_or(NiftiIoError::UnsupportedDatatype {
            path: p(),
            code: header.datatype,
        })?;
    if header.bitpix as usize != 8 * dtype.size_of() {
        return Err(NiftiIoError::Inconsistent {
            path: p(),
            detail: format!(
                "bitpix {} but datatype {:?} has {} bits per voxel",
                header.bitpix,
                dtype,
                8 * dtype.size_of()
            ),
        });
    }
    if let Some(detail) = qform_problem(&header) {
        return Err(NiftiIoError::Inconsistent { path: p(), detail });
    }
    let n_voxels = (dims[0] * dims[1] * dims[2]) as u64;
    if !is_gz(path) {
        let expected = header.vox_offset.max(352.0) as u64 + n_voxels * dtype.size_of() as u64;
        let got = std::fs::metadata(path)
            .map_err(|source| NiftiIoError::Io {
                path: p(),
                cause: source,
            })?
            .len();
        if got < expected {
            return Err(NiftiIoError::Truncated {
                path: p(),
                expected,
                got,
            });
        }
    }
    let geometry = header_geometry(&header).ok_or(NiftiIoError::BadAffine { path: p() })?;
    // The nifti crate panics on some inconsistencies ("Inconsistent raw data size"); the
    // checks above catch the known ones, this any other: a bad file is an error, never a crash.
    let read =
        std::panic::catch_unwind(|| ReaderOptions::new().read_file(path)).map_err(|panic| {
            NiftiIoError::Inconsistent {
                path: p(),
                detail: format!("the NIfTI reader gave up: {}", panic_text(&*panic)),
            }
        })?;
    let obj = read.map_err(|source| match source {
        nifti::NiftiError::IncompatibleLength(got, expected) => NiftiIoError::Truncated {
            path: p(),
            expected: expected as u64,
            got: got as u64,
        },
        source => NiftiIoError::Data {
            path: p(),
            cause: source,
        },
    })?;
    let volume = obj.into_volume();
    let data_err = |source| NiftiIoError::Data {
        path: p(),
        cause: source,
    };
    let scaled = header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0);
    let wrap = |source| NiftiIoError::Volume {
        path: p(),
        cause: source,
    };
    let out = match (dtype, scaled) {
        (NiftiType::Int16, false) => AnyVolume::I16(
            Volume::from_vec(
                dims,
                volume.into_nifti_typed_data::<i16>().map_err(data_err)?,
                geometry,
            )
            .map_err(wrap)?,
        ),
        (NiftiType::Uint8, false) => AnyVolume::U8(
            Volume::from_vec(
                dims,
                volume.into_nifti_typed_data::<u8>().map_err(data_err)?,
                geometry,
            )
            .map_err(wrap)?,
        ),
        _ => {
            // Fortran-ordered array: memory order is x fastest, as ours.
            let arr = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                volume.into_ndarray::<f32>()
            }))
            .map_err(|panic| NiftiIoError::Inconsistent {
                path: p(),
                detail: format!("the NIfTI reader gave up: {}", panic_text(&*panic)),
            })?
            .map_err(data_err)?;
            let (data, _) = arr.into_raw_vec_and_offset();
            AnyVolume::F32(Volume::from_vec(dims, data, geometry).map_err(wrap)?)
        }
    };
    // The file's own name only: the folders above it may name a patient.
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    tracing::debug!(file = %file, dims = ?dims, dtype = out.dtype(), "read NIfTI");
    Ok(out)
}

/// Spatial dimensions from a header, `None` when absurd (checked before any allocation).
fn checked_dims(h: &NiftiHeader) -> Option<[usize; 3]> {
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return None;
    }
    let mut dims = [1u64; 3];
    for a in 0..3 {
        if a < nd as usize {
            let d = h.dim[a + 1];
            if d < 1 || d > i16::MAX as u16 {
                return None;
            }
            dims[a] = d as u64;
        }
    }
    if (4..=nd as usize).any(|a| h.dim[a] != 1) {
        return None;
    }
    check_dims(dims).ok()
}

/// What would make the nifti crate's qform panic, when the qform is the one used (sform code
/// 0, qform code > 0): a negative spacing, qfac (pixdim[0]) not +-1, or quaternion parameters
/// that are not part of a unit quaternion.
fn qform_problem(h: &NiftiHeader) -> Option<String> {
    if h.sform_code != 0 || h.qform_code == 0 {
        return None;
    }
    if h.pixdim[1..4].iter().any(|d| !(d.is_finite() && *d >= 0.0)) {
        return Some(format!(
            "qform spacing {:?} is not positive",
            &h.pixdim[1..4]
        ));
    }
    if h.pixdim[0] != 1.0 && h.pixdim[0] != -1.0 {
        return Some(format!("qfac (pixdim[0]) is {}, not 1 or -1", h.pixdim[0]));
    }
    let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
    let norm = b * b + c * c + d * d;
    if !(norm.is_finite() && norm <= 1.0 + 1e-6) {
        return Some(format!(
            "quaternion (b, c, d) = ({b}, {c}, {d}) is not part of a unit quaternion"
        ));
    }
    None
}

/// NIfTI's "method 1" affine (no sform, no qform): pixdim spacing with the x axis flipped,
/// centred on the volume, as the nifti crate computes it, but for 1- and 2-D headers too (the
/// crate indexes three axes and panics on fewer; found by the fuzzer).
fn base_affine(h: &NiftiHeader) -> Matrix4<f64> {
    let nd = (h.dim[0] as usize).clamp(0, 7);
    let axis = |a: usize| -> (f64, f64) {
        if a < nd {
            (h.dim[a + 1] as f64, h.pixdim[a + 1] as f64)
        } else {
            (1.0, 1.0)
        }
    };
    let ((nx, sx), (ny, sy), (nz, sz)) = (axis(0), axis(1), axis(2));
    let s = [-sx, sy, sz];
    let o = [(nx - 1.0) / 2.0, (ny - 1.0) / 2.0, (nz - 1.0) / 2.0];
    let mut m = Matrix4::identity();
    for a in 0..3 {
        m[(a, a)] = s[a];
        m[(a, 3)] = -o[a] * s[a];
    }
    m
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Geometry from sform (code > 0), else qform (code > 0), else pixdim alone.
fn header_geometry(h: &NiftiHeader) -> Option<Geometry> {
    let m: Matrix4<f64> = if h.sform_code == 0 && h.qform_code == 0 {
        base_affine(h)
    } else {
        h.affine::<f64>()
    };
    let mut a = [[0.0; 4]; 4];
    for (r, row) in a.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = m[(r, c)];
        }
    }
    Geometry::from_affine(&a)
}

static PARTIAL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write a volume as NIfTI-1 (`.nii` or `.nii.gz` by the file name), qform and sform set to
/// its geometry with code 1 (scanner). The file appears atomically (written then renamed).
pub fn write_nifti<T: NiftiVoxel>(volume: &Volume<T>, path: &Path) -> Result<(), NiftiIoError> {
    let p = || path.to_path_buf();
    let name = path.to_string_lossy();
    let gz = is_gz(path);
    if !(gz || name.ends_with(".nii")) {
        return Err(NiftiIoError::BadExtension { path: p() });
    }
    let header = volume_header(&volume.geometry);
    let [nx, ny, nz] = volume.dims();
    let view = ArrayView3::from_shape((nx, ny, nz).f(), volume.data())
        .map_err(|_| NiftiIoError::BadAffine { path: p() })?;
    // The nifti writer rewrites unusual extensions (e.g. dots from UIDs in the stem), so write
    // to a plain temporary name in the same folder and rename.
    let tmp_name = format!(
        ".flow-partial-{}-{}.{}",
        std::process::id(),
        PARTIAL_COUNTER.fetch_add(1, Ordering::Relaxed),
        if gz { "nii.gz" } else { "nii" }
    );
    let tmp = path.with_file_name(tmp_name);
    let result = WriterOptions::new(&tmp)
        .reference_header(&header)
        .write_nifti(&view);
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(match source {
            nifti::NiftiError::Io(source) => NiftiIoError::Io {
                path: p(),
                cause: source,
            },
            source => NiftiIoError::Data {
                path: p(),
                cause: source,
            },
        });
    }
    std::fs::rename(&tmp, path).map_err(|source| NiftiIoError::Io {
        path: p(),
        cause: source,
    })?;
    tracing::debug!(path = %path.display(), dims = ?volume.dims(), dtype = T::NAME, "wrote NIfTI");
    Ok(())
}

/// Write whichever element type the volume has.
pub fn write_any_nifti(volume: &AnyVolume, path: &Path) -> Result<(), NiftiIoError> {
    match volume {
        AnyVolume::I16(v) => write_nifti(v, path),
        AnyVolume::U8(v) => write_nifti(v, path),
        AnyVolume::F32(v) => write_nifti(v, path),
    }
}

/// A header carrying `g` in both sform and qform (code 1), spacing in mm.
fn volume_header(g: &Geometry) -> NiftiHeader {
    let a = g.affine();
    let m = Matrix4::from_fn(|r, c| a[r][c]);
    let mut h = NiftiHeader {
        xyzt_units: 2,
        ..NiftiHeader::default()
    };
    h.set_sform(&m, XForm::ScannerAnat);
    h.set_qform(&m, XForm::ScannerAnat);
    h.pixdim[1] = g.spacing[0] as f32;
    h.pixdim[2] = g.spacing[1] as f32;
    h.pixdim[3] = g.spacing[2] as f32;
    let mut descrip = b"flow-imaging".to_vec();
    descrip.resize(80, 0);
    h.descrip = descrip;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer: header inconsistencies the nifti crate panics on are errors.
    #[test]
    fn headers_the_nifti_crate_would_panic_on_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::from_vec([3, 2, 2], vec![5i16; 12], Geometry::identity()).unwrap();
        let good = dir.path().join("g.nii");
        write_nifti(&v, &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let patched = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            edit(&mut b);
            let p = dir.path().join(name);
            std::fs::write(&p, b).unwrap();
            read_nifti(&p).unwrap_err().to_string()
        };
        let f32_at =
            |b: &mut Vec<u8>, at: usize, v: f32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let i16_at =
            |b: &mut Vec<u8>, at: usize, v: i16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let e = patched("bitpix.nii", &|b| i16_at(b, 72, 8));
        assert!(e.contains("bitpix 8 but datatype"), "{e}");
        // qform only (sform code 0, qform code 1) with qfac 0.5, then with b = c = d = 1.
        let qform = |b: &mut Vec<u8>| {
            i16_at(b, 252, 1);
            i16_at(b, 254, 0);
        };
        let e = patched("qfac.nii", &|b| {
            qform(b);
            f32_at(b, 76, 0.5);
        });
        assert!(e.contains("qfac (pixdim[0]) is 0.5"), "{e}");
        let e = patched("quat.nii", &|b| {
            qform(b);
            f32_at(b, 76, 1.0);
            for at in [256, 260, 264] {
                f32_at(b, at, 1.0);
            }
        });
        assert!(e.contains("not part of a unit quaternion"), "{e}");
        // A 2-D header with neither sform nor qform: the crate would index a third axis.
        let flat = dir.path().join("flat.nii");
        let mut b = bytes.clone();
        i16_at(&mut b, 40, 2);
        i16_at(&mut b, 252, 0);
        i16_at(&mut b, 254, 0);
        std::fs::write(&flat, b).unwrap();
        let r = read_nifti(&flat);
        assert!(
            r.is_ok() || r.as_ref().unwrap_err().to_string().contains("flat.nii"),
            "{:?}",
            r.err()
        );
    }

    fn geometry() -> Geometry {
        Geometry {
            spacing: [0.5, 0.75, 1.25],
            origin: [100.0, 120.0, -300.0],
            direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        }
    }

    fn round_trip<T: NiftiVoxel>(vals: impl Fn(usize) -> T, ext: &str) -> AnyVolume {
        let dir = tempfile::tempdir().unwrap();
        let dims = [5, 4, 3];
        let data: Vec<T> = (0..60).map(vals).collect();
        let v = Volume::from_vec(dims, data, geometry()).unwrap();
        let path = dir.path().join(format!("1.2.840.10008.5{ext}"));
        write_nifti(&v, &path).unwrap();
        let back = read_nifti(&path).unwrap();
        assert_eq!(back.dims(), dims);
        assert!(back.geometry().max_affine_difference(&v.geometry) < 1e-5);
        back
    }

    #[test]
    fn int16_round_trip_nii_and_gz() {
        for ext in [".nii", ".nii.gz"] {
            let back = round_trip(|i| (i as i16) * 97 - 1024, ext);
            let AnyVolume::I16(v) = back else {
                panic!("dtype changed")
            };
            assert_eq!(v.get(4, 3, 2), 59 * 97 - 1024);
            assert_eq!(v.get(1, 0, 0), 97 - 1024);
        }
    }

    #[test]
    fn uint8_and_float32_round_trip() {
        let AnyVolume::U8(v) = round_trip(|i| (i % 9) as u8, ".nii.gz") else {
            panic!()
        };
        assert_eq!(v.data()[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]);
        let AnyVolume::F32(v) = round_trip(|i| i as f32 * 0.25 - 3.0, ".nii") else {
            panic!()
        };
        assert_eq!(v.get(0, 1, 0), 5.0 * 0.25 - 3.0);
    }

    #[test]
    fn truncated_and_absurd_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volume::from_vec([8, 8, 8], vec![7i16; 512], geometry()).unwrap();
        let path = dir.path().join("a.nii");
        write_nifti(&v, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.nii");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let e = read_nifti(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.nii") && e.contains("truncated"), "{e}");

        let mut absurd = bytes.clone();
        // dim[1..4] live at byte offset 42 (little-endian u16).
        for (a, off) in [42usize, 44, 46].iter().enumerate() {
            absurd[*off..*off + 2].copy_from_slice(&(30000u16 + a as u16).to_le_bytes());
        }
        let big = dir.path().join("big.nii");
        std::fs::write(&big, &absurd).unwrap();
        let e = read_nifti(&big).unwrap_err().to_string();
        assert!(e.contains("big.nii") && e.contains("absurd"), "{e}");
    }
}
