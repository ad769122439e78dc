//! `Grid3<T>`: a dense 3D volume stored z-major (`[z, y, x]`, x fastest), the buffer type of
//! this crate. The nn3d helper converts it to a candle tensor without copying semantics.

use thiserror::Error;

/// Largest voxel count a grid may hold (2^34, about 17 G voxels): rejects absurd shapes before
/// allocating.
pub const MAX_VOXELS: usize = 1 << 34;

/// Errors from building a grid out of a shape and a buffer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GridError {
    #[error("grid shape {shape:?} has a zero-length axis")]
    EmptyAxis { shape: [usize; 3] },
    #[error("grid shape {shape:?} holds more than {max} voxels")]
    TooLarge { shape: [usize; 3], max: usize },
    #[error("grid shape {shape:?} needs {expected} values but the buffer holds {actual}")]
    LengthMismatch {
        shape: [usize; 3],
        expected: usize,
        actual: usize,
    },
}

/// A dense `[z, y, x]` volume with x varying fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid3<T> {
    shape: [usize; 3],
    data: Vec<T>,
}

/// Number of voxels of `shape`, or an error for empty or absurd shapes.
pub fn checked_len(shape: [usize; 3]) -> Result<usize, GridError> {
    if shape.contains(&0) {
        return Err(GridError::EmptyAxis { shape });
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .filter(|&n| n <= MAX_VOXELS)
        .ok_or(GridError::TooLarge {
            shape,
            max: MAX_VOXELS,
        })
}

impl<T: Copy> Grid3<T> {
    /// A grid of `shape` with every voxel set to `value`.
    pub fn filled(shape: [usize; 3], value: T) -> Result<Self, GridError> {
        let len = checked_len(shape)?;
        Ok(Self {
            shape,
            data: vec![value; len],
        })
    }

    /// Wraps `data` (z-major) as a grid of `shape`.
    pub fn from_vec(shape: [usize; 3], data: Vec<T>) -> Result<Self, GridError> {
        let expected = checked_len(shape)?;
        if data.len() != expected {
            return Err(GridError::LengthMismatch {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// A grid whose voxel `[z, y, x]` is `f(z, y, x)`.
    pub fn from_fn(
        shape: [usize; 3],
        mut f: impl FnMut(usize, usize, usize) -> T,
    ) -> Result<Self, GridError> {
        let len = checked_len(shape)?;
        let mut data = Vec::with_capacity(len);
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    data.push(f(z, y, x));
                }
            }
        }
        Ok(Self { shape, data })
    }

    /// Value at `[z, y, x]`; panics when out of bounds (like slice indexing).
    #[inline]
    pub fn get(&self, z: usize, y: usize, x: usize) -> T {
        self.data[self.index(z, y, x)]
    }

    /// Value at signed coordinates, or `None` outside the grid.
    #[inline]
    pub fn get_checked(&self, z: i64, y: i64, x: i64) -> Option<T> {
        if self.contains(z, y, x) {
            Some(self.data[self.index(z as usize, y as usize, x as usize)])
        } else {
            None
        }
    }

    /// Sets the value at `[z, y, x]`; panics when out of bounds.
    #[inline]
    pub fn set(&mut self, z: usize, y: usize, x: usize, value: T) {
        let i = self.index(z, y, x);
        self.data[i] = value;
    }

    /// A new grid with `f` applied to every voxel.
    pub fn map<U: Copy>(&self, f: impl FnMut(T) -> U) -> Grid3<U> {
        Grid3 {
            shape: self.shape,
            data: self.data.iter().copied().map(f).collect(),
        }
    }
}

impl<T> Grid3<T> {
    /// `[z, y, x]` extent.
    #[inline]
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of voxels.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Always false: grids have no empty axis.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Linear (z-major) index of `[z, y, x]`.
    #[inline]
    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        debug_assert!(z < self.shape[0] && y < self.shape[1] && x < self.shape[2]);
        (z * self.shape[1] + y) * self.shape[2] + x
    }

    /// `[z, y, x]` of a linear index.
    #[inline]
    pub fn coords(&self, linear: usize) -> [usize; 3] {
        let x = linear % self.shape[2];
        let rest = linear / self.shape[2];
        [rest / self.shape[1], rest % self.shape[1], x]
    }

    /// Whether signed coordinates fall inside the grid.
    #[inline]
    pub fn contains(&self, z: i64, y: i64, x: i64) -> bool {
        z >= 0
            && y >= 0
            && x >= 0
            && (z as u64) < self.shape[0] as u64
            && (y as u64) < self.shape[1] as u64
            && (x as u64) < self.shape[2] as u64
    }

    /// The z-major buffer.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The z-major buffer, mutable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Gives the buffer back.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// One axial slice `[y, x]` as a slice of the buffer.
    pub fn slice_z(&self, z: usize) -> &[T] {
        let n = self.shape[1] * self.shape[2];
        &self.data[z * n..(z + 1) * n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_coords_round_trip() {
        let g = Grid3::from_fn([3, 4, 5], |z, y, x| (z * 100 + y * 10 + x) as u32).unwrap();
        assert_eq!(g.get(2, 3, 4), 234);
        for i in 0..g.len() {
            let [z, y, x] = g.coords(i);
            assert_eq!(g.index(z, y, x), i);
        }
        assert_eq!(g.get_checked(-1, 0, 0), None);
        assert_eq!(g.get_checked(0, 4, 0), None);
        assert_eq!(g.get_checked(1, 1, 1), Some(111));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(
            Grid3::filled([0, 2, 2], 0u8),
            Err(GridError::EmptyAxis { shape: [0, 2, 2] })
        );
        assert!(matches!(
            Grid3::filled([1 << 20, 1 << 20, 1 << 20], 0u8),
            Err(GridError::TooLarge { .. })
        ));
        assert!(matches!(
            Grid3::from_vec([2, 2, 2], vec![0u8; 7]),
            Err(GridError::LengthMismatch { .. })
        ));
    }
}
