//! GPU painting: the weight heatmap's paint callback and the colormaps (WGSL in shaders/).

pub mod colormap;
