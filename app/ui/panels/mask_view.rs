//! The mask view: the selected layer's weights as a GPU heatmap, coloured by value or by
//! class, the removed weights of the current filter shaded; zoom, pan and a tooltip.

use egui::{Color32, Mesh, Pos2, Rect, Sense, Stroke, Vec2};

use super::widgets::{empty_note, export_button};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::sweep::Scope;
use crate::render::colormap::Colormap;
use crate::render::heatmap::{HeatmapCallback, HeatmapStyle, Upload};
use crate::render::layout::Layout;
use crate::ui::actions::FigureId;
use crate::ui::app::ExplorerApp;
use crate::ui::settings::ViewMode;
use crate::ui::theme;

const COLORBAR_WIDTH: f32 = 88.0;

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
        let avail = ui.available_size();
        let (rect, response) = ui.allocate_exact_size(
            Vec2::new((avail.x - COLORBAR_WIDTH).max(50.0), avail.y.max(50.0)),
            Sense::click_and_drag(),
        );
        let bar_rect =
            Rect::from_min_size(rect.right_top() + Vec2::new(8.0, 0.0), Vec2::new(COLORBAR_WIDTH - 8.0, rect.height()));

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

        let (range, width) = filter_range(app, layer.min as f64, layer.max as f64);
        let value_range = match app.settings.colormap {
            Colormap::Diverging => [-layer.max_abs, layer.max_abs],
            _ => [layer.min, layer.max],
        };
        let view_mode = match (app.settings.view_mode, classes.is_some()) {
            (ViewMode::ClassesClean, true) => 1,
            (ViewMode::ClassesAdversarial, true) => 2,
            _ => 0,
        };
        let style = HeatmapStyle {
            view: window,
            filter_kind: filter_index(app.settings.filter),
            alpha: app.settings.threshold,
            width,
            range,
            value_range,
            shade_removed: app.settings.shade_removed,
            view_mode,
            colormap: app.settings.colormap.index(),
            background: theme::rgb_f32(theme::HEATMAP_BACKGROUND),
            shade: theme::rgb_f32(theme::HEATMAP_SHADE),
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
        if view_mode == 0 {
            colorbar(ui, bar_rect, app.settings.colormap, value_range);
        } else {
            class_legend(ui, bar_rect);
        }

        let hovered = response.hover_pos().map(|pos| cell_at(window, rect, pos));
        if let Some([x, y]) = hovered
            && x >= 0.0
            && y >= 0.0
            && let Some(i) = layout.index_at(x as u32, y as u32).filter(|&i| i < layer.values.len())
        {
            let w = layer.values[i];
            let idx = Layout::unravel(&layer.shape, i);
            let filter = crate::engine::analysis::filter::Filter {
                kind: app.settings.filter,
                alpha: app.settings.threshold,
                width,
                range,
            };
            let mut text = format!("weight {idx:?} = {w:.5}");
            if filter.removes(w) {
                text.push_str("\nremoved by the filter");
            }
            if let Some((_, c)) = &classes {
                let name = |k: u8| ["fragile", "robust", "antifragile"][(k as usize).min(2)];
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

pub fn filter_index(kind: FilterKind) -> u32 {
    match kind {
        FilterKind::H0 => 0,
        FilterKind::H1 => 1,
        FilterKind::H2 => 2,
        FilterKind::H3 => 3,
    }
}

/// The sweep range and pulse width the current filter uses (SPEC section 3).
pub fn filter_range(app: &ExplorerApp, lo: f64, hi: f64) -> ([f64; 2], f64) {
    let range = match app.settings.scope {
        Scope::Local => [lo, hi],
        Scope::Global => app.settings.global_range,
    };
    let width = if app.settings.filter == FilterKind::H3 {
        (range[1] - range[0]) / app.settings.steps.max(1) as f64
    } else {
        0.0
    };
    (range, width)
}

fn colorbar(ui: &mut egui::Ui, rect: Rect, cmap: Colormap, range: [f32; 2]) {
    let bar = Rect::from_min_size(rect.min + Vec2::new(0.0, 8.0), Vec2::new(14.0, rect.height() - 16.0));
    let mut mesh = Mesh::default();
    let steps = 32;
    for i in 0..steps {
        let t0 = i as f32 / steps as f32;
        let t1 = (i + 1) as f32 / steps as f32;
        let [r, g, b] = cmap.at(1.0 - (t0 + t1) / 2.0);
        let r_ = Rect::from_min_max(
            Pos2::new(bar.left(), bar.top() + t0 * bar.height()),
            Pos2::new(bar.right(), bar.top() + t1 * bar.height() + 0.5),
        );
        mesh.add_colored_rect(r_, Color32::from_rgb(r, g, b));
    }
    let p = ui.painter();
    p.add(mesh);
    let font = egui::FontId::proportional(11.0);
    let colour = ui.visuals().text_color();
    for (t, v) in [(0.0, range[1]), (0.5, (range[0] + range[1]) / 2.0), (1.0, range[0])] {
        p.text(
            Pos2::new(bar.right() + 3.0, bar.top() + t * bar.height()),
            egui::Align2::LEFT_CENTER,
            format!("{v:.2}"),
            font.clone(),
            colour,
        );
    }
}

fn class_legend(ui: &mut egui::Ui, rect: Rect) {
    let p = ui.painter();
    let font = egui::FontId::proportional(11.0);
    for (i, name) in ["fragile", "robust", "antifragile"].iter().enumerate() {
        let y = rect.top() + 12.0 + i as f32 * 20.0;
        p.rect_filled(
            Rect::from_min_size(Pos2::new(rect.left(), y - 6.0), Vec2::splat(12.0)),
            2.0,
            theme::class_colour(i),
        );
        p.text(
            Pos2::new(rect.left() + 16.0, y),
            egui::Align2::LEFT_CENTER,
            *name,
            font.clone(),
            ui.visuals().text_color(),
        );
    }
}
