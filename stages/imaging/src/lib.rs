//! CT imaging I/O: DICOM series reading, NIfTI volumes with exact geometry, volume operations.
//!
//! See README.md for the architecture. Geometry is kept in NIfTI's RAS+ frame everywhere;
//! [`dicom_frame`] is the single place where DICOM's LPS+ frame is converted.

// Matrix and axis code reads clearer with index loops over 0..3.
#![allow(clippy::needless_range_loop)]

pub mod competition;
pub mod convert;
pub mod dicom_frame;
pub mod dicom_series;
pub mod dicom_writer;
pub mod geometry;
pub mod nifti_io;
pub mod ops;
pub mod volume;

pub use convert::{convert_series, convert_series_with, write_report_json, ConvertError};
pub use dicom_series::{read_series, DicomReadError, ReadOptions, SeriesReport};
pub use dicom_writer::{
    write_ct_series, CtSeriesSpec, DicomWriteError, FileOrder, PatientIdentity, PixelStorage,
    WriteSyntax,
};
pub use geometry::Geometry;
pub use nifti_io::{read_nifti, write_any_nifti, write_nifti, NiftiIoError};
pub use volume::{AnyVolume, Volume, VolumeError, Voxel};
