//! The mask view: the selected layer's weights as a GPU heatmap, coloured by value or by
//! class, the removed weights of the current filter shaded; zoom, pan and a tooltip. Axes
//! name the weight indices (or the tiles' output channels) and follow zoom and pan; a
//! colorbar or a class legend sits beside the map.

use egui::{Color32, Pos2, Rect, Sense, Stroke, Vec2};

use super::widgets::map::{self, MapAxis};
use super::widgets::plot::Axis;
use super::widgets::{empty_note, export_button};
use crate::engine::analysis::scores::Class;
use crate::render::colormap::Colormap;
use crate::render::heatmap::{HeatmapCallback, HeatmapStyle, Upload};
use crate::render::layout::{Layout, LayoutKind};
use crate::ui::actions::FigureId;
use crate::ui::app::ExplorerApp;
use crate::ui::settings::ViewMode;
use crate::ui::theme;

/// Zoom and pan of the heatmap, in cells.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskView {
    pub zoom: f32,
    pub centre: Option<[f32; 2]>,
}

impl MaskView {
    pub fn reset_view(&mut self) {
        *self = Self::default();
    }

    /// The visible window (min x, min y, width, height) in cells for a rectangle.
    fn window(&self, layout: &Layout, rect: Rect) -> [f32; 4] {
        let (cols, rows) = (layout.cols as f32, layout.rows as f32);
        // Keep cells square unless the grid is far from the rectangle's shape (a wide
        // linear layer), where stretching shows all of it.
        let aspect = layout.aspect() / (rect.width() / rect.height().max(1.0));
        let (w, h) = if (0.25..=4.0).contains(&aspect) {
            let scale = (rect.width() / cols).min(rect.height() / rows);
            (rect.width() / scale, rect.height() / scale)
        } else {
            (cols, rows)
        };
        let z = if self.zoom > 0.0 { self.zoom } else { 1.0 };
        let [cx, cy] = self.centre.unwrap_or([cols / 2.0, rows / 2.0]);
        let (w, h) = (w / z, h / z);
        [cx - w / 2.0, cy - h / 2.0, w, h]
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, app: &mut ExplorerApp) {
        let Some(layer) = app.session.layer.clone() else {
            empty_note(ui, "Choose a layer in the model panel");
            return;
        };
        let classes = app.session.classes.get(&layer.name).cloned();
        ui.horizontal_wrapped(|ui| {
            ui.strong(&layer.name);
            egui::ComboBox::from_label("Colormap").selected_text(app.settings.colormap.name()).show_ui(ui, |ui| {
                for c in Colormap::ALL {
                    ui.selectable_value(&mut app.settings.colormap, c, c.name());
                }
            });
            ui.radio_value(&mut app.settings.view_mode, ViewMode::Values, "Values");
            ui.add_enabled_ui(classes.is_some(), |ui| {
                ui.radio_value(&mut app.settings.view_mode, ViewMode::ClassesClean, "Classes (clean)")
                    .on_disabled_hover_text("Run an h3 sweep of this layer (Characterise all layers) first");
                ui.radio_value(&mut app.settings.view_mode, ViewMode::ClassesAdversarial, "Classes (adversarial)");
            });
            ui.checkbox(&mut app.settings.shade_removed, "Shade removed");
            if ui.button("Reset view").clicked() {
                self.reset_view();
            }
            export_button(ui, app, FigureId::Mask);
        });
        let layout = Layout::for_shape(&layer.shape);
        if let Some(caption) = tile_caption(&layout) {
            ui.weak(caption);
        }
        let filter = app.current_filter(layer.min as f64, layer.max as f64);
        let value_range = match app.settings.colormap {
            Colormap::Diverging => [-layer.max_abs, layer.max_abs],
            _ => [layer.min, layer.max],
        };
        let view_mode = match (app.settings.view_mode, classes.is_some()) {
            (ViewMode::ClassesClean, true) => 1,
            (ViewMode::ClassesAdversarial, true) => 2,
            _ => 0,
        };
        // Beside the map: the colorbar or the class legend, and what the shade means.
        let bar_range = [value_range[0] as f64, value_range[1] as f64];
        let removed = format!("removed by {}", app.settings.filter.name());
        let mut entries = if view_mode == 0 { Vec::new() } else { map::class_entries() };
        if app.settings.shade_removed {
            let base = match view_mode {
                0 => theme::rgb(app.settings.colormap.at(0.5)),
                _ => theme::class(Class::Robust),
            };
            entries.push((map::Swatch::Shaded { base, shade: theme::HEATMAP_SHADE }, removed.as_str()));
        }
        let legend_title = match view_mode {
            0 => "",
            1 => "class (clean)",
            _ => "class (adversarial)",
        };
        let names: Vec<&str> = entries.iter().map(|e| e.1).collect();
        let mut band_w = map::legend_width(ui, legend_title, &names);
        if view_mode == 0 {
            band_w = band_w.max(map::colorbar_width(ui, bar_range));
        }

        // The map sits at the top left of the space, its axes to the left and below, its
        // colorbar or legend right beside it: no empty band above the weights.
        let (outer, _) = ui.allocate_exact_size(ui.available_size().max(Vec2::splat(50.0)), Sense::hover());
        let area = Rect::from_min_max(
            outer.min + Vec2::new(map::LEFT, 4.0),
            (outer.max - Vec2::new(band_w, map::BOTTOM)).max(outer.min + Vec2::new(map::LEFT + 20.0, 24.0)),
        );
        let rect = fit(&layout, area);
        let response = ui.interact(rect, ui.make_persistent_id("mask_heatmap"), Sense::click_and_drag());
        let band =
            Rect::from_min_max(Pos2::new(rect.right(), rect.top()), Pos2::new(rect.right() + band_w, rect.bottom()));

        // Pan by dragging, zoom towards the pointer by scrolling, reset by double click.
        let mut window = self.window(&layout, rect);
        if response.dragged() {
            let d = response.drag_delta();
            let [cx, cy] = self.centre.unwrap_or([window[0] + window[2] / 2.0, window[1] + window[3] / 2.0]);
            self.centre = Some([cx - d.x * window[2] / rect.width(), cy - d.y * window[3] / rect.height()]);
        }
        if response.double_clicked() {
            self.reset_view();
        }
        if let Some(pos) = response.hover_pos() {
            let scroll = ui.input(|i| i.smooth_scroll_delta.y);
            if scroll != 0.0 {
                let before = cell_at(window, rect, pos);
                let old = if self.zoom > 0.0 { self.zoom } else { 1.0 };
                self.zoom = (old * (scroll * 0.003).exp()).clamp(0.5, 400.0);
                let w = self.window(&layout, rect);
                let [cx, cy] = self.centre.unwrap_or([w[0] + w[2] / 2.0, w[1] + w[3] / 2.0]);
                let after = cell_at(w, rect, pos);
                self.centre = Some([cx + before[0] - after[0], cy + before[1] - after[1]]);
            }
        }
        window = self.window(&layout, rect);

        let style = HeatmapStyle {
            view: window,
            filter: filter.kind,
            alpha: filter.alpha,
            width: filter.width,
            range: filter.range,
            value_range,
            shade_removed: app.settings.shade_removed,
            view_mode,
            colormap: app.settings.colormap.index(),
        };
        if app.gpu {
            let packed = classes.as_ref().map(|(key, c)| Upload { key: *key, data: c.packed.clone() });
            let cb = HeatmapCallback {
                layout,
                style,
                values: Upload { key: app.session.layer_key, data: layer.values.clone() },
                classes: packed,
            };
            ui.painter().add(egui_wgpu::Callback::new_paint_callback(rect, cb));
        } else {
            ui.painter().rect_filled(rect, 0.0, theme::HEATMAP_BACKGROUND);
            ui.painter().text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "The heatmap needs the wgpu renderer",
                egui::FontId::proportional(14.0),
                Color32::WHITE,
            );
        }
        ui.painter().rect_stroke(
            rect,
            0.0,
            Stroke::new(1.0, ui.visuals().widgets.noninteractive.bg_stroke.color),
            egui::StrokeKind::Outside,
        );
        let id = ui.make_persistent_id("mask_axes");
        let (x, y) = tick_axes(&layout, window, rect);
        map::axes(ui, id, rect, &x, &y);
        if view_mode == 0 {
            // The colorbar, and below it what the shade means.
            let line = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
            let below = entries.len() as f32 * line;
            let bar = Rect::from_min_max(
                band.min,
                Pos2::new(band.right(), (band.bottom() - below - 4.0).max(band.top() + 40.0)),
            );
            map::colorbar(ui, id.with("colorbar"), bar, app.settings.colormap, bar_range, "weight value");
            let rest = Rect::from_min_max(Pos2::new(band.left(), bar.bottom() + 4.0), band.max);
            map::legend(ui, id.with("shade"), rest, "", &entries);
        } else {
            map::legend(ui, id.with("legend"), band, legend_title, &entries);
        }

