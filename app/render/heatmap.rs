//! The weight heatmap drawn on the GPU through an egui_wgpu paint callback.
//!
//! A layer's weights are uploaded once as an R32Float texture (and its per-weight classes
//! as an R8Uint texture after a sweep). Everything else is a uniform, so moving the
//! threshold, changing the filter or the colormap, zooming or panning costs one small
//! buffer write in `prepare`. Weights are stored wrapped into rows of at most
//! `max_texture_dimension_2d` texels, so layers far larger than one texture row work.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use egui_wgpu::wgpu;
use egui_wgpu::{CallbackResources, CallbackTrait, ScreenDescriptor};

use super::layout::Layout;
use super::palette;
use crate::engine::analysis::filter::FilterKind;

const SHADER: &str = include_str!("../../shaders/heatmap.wgsl");

/// The uniform block of shaders/heatmap.wgsl (`Params`), vec4 by vec4.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct Params {
    pub view: [f32; 4],
    pub grid: [u32; 4],
    pub conv: [u32; 4],
    pub tile: [u32; 4],
    pub thresholds: [f32; 4],
    pub colour: [f32; 4],
    pub mode: [u32; 4],
    pub cmap: [u32; 4],
    pub background: [f32; 4],
    pub shade: [f32; 4],
}

pub const FLAG_MASK: u32 = 1;
/// How far a removed weight's colour is mixed towards the shade; every other diagonal stripe
/// takes `STRIPE` of that (shaders/heatmap.wgsl). The mask view's legend paints the same.
pub const SHADE_STRENGTH: f32 = 0.78;
pub const STRIPE: f32 = 0.6;
pub const FLAG_CLASSES: u32 = 2;

/// What the shader is told, in the app's terms (its background and shade are the palette's).
#[derive(Debug, Clone, Copy)]
pub struct HeatmapStyle {
    /// Visible window in cells: min x, min y, width, height.
    pub view: [f32; 4],
    pub filter: FilterKind,
    /// Threshold, pulse width and sweep range, in float64 as the engine compares them.
    pub alpha: f64,
    pub width: f64,
    pub range: [f64; 2],
    pub value_range: [f32; 2],
    pub shade_removed: bool,
    /// 0 values, 1 classes (clean), 2 classes (adversarial).
    pub view_mode: u32,
    pub colormap: u32,
}

/// The shader's number of a filter (`mode.y` in shaders/heatmap.wgsl).
pub fn filter_index(kind: FilterKind) -> u32 {
    match kind {
        FilterKind::H0 => 0,
        FilterKind::H1 => 1,
        FilterKind::H2 => 2,
        FilterKind::H3 => 3,
    }
}

impl Params {
    pub fn new(layout: &Layout, n: usize, texture_width: u32, style: &HeatmapStyle, has_classes: bool) -> Self {
        let flags = (style.shade_removed as u32 * FLAG_MASK) | (has_classes as u32 * FLAG_CLASSES);
        let [br, bg, bb] = palette::unit(palette::HEATMAP_BACKGROUND);
        let [sr, sg, sb] = palette::unit(palette::HEATMAP_SHADE);
        Self {
            view: style.view,
            grid: [layout.cols, layout.rows, texture_width, n as u32],
            conv: [layout.out_ch, layout.in_ch, layout.kh, layout.kw],
            tile: [layout.in_cols, layout.tile_w, layout.tile_h, layout.tile_cols],
            thresholds: edges(style.filter, style.alpha, style.width, style.range),
            colour: [style.value_range[0], style.value_range[1], SHADE_STRENGTH, 0.0],
            mode: [layout.kind as u32, filter_index(style.filter), style.view_mode, flags],
            cmap: [style.colormap, 0, 0, 0],
            background: [br, bg, bb, 1.0],
            shade: [sr, sg, sb, 1.0],
        }
    }
}

/// The largest f32 not above `x`.
fn floor32(x: f64) -> f32 {
    let f = x as f32;
    if f as f64 > x { f.next_down() } else { f }
}

