//! Volume operations the pipeline stages need; all keep voxels at their world positions.

mod bbox;
mod components;
mod crop;
mod label_growth;
mod morphology;
mod resample;
mod spine_cleanup;

pub use bbox::{bbox_where, foreground_bbox, label_bboxes, BoundingBox};
pub use components::{
    keep_largest_component_per_label, label_components, Components, Connectivity,
};
pub use crop::{crop, crop_with_margin_mm, grow_bbox_mm, pad, pad_to_at_least};
pub use label_growth::grow_labels_mm;
pub use morphology::{
    binary_dilate, binary_dilate_box, grey_close_box, grey_dilate, grey_erode_box, Element,
};
pub use resample::{
    max_pool_to_size, resample_to_grid, resample_to_size, resample_to_spacing, Interpolation,
};
pub use spine_cleanup::{
    bridge_radii, clean_label_map, clean_label_map_with_report, CleanupConfig, CleanupReport,
    LabelCleanup, DEFAULT_BRIDGE_MM,
};