        let hovered = response.hover_pos().map(|pos| cell_at(window, rect, pos));
        if let Some([x, y]) = hovered
            && x >= 0.0
            && y >= 0.0
            && let Some(i) = layout.index_at(x as u32, y as u32).filter(|&i| i < layer.values.len())
        {
            let w = layer.values[i];
            let idx = Layout::unravel(&layer.shape, i);
            let mut text = format!("weight {idx:?} = {w:.5}");
            if filter.removes(w) {
                text.push_str("\nremoved by the filter");
            }
            if let Some((_, c)) = &classes {
                let name = |k: u8| Class::from_index(k as usize).name();
                text.push_str(&format!("\nclass: {} (clean), {} (adversarial)", name(c.clean[i]), name(c.adv[i])));
            }
            response.on_hover_text_at_pointer(text);
        }
    }
}

fn cell_at(window: [f32; 4], rect: Rect, pos: Pos2) -> [f32; 2] {
    let u = (pos - rect.min) / rect.size();
    [window[0] + u.x * window[2], window[1] + u.y * window[3]]
}

/// The largest rectangle at the top left of `area` with the grid's shape, so cells are square;
/// a grid far from the area's shape (a wide linear layer) is stretched over all of it.
fn fit(layout: &Layout, area: Rect) -> Rect {
    let (cols, rows) = (layout.cols as f32, layout.rows as f32);
    let aspect = layout.aspect() / (area.width() / area.height().max(1.0));
    if (0.25..=4.0).contains(&aspect) {
        let scale = (area.width() / cols).min(area.height() / rows);
        Rect::from_min_size(area.min, Vec2::new(cols * scale, rows * scale))
    } else {
        area
    }
}