/// The smallest f32 not below `x`.
fn ceil32(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) < x { f.next_up() } else { f }
}

/// The filter's edges as f32 values that the shader's f32 comparisons of f32 weights turn
/// into exactly the engine's float64 comparisons (SPEC section 2): h0 and h1 remove
/// `w <= x`, h2 `w >= x`, h3 `x <= w < y` within `[z, w]`.
pub fn edges(kind: FilterKind, alpha: f64, width: f64, range: [f64; 2]) -> [f32; 4] {
    let [lo, hi] = range;
    match kind {
        FilterKind::H0 | FilterKind::H1 => [floor32(alpha), 0.0, ceil32(lo), floor32(hi)],
        FilterKind::H2 => [ceil32(alpha), 0.0, ceil32(lo), floor32(hi)],
        FilterKind::H3 => [ceil32(alpha - width / 2.0), ceil32(alpha + width / 2.0), ceil32(lo), floor32(hi)],
    }
}

/// Texture rows for `n` values at most `max_width` wide.
pub fn texture_size(n: usize, max_width: u32) -> (u32, u32) {
    let w = (n.max(1) as u32).min(max_width.max(1));
    (w, (n.max(1) as u32).div_ceil(w))
}

/// Data the callback uploads when its key changes.
#[derive(Clone)]
pub struct Upload<T> {
    pub key: u64,
    pub data: Arc<Vec<T>>,
}

/// One frame's heatmap: the uniforms, and the textures' data with keys so they are
/// uploaded only when they change.
pub struct HeatmapCallback {
    pub layout: Layout,
    pub style: HeatmapStyle,
    pub values: Upload<f32>,
    pub classes: Option<Upload<u8>>,
}

/// GPU objects kept across frames in egui_wgpu's callback resources.
pub struct HeatmapResources {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    uniforms: wgpu::Buffer,
    /// Linear (sRGB) framebuffers need linear output.
    linear_output: bool,
    max_width: u32,
    bound: Option<Bound>,
}

struct Bound {
    values_key: u64,
    classes_key: Option<u64>,
    texture_width: u32,
    values: wgpu::Texture,
    group: wgpu::BindGroup,
}

impl HeatmapResources {
    /// Builds the pipeline once and stores it where the paint callbacks find it.
    pub fn install(render_state: &egui_wgpu::RenderState) {
        let resources = Self::new(&render_state.device, render_state.target_format);
        render_state.renderer.write().callback_resources.insert(resources);
    }

    fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("heatmap"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let texture_entry = |binding, sample_type| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type,
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("heatmap"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                texture_entry(1, wgpu::TextureSampleType::Float { filterable: false }),
                texture_entry(2, wgpu::TextureSampleType::Uint),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("heatmap"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("heatmap"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                targets: &[Some(format.into())],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("heatmap params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            pipeline,
            layout,
            uniforms,
            linear_output: format.is_srgb(),
            max_width: device.limits().max_texture_dimension_2d.min(8192),
            bound: None,
        }
    }

    fn texture(device: &wgpu::Device, size: (u32, u32), format: wgpu::TextureFormat) -> wgpu::Texture {
        device.create_texture(&wgpu::TextureDescriptor {
            label: Some("heatmap data"),
            size: wgpu::Extent3d { width: size.0, height: size.1, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    }

    fn write(queue: &wgpu::Queue, texture: &wgpu::Texture, bytes: &[u8], texel: u32) {
        let size = texture.size();
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(size.width * texel),
                rows_per_image: Some(size.height),
            },
            size,
        );
    }

    /// Uploads the values (and classes) when their keys changed.
    fn bind(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, cb: &HeatmapCallback) {
        let values_key = cb.values.key;
        let classes_key = cb.classes.as_ref().map(|c| c.key);
        if self.bound.as_ref().is_some_and(|b| b.values_key == values_key && b.classes_key == classes_key) {
            return;
        }
        let n = cb.values.data.len();
        let size = texture_size(n, self.max_width);
        let reuse = self.bound.take().filter(|b| b.values_key == values_key);
        let values = match &reuse {
            Some(b) => b.values.clone(),
            None => {
                let t = Self::texture(device, size, wgpu::TextureFormat::R32Float);
                let mut padded = cb.values.data.as_ref().clone();
                padded.resize((size.0 * size.1) as usize, 0.0);
                Self::write(queue, &t, bytemuck::cast_slice(&padded), 4);
                t
            }
        };
        let classes = match &cb.classes {
            Some(c) if c.data.len() == n => {
                let t = Self::texture(device, size, wgpu::TextureFormat::R8Uint);
                let mut padded = c.data.as_ref().clone();
                padded.resize((size.0 * size.1) as usize, 0);
                Self::write(queue, &t, &padded, 1);
                t
            }
            _ => {
                let t = Self::texture(device, (1, 1), wgpu::TextureFormat::R8Uint);
                Self::write(queue, &t, &[0], 1);
                t
            }
        };
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("heatmap"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: self.uniforms.as_entire_binding() },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&values.create_view(&Default::default())),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&classes.create_view(&Default::default())),
                },
            ],
        });
        self.bound = Some(Bound { values_key, classes_key, texture_width: size.0, values, group });
    }
}

