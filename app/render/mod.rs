//! GPU painting: the weight heatmap's paint callback and the colormaps (WGSL in shaders/).

pub mod colormap;
pub mod heatmap;
pub mod layout;