/// What a tile of a convolution layer shows, above the map.
fn tile_caption(layout: &Layout) -> Option<String> {
    if layout.kind != LayoutKind::Conv {
        return None;
    }
    let (k, inp) = (format!("{}×{}", layout.kh, layout.kw), layout.in_ch);
    Some(if inp == 1 {
        format!("Each tile is one output channel's {k} kernel; its channel is its row's label plus its column's")
    } else {
        let rows = inp.div_ceil(layout.in_cols);
        format!(
            "Each tile is one output channel: its {inp} input kernels ({k}), {} across × {rows} down; its channel is its row's label plus its column's",
            layout.in_cols
        )
    })
}

/// The axes of the visible `window` (in cells) drawn in `rect`: weight indices of a matrix,
/// or the output channels of the tiles of a convolution.
fn tick_axes(layout: &Layout, window: [f32; 4], rect: Rect) -> (MapAxis, MapAxis) {
    let [wx, wy, ww, wh] = window;
    // Items `size` cells apart (content centred `offset` cells in), `n` of them: those in the
    // window, with the axis length shortened to theirs so labels keep their spacing.
    let axis = |axis: Axis, lo: f32, len: f32, size: f32, offset: f32, n: u32, vertical: bool| {
        let (start, extent) = if vertical { (rect.top(), rect.height()) } else { (rect.left(), rect.width()) };
        let at = |i: f64| start + ((i as f32 * size + offset) - lo) / len * extent;
        let (a, b) = (((lo - offset) / size) as f64, ((lo + len - offset) / size) as f64);
        let (c, d) = (a.max(-0.5), b.min(n as f64 - 0.5));
        let length = if b > a { extent * ((d - c) / (b - a)).max(0.0) as f32 } else { 0.0 };
        if vertical { MapAxis::vertical(&axis, c, d, length, at) } else { MapAxis::new(&axis, c, d, length, at) }
    };
    match layout.kind {
        LayoutKind::Matrix => (
            axis(Axis::new("input i (weight column)").integers(), wx, ww, 1.0, 0.5, layout.cols, false),
            axis(Axis::new("output o (weight row)").integers(), wy, wh, 1.0, 0.5, layout.rows, true),
        ),
        LayoutKind::Conv => {
            let tile_rows = layout.out_ch.div_ceil(layout.tile_cols);
            let cols: Vec<String> = (0..layout.tile_cols).map(|c| format!("+{c}")).collect();
            let rows: Vec<String> = (0..tile_rows).map(|r| (r * layout.tile_cols).to_string()).collect();
            let (tw, th) = (layout.tile_w as f32, layout.tile_h as f32);
            // A tile's content is one cell narrower than the tile (the gap after it).
            (
                axis(
                    Axis::new("output channel: + column").categories(cols),
                    wx,
                    ww,
                    tw,
                    (tw - 1.0) / 2.0,
                    layout.tile_cols,
                    false,
                ),
                axis(Axis::new("output channel: row").categories(rows), wy, wh, th, (th - 1.0) / 2.0, tile_rows, true),
            )
        }
    }
}
