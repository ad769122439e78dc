//! The in-memory 3D volume: a voxel array in x-fastest order plus its [`Geometry`].

use crate::geometry::Geometry;
use thiserror::Error;

/// Largest number of voxels any volume (or header) may declare: 2^31, i.e. 4 GiB of int16.
/// Headers claiming more are rejected before anything is allocated.
pub const MAX_VOXELS: u64 = 1 << 31;

/// Largest extent of one axis accepted from a header.
pub const MAX_AXIS_LEN: u64 = 1 << 16;

/// Errors from constructing a volume.
#[derive(Debug, Error, PartialEq)]
pub enum VolumeError {
    #[error("dimensions {dims:?} are absurd (each axis 1..={MAX_AXIS_LEN}, at most {MAX_VOXELS} voxels)")]
    AbsurdDims { dims: [u64; 3] },
    #[error("data holds {got} voxels but dimensions {dims:?} need {expected}")]
    LengthMismatch {
        dims: [usize; 3],
        expected: usize,
        got: usize,
    },
}

/// A voxel element type the volume operations understand.
pub trait Voxel:
    Copy + Default + PartialEq + PartialOrd + Send + Sync + std::fmt::Debug + 'static
{
    /// Short name used in messages and the NIfTI datatype mapping.
    const NAME: &'static str;
    fn to_f64(self) -> f64;
    /// Convert back from `f64`, rounding to nearest and saturating for integer types.
    fn from_f64(v: f64) -> Self;
}

impl Voxel for i16 {
    const NAME: &'static str = "int16";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16
    }
}

impl Voxel for u8 {
    const NAME: &'static str = "uint8";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v.round().clamp(0.0, 255.0) as u8
    }
}

impl Voxel for f32 {
    const NAME: &'static str = "float32";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// Check dimensions from an untrusted source before allocating for them.
pub fn check_dims(dims: [u64; 3]) -> Result<[usize; 3], VolumeError> {
    let ok_axes = dims.iter().all(|&d| (1..=MAX_AXIS_LEN).contains(&d));
    let total = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    match total {
        Some(t) if ok_axes && t <= MAX_VOXELS => {
            Ok([dims[0] as usize, dims[1] as usize, dims[2] as usize])
        }
        _ => Err(VolumeError::AbsurdDims { dims }),
    }
}

/// A 3D voxel grid: `data[i + nx * (j + ny * k)]` is voxel `(i, j, k)` (NIfTI order).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    dims: [usize; 3],
    data: Vec<T>,
    /// Where the voxels are in the world (RAS mm).
    pub geometry: Geometry,
}

impl<T: Voxel> Volume<T> {
    /// Wrap `data` (x fastest) of size `dims` placed at `geometry`.
    pub fn from_vec(
        dims: [usize; 3],
        data: Vec<T>,
        geometry: Geometry,
    ) -> Result<Self, VolumeError> {
        check_dims(dims.map(|d| d as u64))?;
        let expected = dims[0] * dims[1] * dims[2];
        if data.len() != expected {
            return Err(VolumeError::LengthMismatch {
                dims,
                expected,
                got: data.len(),
            });
        }
        Ok(Volume {
            dims,
            data,
            geometry,
        })
    }

    /// A volume filled with `value`.
    pub fn filled(dims: [usize; 3], value: T, geometry: Geometry) -> Result<Self, VolumeError> {
        check_dims(dims.map(|d| d as u64))?;
        Ok(Volume {
            dims,
            data: vec![value; dims[0] * dims[1] * dims[2]],
            geometry,
        })
    }

    /// Same grid as `self`, filled with `value` of another element type.
    pub fn like<U: Voxel>(&self, value: U) -> Volume<U> {
        Volume {
            dims: self.dims,
            data: vec![value; self.data.len()],
            geometry: self.geometry,
        }
    }

