//! Where each weight of a layer sits in the heatmap: convolution kernels tiled per output
//! channel, linear weights as a matrix. shaders/heatmap.wgsl computes the same mapping
//! (`weight_index`), so the tooltip names the weight the GPU painted.

/// A layer's weights laid out on a grid of cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub kind: LayoutKind,
    /// Grid size in cells.
    pub cols: u32,
    pub rows: u32,
    pub out_ch: u32,
    pub in_ch: u32,
    pub kh: u32,
    pub kw: u32,
    /// Kernels per row inside a tile.
    pub in_cols: u32,
    /// Tile size in cells, one cell of gap included.
    pub tile_w: u32,
    pub tile_h: u32,
    pub tile_cols: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// Row `o`, column `i`: weight `[o, i]` (anything not 4-D is flattened to `[d0, rest]`).
    Matrix = 0,
    /// One tile per output channel, the input channels' kernels in a grid inside it.
    Conv = 1,
}

impl Layout {
    pub fn for_shape(shape: &[usize]) -> Self {
        let d = |i: usize| shape.get(i).copied().unwrap_or(1).max(1) as u32;
        if shape.len() == 4 {
            let (out_ch, in_ch, kh, kw) = (d(0), d(1), d(2), d(3));
            // Kernels per tile row: the divisor of the input channels nearest the square root
            // at or above it (32 -> 8 x 4), so tiles are full rectangles; else the ceiling.
            let root = (in_ch as f64).sqrt().ceil() as u32;
            let in_cols = (root..=(2 * root).min(in_ch)).find(|c| in_ch % c == 0).unwrap_or(root);
            let in_rows = in_ch.div_ceil(in_cols);
            let tile_w = in_cols * kw + 1;
            let tile_h = in_rows * kh + 1;
            // As many tile columns as make the whole grid roughly square.
            let tile_cols = ((out_ch as f64 * tile_h as f64 / tile_w as f64).sqrt().ceil() as u32).clamp(1, out_ch);
            let tile_rows = out_ch.div_ceil(tile_cols);
            return Self {
                kind: LayoutKind::Conv,
                cols: tile_cols * tile_w - 1,
                rows: tile_rows * tile_h - 1,
                out_ch,
                in_ch,
                kh,
                kw,
                in_cols,
                tile_w,
                tile_h,
                tile_cols,
            };
        }
        let rows = d(0);
        let cols = if shape.len() <= 1 { 1 } else { shape[1..].iter().product::<usize>().max(1) as u32 };
        let (rows, cols) = if shape.len() <= 1 { (1, rows) } else { (rows, cols) };
        Self {
            kind: LayoutKind::Matrix,
            cols,
            rows,
            out_ch: rows,
            in_ch: cols,
            kh: 1,
            kw: 1,
            in_cols: 1,
            tile_w: 1,
            tile_h: 1,
            tile_cols: 1,
        }
    }

    /// The flat (row-major) index of the weight at cell (x, y), or None for a gap.
    pub fn index_at(&self, x: u32, y: u32) -> Option<usize> {
        if x >= self.cols || y >= self.rows {
            return None;
        }
        match self.kind {
            LayoutKind::Matrix => Some(y as usize * self.cols as usize + x as usize),
            LayoutKind::Conv => {
                let tile = (y / self.tile_h) * self.tile_cols + x / self.tile_w;
                let (lx, ly) = (x % self.tile_w, y % self.tile_h);
                let in_rows = self.in_ch.div_ceil(self.in_cols);
                if tile >= self.out_ch || lx >= self.in_cols * self.kw || ly >= in_rows * self.kh {
                    return None;
                }
                let k = (ly / self.kh) * self.in_cols + lx / self.kw;
                if k >= self.in_ch {
                    return None;
                }
                let (ky, kx) = (ly % self.kh, lx % self.kw);
                Some((((tile * self.in_ch + k) * self.kh + ky) * self.kw + kx) as usize)
            }
        }
    }

    /// The weight's multi-index in the tensor, for the tooltip.
    pub fn unravel(shape: &[usize], mut index: usize) -> Vec<usize> {
        let mut out = vec![0; shape.len()];
        for (i, &d) in shape.iter().enumerate().rev() {
            let d = d.max(1);
            out[i] = index % d;
            index /= d;
        }
        out
    }

    /// Width over height of the grid.
    pub fn aspect(&self) -> f32 {
        self.cols as f32 / self.rows.max(1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_conv_weight_appears_exactly_once() {
        for shape in [[32usize, 1, 3, 3], [64, 32, 3, 3], [5, 3, 1, 1], [7, 10, 5, 3]] {
            let l = Layout::for_shape(&shape);
            let n: usize = shape.iter().product();
            let mut seen = vec![0u8; n];
            for y in 0..l.rows {
                for x in 0..l.cols {
                    if let Some(i) = l.index_at(x, y) {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{shape:?}");
        }
    }

    #[test]
    fn matrices_are_row_major_and_multi_indices_unravel() {
        let l = Layout::for_shape(&[128, 3136]);
        assert_eq!((l.cols, l.rows, l.kind), (3136, 128, LayoutKind::Matrix));
        assert_eq!(l.index_at(5, 2), Some(2 * 3136 + 5));
        assert_eq!(l.index_at(3136, 0), None);
        assert_eq!(Layout::unravel(&[64, 32, 3, 3], 32 * 9 + 9 + 4), vec![1, 1, 1, 1]);
    }
}