impl CallbackTrait for HeatmapCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(r) = resources.get_mut::<HeatmapResources>() else { return Vec::new() };
        r.bind(device, queue, self);
        let Some(bound) = &r.bound else { return Vec::new() };
        let has_classes = self.classes.as_ref().is_some_and(|c| c.data.len() == self.values.data.len());
        let mut params =
            Params::new(&self.layout, self.values.data.len(), bound.texture_width, &self.style, has_classes);
        params.cmap[1] = r.linear_output as u32;
        // The only per-frame GPU work: one uniform write.
        queue.write_buffer(&r.uniforms, 0, bytemuck::bytes_of(&params));
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        let Some(r) = resources.get::<HeatmapResources>() else { return };
        let Some(bound) = &r.bound else { return };
        pass.set_pipeline(&r.pipeline);
        pass.set_bind_group(0, &bound.group, &[]);
        pass.draw(0..6, 0..1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::analysis::filter::Filter;
    use crate::render::colormap::{Colormap, DIVERGING, GREY, VIRIDIS};
    use crate::render::palette::CLASS_COLOURS;

    /// The stops of `const NAME: array<vec3<f32>, N> = ...;` in the shader, as bytes.
    fn wgsl_table(name: &str) -> Vec<[u8; 3]> {
        let start = SHADER.find(&format!("const {name}:")).unwrap_or_else(|| panic!("no table {name} in the shader"));
        let body = &SHADER[start..];
        let body = &body[body.find("= array").unwrap()..body.find(");").unwrap()];
        body.split("vec3<f32>(")
            .skip(1)
            .filter(|part| part.starts_with(|c: char| c.is_ascii_digit()))
            .map(|part| {
                let nums: Vec<f32> =
                    part.split(')').next().unwrap().split(',').map(|v| v.trim().parse().unwrap()).collect();
                assert_eq!(nums.len(), 3, "{name}: {part}");
                std::array::from_fn(|i| {
                    assert!(nums[i].fract() == 0.0 && (0.0..=255.0).contains(&nums[i]), "{name}: {nums:?}");
                    nums[i] as u8
                })
            })
            .collect()
    }

    #[test]
    fn the_shaders_stripes_are_the_legends() {
        assert!(SHADER.contains(&format!("params.colour.z * {STRIPE}")), "the stripe strength of the shader");
    }

    #[test]
    fn shader_colour_tables_match_the_rust_tables() {
        assert_eq!(wgsl_table("DIVERGING"), DIVERGING.to_vec());
        assert_eq!(wgsl_table("VIRIDIS"), VIRIDIS.to_vec());
        assert_eq!(wgsl_table("GREY"), GREY.to_vec());
        assert_eq!(wgsl_table("CLASS_COLOURS"), CLASS_COLOURS.to_vec());
        // The shader's colormap switch follows Colormap::index.
        assert!(SHADER.contains("case 1u: { return lerp_stops9(VIRIDIS"));
        assert_eq!((Colormap::Diverging.index(), Colormap::Viridis.index(), Colormap::Grey.index()), (0, 1, 2));
    }

    #[test]
    fn the_shaders_filter_switch_follows_filter_index() {
        // The shader's switch names h0, h1 and h2 by their numbers; h3 is its default branch.
        let h1 = format!("case {}u: {{ return w <= t.x; }}", filter_index(FilterKind::H1));
        let h2 = format!("case {}u: {{ return w >= t.x; }}", filter_index(FilterKind::H2));
        assert!(SHADER.contains(&h1) && SHADER.contains(&h2), "{h1} / {h2}");
        assert!(SHADER.contains(&format!("case {}u: {{ return abs(w) <= t.x; }}", filter_index(FilterKind::H0))));
        assert_eq!(FilterKind::ALL.map(filter_index), [0, 1, 2, 3]);
    }

    #[test]
    fn the_heatmaps_background_and_shade_are_the_palettes() {
        let style = HeatmapStyle {
            view: [0.0, 0.0, 1.0, 1.0],
            filter: FilterKind::H1,
            alpha: 0.0,
            width: 0.0,
            range: [-1.0, 1.0],
            value_range: [-1.0, 1.0],
            shade_removed: true,
            view_mode: 0,
            colormap: 0,
        };
        let layout = Layout::for_shape(&[2, 2]);
        let p = Params::new(&layout, 4, 4, &style, false);
        let bytes = |c: [f32; 4]| [c[0], c[1], c[2]].map(|v| (v * 255.0).round() as u8);
        assert_eq!(bytes(p.background), palette::HEATMAP_BACKGROUND);
        assert_eq!(bytes(p.shade), palette::HEATMAP_SHADE);
        assert_eq!(p.mode[1], filter_index(FilterKind::H1));
    }

    #[test]
    fn large_layers_wrap_into_texture_rows() {
        assert_eq!(texture_size(401_408, 8192), (8192, 49));
        assert_eq!(texture_size(320, 8192), (320, 1));
        assert_eq!(texture_size(0, 8192), (1, 1));
        assert_eq!(std::mem::size_of::<Params>(), 160);
    }

    /// The shader's test, in Rust: f32 weights against the f32 edges.
    fn shader_removes(kind: u32, t: [f32; 4], w: f32) -> bool {
        match kind {
            0 => w.abs() <= t[0],
            1 => w <= t[0],
            2 => w >= t[0],
            _ => t[0] <= w && w < t[1] && t[2] <= w && w <= t[3],
        }
    }

    #[test]
    fn f32_edges_reproduce_the_engines_float64_filters() {
        let kinds = [FilterKind::H0, FilterKind::H1, FilterKind::H2, FilterKind::H3];
        // Weights and thresholds chosen to fall on and beside f32 boundaries.
        let weights: Vec<f32> =
            (-2000..=2000).map(|i| i as f32 * 0.000_37).chain([0.1, -0.1, 0.3, -0.3, 0.25]).collect();
        let alphas = [0.1f64, -0.3, 0.3, 0.25, 0.000_37 * 7.0, -0.4 + 1e-9, 0.123_456_789];
        for kind in kinds {
            for &alpha in &alphas {
                let (width, range) = (0.2 / 3.0, [-0.61, 0.7]);
                let filter = Filter { kind, alpha, width, range };
                let t = edges(kind, alpha, width, range);
                for &w in &weights {
                    assert_eq!(
                        shader_removes(filter_index(kind), t, w),
                        filter.removes(w),
                        "{kind:?} alpha {alpha} w {w}"
                    );
                }
            }
        }
    }
}
