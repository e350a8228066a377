//! Colormaps shared by the GPU heatmap shader (shaders/heatmap.wgsl holds the same
//! tables), the plots and the exported figures; every other colour is in `render::palette`.

/// The colormaps the app offers. Sequential maps for magnitudes, a diverging map for
/// signed values and perturbations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colormap {
    /// Blue - white - red, for signed values (weights, perturbations).
    #[default]
    Diverging,
    /// Perceptually uniform, dark to bright.
    Viridis,
    /// Black to white.
    Grey,
}

impl Colormap {
    pub const ALL: [Colormap; 3] = [Colormap::Diverging, Colormap::Viridis, Colormap::Grey];

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Diverging => "Diverging",
            Colormap::Viridis => "Viridis",
            Colormap::Grey => "Grey",
        }
    }

    /// Index passed to the shader as a uniform.
    pub fn index(self) -> u32 {
        self as u32
    }

    /// Control points, evenly spaced over [0, 1], linearly interpolated in sRGB.
    pub fn stops(self) -> &'static [[u8; 3]] {
        match self {
            Colormap::Diverging => &DIVERGING,
            Colormap::Viridis => &VIRIDIS,
            Colormap::Grey => &GREY,
        }
    }

    /// The colour at `t` in [0, 1] (clamped).
    pub fn at(self, t: f32) -> [u8; 3] {
        let stops = self.stops();
        let t = if t.is_nan() { 0.5 } else { t.clamp(0.0, 1.0) };
        let x = t * (stops.len() - 1) as f32;
        let i = (x.floor() as usize).min(stops.len() - 2);
        let f = x - i as f32;
        let (a, b) = (stops[i], stops[i + 1]);
        std::array::from_fn(|c| (a[c] as f32 + (b[c] as f32 - a[c] as f32) * f).round() as u8)
    }
}

/// ColorBrewer RdBu, reversed so negative is blue and positive red.
pub const DIVERGING: [[u8; 3]; 9] = [
    [33, 102, 172],
    [67, 147, 195],
    [146, 197, 222],
    [209, 229, 240],
    [247, 247, 247],
    [253, 219, 199],
    [244, 165, 130],
    [214, 96, 77],
    [178, 24, 43],
];

/// Matplotlib's viridis, sampled at nine points.
pub const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

pub const GREY: [[u8; 3]; 2] = [[0, 0, 0], [255, 255, 255]];
