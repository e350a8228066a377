//! Strided 2-D transposes in 16x16 tiles, in registers when the CPU has AVX-512: the
//! direct convolution's layout changes, element by element, took 16 % of a sweep step.

/// Side of a tile.
pub(super) const TILE: usize = 16;

/// `dst[s * dst_stride + j] = src[j * src_stride + s]` for `j < rows`, `s < cols`: whole
/// tiles at once, the edges element by element.
pub(super) fn transpose(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize, rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src.len() > (rows - 1) * src_stride + cols - 1 && dst.len() > (cols - 1) * dst_stride + rows - 1,
        "transpose: operand too short"
    );
    let (full_rows, full_cols) = (rows - rows % TILE, cols - cols % TILE);
    if avx512() {
        for j in (0..full_rows).step_by(TILE) {
            for s in (0..full_cols).step_by(TILE) {
                // SAFETY: the CPU has AVX-512F; the assert keeps the tile's 16 rows of 16
                // elements (j + 15 < rows, s + 15 < cols) inside both slices.
                unsafe {
                    tile_avx512(
                        src.as_ptr().add(j * src_stride + s),
                        &std::array::from_fn(|k| k * src_stride),
                        dst.as_mut_ptr().add(s * dst_stride + j),
                        &std::array::from_fn(|k| k * dst_stride),
                    )
                }
            }
        }
    } else {
        scalar(src, src_stride, dst, dst_stride, 0..full_rows, 0..full_cols);
    }
    scalar(src, src_stride, dst, dst_stride, 0..full_rows, full_cols..cols);
    scalar(src, src_stride, dst, dst_stride, full_rows..rows, 0..cols);
}

fn scalar(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    for j in rows {
        for s in cols.clone() {
            dst[s * dst_stride + j] = src[j * src_stride + s];
        }
    }
}

/// One tile between any rows: `dst[dst_rows[r] + k] = src[src_rows[k] + r]` for r, k < 16.
pub(super) fn tile(src: &[f32], src_rows: &[usize; TILE], dst: &mut [f32], dst_rows: &[usize; TILE]) {
    assert!(
        src_rows.iter().all(|&o| o + TILE <= src.len()) && dst_rows.iter().all(|&o| o + TILE <= dst.len()),
        "tile: a row outside its slice"
    );
    if avx512() {
        // SAFETY: the CPU has AVX-512F and the assert keeps every row inside its slice.
        unsafe { tile_avx512(src.as_ptr(), src_rows, dst.as_mut_ptr(), dst_rows) };
        return;
    }
    for (r, &d) in dst_rows.iter().enumerate() {
        for (k, &s) in src_rows.iter().enumerate() {
            dst[d + k] = src[s + r];
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) fn avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn avx512() -> bool {
    false
}

/// One 16x16 tile: unpack pairs of rows, shuffle pairs of pairs (each 128-bit lane then
/// holds four rows of one column), and transpose the 4x4 grid of lanes in two rounds.
///
/// # Safety
/// The CPU must have AVX-512F; rows `src + src_rows[k]` and `dst + dst_rows[k]` (k < 16)
/// must each hold 16 readable (writable) elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(src: *const f32, src_rows: &[usize; TILE], dst: *mut f32, dst_rows: &[usize; TILE]) {
    use std::arch::x86_64::*;
    // SAFETY (for the loads and stores below): the caller's contract.
    let r: [__m512; 16] = std::array::from_fn(|k| unsafe { _mm512_loadu_ps(src.add(src_rows[k])) });
    let t: [__m512; 16] = std::array::from_fn(|k| {
        let (a, b) = (r[k & !1], r[k | 1]);
        if k % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
    });
    // u[4g + m], lane i: rows 4g..4g+4 of column 4i + m.
    let u: [__m512; 16] = std::array::from_fn(|k| {
        let (g, m) = (k / 4, k % 4);
        let (a, b) = (t[4 * g + (m / 2)], t[4 * g + 2 + (m / 2)]);
        if m % 2 == 0 { _mm512_shuffle_ps::<0x44>(a, b) } else { _mm512_shuffle_ps::<0xEE>(a, b) }
    });
    for m in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
        let cols = [
            (m, _mm512_shuffle_f32x4::<0x88>(v0, v2)),
            (m + 4, _mm512_shuffle_f32x4::<0x88>(v1, v3)),
            (m + 8, _mm512_shuffle_f32x4::<0xDD>(v0, v2)),
            (m + 12, _mm512_shuffle_f32x4::<0xDD>(v1, v3)),
        ];
        for (c, v) in cols {
            unsafe { _mm512_storeu_ps(dst.add(dst_rows[c]), v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_between_any_rows() {
        let src: Vec<f32> = (0..400).map(|v| v as f32).collect();
        let src_rows: [usize; TILE] = std::array::from_fn(|k| (k * 37) % 300);
        let dst_rows: [usize; TILE] = std::array::from_fn(|r| 16 * ((r * 5) % 16));
        let mut dst = vec![-1f32; 256];
        tile(&src, &src_rows, &mut dst, &dst_rows);
        for r in 0..TILE {
            for k in 0..TILE {
                assert_eq!(dst[dst_rows[r] + k], src[src_rows[k] + r], "({r}, {k})");
            }
        }
    }

    #[test]
    fn transposes_every_shape_like_the_definition() {
        for (rows, cols, ss, ds) in [(16, 16, 16, 16), (37, 50, 53, 41), (5, 3, 7, 9), (32, 17, 20, 33), (1, 40, 40, 1)]
        {
            let src: Vec<f32> = (0..rows * ss).map(|v| v as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![f32::NAN; cols * ds];
            transpose(&src, ss, &mut dst, ds, rows, cols);
            for j in 0..rows {
                for s in 0..cols {
                    assert_eq!(dst[s * ds + j], src[j * ss + s], "{rows}x{cols}: ({j}, {s})");
                }
            }
            // Elements outside the transposed block stay untouched.
            let written =
                (0..cols).flat_map(|s| (0..rows).map(move |j| s * ds + j)).collect::<std::collections::HashSet<_>>();
            assert!(dst.iter().enumerate().all(|(i, v)| written.contains(&i) || v.is_nan()), "{rows}x{cols}");
        }
    }
}
