//! Volume operations the pipeline stages need; all keep voxels at their world positions.

mod bbox;
mod components;
mod crop;
mod morphology;
mod resample;

pub use bbox::{bbox_where, foreground_bbox, label_bboxes, BoundingBox};
pub use components::{
    clean_label_map, keep_largest_component, keep_largest_component_per_label, label_components,
    Components, Connectivity,
};
pub use crop::{crop, crop_with_margin_mm, grow_bbox_mm, pad, pad_to_at_least};
pub use morphology::{binary_dilate, grey_dilate, Element};
pub use resample::{resample_to_grid, resample_to_size, resample_to_spacing, Interpolation};
