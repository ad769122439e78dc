//! Helpers specific to the RSNA 2022 competition data and the public vertebra datasets.

pub mod boxes;
pub mod csv_tables;
pub mod segmentation;
pub mod vertebrae;

pub use boxes::{boxes_to_mask, slice_positions, BoxMask, UnmatchedBox};
pub use csv_tables::{read_fracture_boxes, read_train_labels, CsvError, FractureBox, StudyLabels};
pub use segmentation::{
    from_competition_layout, read_competition_segmentation, to_competition_layout,
    write_competition_segmentation, SegmentationError,
};
pub use vertebrae::{
    map_combined, read_combined, read_structure_folder, vertebra_name, VertebraScheme,
    VertebraeError,
};
