//! Patch sampling and 3D augmentations for segmentation training (no candle, no engine).
