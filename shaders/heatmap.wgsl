// The weight heatmap: one layer's weights, coloured by value or by class, with the
// removed weights of the current filter shaded. Everything the user moves (threshold,
// filter, colormap, zoom, view mode) is a uniform, so a new threshold costs one buffer
// write. The layout (weight_index) mirrors app/render/layout.rs; the colour tables mirror
// app/render/colormap.rs and app/render/palette.rs (a test parses this file to keep them
// equal), and the filter numbers render::heatmap::filter_index.

struct Params {
    // Visible window in cells: min x, min y, width, height.
    view: vec4<f32>,
    // cols, rows, texture width, weight count.
    grid: vec4<u32>,
    // out channels, in channels, kernel height, kernel width.
    conv: vec4<u32>,
    // kernels per tile row, tile width, tile height, tile columns.
    tile: vec4<u32>,
    // The filter's edges, rounded on the CPU so that these f32 comparisons equal the
    // engine's float64 ones: h0/h1 remove w <= x, h2 w >= x, h3 x <= w < y within [z, w].
    thresholds: vec4<f32>,
    // value range lo, hi (colormap), shade strength, unused.
    colour: vec4<f32>,
    // layout kind (0 matrix, 1 conv), filter kind (0 h0 .. 3 h3),
    // view mode (0 values, 1 classes clean, 2 classes adversarial), flags.
    mode: vec4<u32>,
    // colormap index, output is linear (sRGB framebuffer), unused, unused.
    cmap: vec4<u32>,
    background: vec4<f32>,
    shade: vec4<f32>,
};

// Flags in mode.w.
const FLAG_MASK: u32 = 1u;
const FLAG_CLASSES: u32 = 2u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var values: texture_2d<f32>;
@group(0) @binding(2) var classes: texture_2d<u32>;

// Colormap stops in sRGB bytes, evenly spaced over [0, 1].
const DIVERGING: array<vec3<f32>, 9> = array<vec3<f32>, 9>(
    vec3<f32>(33.0, 102.0, 172.0),
    vec3<f32>(67.0, 147.0, 195.0),
    vec3<f32>(146.0, 197.0, 222.0),
    vec3<f32>(209.0, 229.0, 240.0),
    vec3<f32>(247.0, 247.0, 247.0),
    vec3<f32>(253.0, 219.0, 199.0),
    vec3<f32>(244.0, 165.0, 130.0),
    vec3<f32>(214.0, 96.0, 77.0),
    vec3<f32>(178.0, 24.0, 43.0),
);

const VIRIDIS: array<vec3<f32>, 9> = array<vec3<f32>, 9>(
    vec3<f32>(68.0, 1.0, 84.0),
    vec3<f32>(71.0, 44.0, 122.0),
    vec3<f32>(59.0, 81.0, 139.0),
    vec3<f32>(44.0, 113.0, 142.0),
    vec3<f32>(33.0, 144.0, 141.0),
    vec3<f32>(39.0, 173.0, 129.0),
    vec3<f32>(92.0, 200.0, 99.0),
    vec3<f32>(170.0, 220.0, 50.0),
    vec3<f32>(253.0, 231.0, 37.0),
);

const GREY: array<vec3<f32>, 2> = array<vec3<f32>, 2>(
    vec3<f32>(0.0, 0.0, 0.0),
    vec3<f32>(255.0, 255.0, 255.0),
);

// Fragile, robust, antifragile (render::palette::CLASS_COLOURS, in Class::index order).
const CLASS_COLOURS: array<vec3<f32>, 3> = array<vec3<f32>, 3>(
    vec3<f32>(214.0, 39.0, 40.0),
    vec3<f32>(150.0, 150.0, 150.0),
    vec3<f32>(44.0, 160.0, 44.0),
);

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// Two triangles covering the callback's rectangle (egui sets the viewport to it).
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VertexOut {
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(0.0, 1.0), vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0),
    );
    let uv = corners[i];
    var out: VertexOut;
    out.position = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

// Linear interpolation between stops, like Colormap::at.
fn lerp_stops9(stops: array<vec3<f32>, 9>, t: f32) -> vec3<f32> {
    var s = stops;
    let x = clamp(t, 0.0, 1.0) * 8.0;
    let i = min(u32(floor(x)), 7u);
    let f = x - f32(i);
    return mix(s[i], s[i + 1u], f);
}

