//! CT imaging I/O: DICOM series reading, NIfTI volumes with exact geometry, volume operations.