    /// Element-wise conversion to another element type, same grid.
    pub fn map<U: Voxel>(&self, f: impl Fn(T) -> U + Sync) -> Volume<U> {
        Volume {
            dims: self.dims,
            data: self.data.iter().map(|&v| f(v)).collect(),
            geometry: self.geometry,
        }
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Linear index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Voxel `(i, j, k)`; panics when out of bounds (indices are the caller's, not input data).
    #[inline]
    pub fn get(&self, i: usize, j: usize, k: usize) -> T {
        self.data[self.index(i, j, k)]
    }

    #[inline]
    pub fn set(&mut self, i: usize, j: usize, k: usize, v: T) {
        let idx = self.index(i, j, k);
        self.data[idx] = v;
    }

    /// Voxel at `(i, j, k)` if inside the grid.
    pub fn get_checked(&self, i: isize, j: isize, k: isize) -> Option<T> {
        let d = self.dims;
        if i < 0 || j < 0 || k < 0 || i as usize >= d[0] || j as usize >= d[1] || k as usize >= d[2]
        {
            return None;
        }
        Some(self.get(i as usize, j as usize, k as usize))
    }

    /// Size in bytes of the voxel array.
    pub fn byte_size(&self) -> usize {
        self.data.len() * std::mem::size_of::<T>()
    }
}

/// A volume of one of the element types stored on disk (NIfTI int16, uint8 or float32).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyVolume {
    I16(Volume<i16>),
    U8(Volume<u8>),
    F32(Volume<f32>),
}

impl AnyVolume {
    pub fn dims(&self) -> [usize; 3] {
        match self {
            AnyVolume::I16(v) => v.dims(),
            AnyVolume::U8(v) => v.dims(),
            AnyVolume::F32(v) => v.dims(),
        }
    }

    pub fn geometry(&self) -> &Geometry {
        match self {
            AnyVolume::I16(v) => &v.geometry,
            AnyVolume::U8(v) => &v.geometry,
            AnyVolume::F32(v) => &v.geometry,
        }
    }

    /// Name of the element type ("int16", "uint8", "float32").
    pub fn dtype(&self) -> &'static str {
        match self {
            AnyVolume::I16(_) => i16::NAME,
            AnyVolume::U8(_) => u8::NAME,
            AnyVolume::F32(_) => f32::NAME,
        }
    }

    /// Convert to float32 voxels (exact for int16 and uint8).
    pub fn to_f32(&self) -> Volume<f32> {
        match self {
            AnyVolume::I16(v) => v.map(|x| x as f32),
            AnyVolume::U8(v) => v.map(|x| x as f32),
            AnyVolume::F32(v) => v.clone(),
        }
    }

    /// Convert to a label map (uint8). Fails when a value is not an integer in 0..=255.
    pub fn to_labels(&self) -> Result<Volume<u8>, f64> {
        let bad = |x: f64| !(x.fract() == 0.0 && (0.0..=255.0).contains(&x));
        match self {
            AnyVolume::U8(v) => Ok(v.clone()),
            AnyVolume::I16(v) => match v.data().iter().find(|&&x| bad(x as f64)) {
                Some(&x) => Err(x as f64),
                None => Ok(v.map(|x| x as u8)),
            },
            AnyVolume::F32(v) => match v.data().iter().find(|&&x| bad(x as f64)) {
                Some(&x) => Err(x as f64),
                None => Ok(v.map(|x| x as u8)),
            },
        }
    }
}

impl From<Volume<i16>> for AnyVolume {
    fn from(v: Volume<i16>) -> Self {
        AnyVolume::I16(v)
    }
}
impl From<Volume<u8>> for AnyVolume {
    fn from(v: Volume<u8>) -> Self {
        AnyVolume::U8(v)
    }
}
impl From<Volume<f32>> for AnyVolume {
    fn from(v: Volume<f32>) -> Self {
        AnyVolume::F32(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_dims_rejected_before_allocation() {
        assert!(check_dims([512, 512, 300]).is_ok());
        assert_eq!(
            check_dims([0, 1, 1]),
            Err(VolumeError::AbsurdDims { dims: [0, 1, 1] })
        );
        assert!(check_dims([65535, 65535, 65535]).is_err());
        assert!(check_dims([u64::MAX, 2, 2]).is_err());
    }

    #[test]
    fn indexing_is_x_fastest() {
        let data: Vec<i16> = (0..24).collect();
        let v = Volume::from_vec([2, 3, 4], data, Geometry::identity()).unwrap();
        assert_eq!(v.get(1, 0, 0), 1);
        assert_eq!(v.get(0, 1, 0), 2);
        assert_eq!(v.get(0, 0, 1), 6);
        assert_eq!(v.get_checked(2, 0, 0), None);
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let e = Volume::from_vec([2, 2, 2], vec![0u8; 7], Geometry::identity()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data holds 7 voxels but dimensions [2, 2, 2] need 8"
        );
    }

    #[test]
    fn labels_reject_fractions() {
        let v = Volume::from_vec([2, 1, 1], vec![1.0f32, 2.5], Geometry::identity()).unwrap();
        assert_eq!(AnyVolume::F32(v).to_labels(), Err(2.5));
    }
}
