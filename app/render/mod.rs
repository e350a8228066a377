//! GPU painting: the weight heatmap's paint callback, the colormaps (WGSL in shaders/) and the
//! palette, every colour of the app and its figures.

pub mod colormap;
pub mod heatmap;
pub mod layout;
pub mod palette;