fn colormap(index: u32, t: f32) -> vec3<f32> {
    switch index {
        case 1u: { return lerp_stops9(VIRIDIS, t) / 255.0; }
        case 2u: {
            var g = GREY;
            return mix(g[0], g[1], clamp(t, 0.0, 1.0)) / 255.0;
        }
        default: { return lerp_stops9(DIVERGING, t) / 255.0; }
    }
}

// The flat index of the weight at a cell, or -1 for a gap (see Layout::index_at).
fn weight_index(x: u32, y: u32) -> i32 {
    let cols = params.grid.x;
    let rows = params.grid.y;
    if x >= cols || y >= rows {
        return -1;
    }
    if params.mode.x == 0u {
        return i32(y * cols + x);
    }
    let out_ch = params.conv.x;
    let in_ch = params.conv.y;
    let kh = params.conv.z;
    let kw = params.conv.w;
    let in_cols = params.tile.x;
    let tile_w = params.tile.y;
    let tile_h = params.tile.z;
    let tile_cols = params.tile.w;
    let tile = (y / tile_h) * tile_cols + x / tile_w;
    let lx = x % tile_w;
    let ly = y % tile_h;
    let in_rows = (in_ch + in_cols - 1u) / in_cols;
    if tile >= out_ch || lx >= in_cols * kw || ly >= in_rows * kh {
        return -1;
    }
    let k = (ly / kh) * in_cols + lx / kw;
    if k >= in_ch {
        return -1;
    }
    return i32(((tile * in_ch + k) * kh + ly % kh) * kw + lx % kw);
}

// SPEC section 2: what the filter at the current threshold removes.
fn removes(w: f32) -> bool {
    let t = params.thresholds;
    switch params.mode.y {
        case 0u: { return abs(w) <= t.x; }
        case 1u: { return w <= t.x; }
        case 2u: { return w >= t.x; }
        default: { return t.x <= w && w < t.y && t.z <= w && w <= t.w; }
    }
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let lo = c / 12.92;
    let hi = pow((c + 0.055) / 1.055, vec3<f32>(2.4));
    return select(hi, lo, c <= vec3<f32>(0.04045));
}

fn output(c: vec3<f32>) -> vec4<f32> {
    if params.cmap.y == 1u {
        return vec4<f32>(srgb_to_linear(c), 1.0);
    }
    return vec4<f32>(c, 1.0);
}

@fragment
fn fs_main(vin: VertexOut) -> @location(0) vec4<f32> {
    let cell = params.view.xy + vin.uv * params.view.zw;
    if cell.x < 0.0 || cell.y < 0.0 {
        return output(params.background.rgb);
    }
    let index = weight_index(u32(cell.x), u32(cell.y));
    if index < 0 || u32(index) >= params.grid.w {
        return output(params.background.rgb);
    }
    let tw = params.grid.z;
    let texel = vec2<i32>(index % i32(tw), index / i32(tw));
    let w = textureLoad(values, texel, 0).r;
    var colour: vec3<f32>;
    let mode = params.mode.z;
    if mode == 0u || (params.mode.w & FLAG_CLASSES) == 0u {
        let lo = params.colour.x;
        let hi = params.colour.y;
        colour = colormap(params.cmap.x, (w - lo) / max(hi - lo, 1e-12));
    } else {
        let packed = textureLoad(classes, texel, 0).r;
        let cls = select(packed & 3u, (packed >> 2u) & 3u, mode == 2u);
        var table = CLASS_COLOURS;
        colour = table[min(cls, 2u)] / 255.0;
    }
    if (params.mode.w & FLAG_MASK) != 0u && removes(w) {
        // Removed weights: darkened, with diagonal stripes so they read on any colour
        // (render::heatmap::STRIPE is the 0.6, and the mask view's legend paints the same).
        let stripe = (u32(vin.position.x + vin.position.y) / 3u) % 2u == 0u;
        let strength = select(params.colour.z, params.colour.z * 0.6, stripe);
        colour = mix(colour, params.shade.rgb, strength);
    }
    return output(colour);
}
