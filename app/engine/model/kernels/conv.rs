//! 2-D convolution by im2col and gemm, forward and both backward passes.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_data, matmul, threads};

/// Convolution geometry (PyTorch's `nn.Conv2d` arguments, square stride and dilation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub stride: usize,
    pub padding: [usize; 2],
    pub dilation: usize,
    pub groups: usize,
}

/// Sizes of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    g: Geometry,
}

impl Dims {
    fn new(x: &[usize], k: &[usize], g: Geometry) -> Result<Self> {
        let (&[n, c_in, h, w], &[c_out, cig, kh, kw]) = (x, k) else {
            candle_core::bail!("conv2d expects 4-d input and kernel, got {x:?} and {k:?}")
        };
        if cig * g.groups != c_in || c_out % g.groups != 0 {
            candle_core::bail!("conv2d: input {x:?} does not fit kernel {k:?} with {} groups", g.groups)
        }
        let out = |len: usize, k: usize, p: usize| {
            (len + 2 * p).checked_sub(g.dilation * (k - 1) + 1).map(|v| v / g.stride + 1)
        };
        let (Some(oh), Some(ow)) = (out(h, kh, g.padding[0]), out(w, kw, g.padding[1])) else {
            candle_core::bail!("conv2d: kernel {kh}x{kw} does not fit a {h}x{w} input")
        };
        Ok(Self { n, c_in, h, w, c_out, kh, kw, oh, ow, g })
    }
    fn cin_g(&self) -> usize {
        self.c_in / self.g.groups
    }
    fn cout_g(&self) -> usize {
        self.c_out / self.g.groups
    }
    /// Rows of a group's column matrix.
    fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
    /// Output positions per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// A 1x1, stride-1, unpadded convolution needs no column matrix: the input is one.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.g.stride == 1 && self.g.padding == [0, 0]
    }
    /// Input row of output row `o` at kernel row `k`, if inside the image.
    #[inline]
    fn iy(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.g.stride + k * self.g.dilation).checked_sub(self.g.padding[0]).filter(|&v| v < self.h)
    }
    #[inline]
    fn ix(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.g.stride + k * self.g.dilation).checked_sub(self.g.padding[1]).filter(|&v| v < self.w)
    }
}

/// Fills `col` [k, p] with the patches of one group of one image `x` [cin_g, h, w].
fn im2col(d: &Dims, x: &[f32], col: &mut [f32]) {
    let (p, hw) = (d.p(), d.h * d.w);
    for c in 0..d.cin_g() {
        let plane = &x[c * hw..(c + 1) * hw];
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let row = &mut col[((c * d.kh + ky) * d.kw + kx) * p..][..p];
                for oy in 0..d.oh {
                    let out = &mut row[oy * d.ow..(oy + 1) * d.ow];
                    let Some(iy) = d.iy(oy, ky) else {
                        out.fill(0.0);
                        continue;
                    };
                    let line = &plane[iy * d.w..(iy + 1) * d.w];
                    if d.g.stride == 1 {
                        // Contiguous run: zeros where the kernel hangs over the edges.
                        let start = kx * d.g.dilation;
                        for (ox, o) in out.iter_mut().enumerate() {
                            *o = (ox + start).checked_sub(d.g.padding[1]).and_then(|ix| line.get(ix)).copied().unwrap_or(0.0);
                        }
                    } else {
                        for (ox, o) in out.iter_mut().enumerate() {
                            *o = d.ix(ox, kx).map_or(0.0, |ix| line[ix]);
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column gradient `col` [k, p] back into one group's input gradient `dx` [cin_g, h, w].
fn col2im(d: &Dims, col: &[f32], dx: &mut [f32]) {
    let (p, hw) = (d.p(), d.h * d.w);
    for c in 0..d.cin_g() {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let row = &col[((c * d.kh + ky) * d.kw + kx) * p..][..p];
                for oy in 0..d.oh {
                    let Some(iy) = d.iy(oy, ky) else { continue };
                    let line = &mut plane[iy * d.w..(iy + 1) * d.w];
                    for (ox, v) in row[oy * d.ow..(oy + 1) * d.ow].iter().enumerate() {
                        if let Some(ix) = d.ix(ox, kx) {
                            line[ix] += v;
                        }
                    }
                }
            }
        }
    }
}

struct Forward(Geometry, bool);

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "fe-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l1.dims(), l2.dims(), self.0)?;
        let (x, w) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let (k, p, cg) = (d.k(), d.p(), d.cout_g());
        let mut y = vec![0f32; d.n * d.c_out * p];
        let in_img = d.c_in * d.h * d.w;
        // Parallel over images when there are enough; otherwise inside each gemm.
        let by_image = d.n >= threads();
        let run = |(i, yi): (usize, &mut [f32])| {
            let xi = &x[i * in_img..(i + 1) * in_img];
            let mut col = if d.pointwise() { Vec::new() } else { vec![0f32; k * p] };
            for g in 0..d.g.groups {
                let xg = &xi[g * d.cin_g() * d.h * d.w..][..d.cin_g() * d.h * d.w];
                let cols: &[f32] = if d.pointwise() {
                    xg
                } else {
                    im2col(&d, xg, &mut col);
                    &col
                };
                let wg = &w[g * cg * k..(g + 1) * cg * k];
                matmul(cg, p, k, &mut yi[g * cg * p..(g + 1) * cg * p], false, wg, (k, 1), cols, (p, 1), !by_image);
            }
        };
        if by_image {
            y.par_chunks_mut(d.c_out * p).enumerate().for_each(run);
        } else {
            y.chunks_mut(d.c_out * p).enumerate().for_each(run);
        }
        Ok((CpuStorage::F32(y), Shape::from((d.n, d.c_out, d.oh, d.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(&w.contiguous()?, &BackwardInput(self.0, x.dims().to_vec()))?;
        let dw = if self.1 { Some(x.contiguous()?.apply_op2_no_bwd(&grad, &BackwardWeight(self.0, w.dims().to_vec()))?) } else { None };
        Ok((Some(dx), dw))
    }
}

/// dX from dY and W: the column gradient W^T dY, scattered back (col2im).
struct BackwardInput(Geometry, Vec<usize>);

impl CustomOp2 for BackwardInput {
    fn name(&self) -> &'static str {
        "fe-conv2d-backward-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(&self.1, l2.dims(), self.0)?;
        let (dy, w) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let (k, p, cg) = (d.k(), d.p(), d.cout_g());
        let in_img = d.c_in * d.h * d.w;
        let mut dx = vec![0f32; d.n * in_img];
        let by_image = d.n >= threads();
        let run = |(i, dxi): (usize, &mut [f32])| {
            let dyi = &dy[i * d.c_out * p..(i + 1) * d.c_out * p];
            let mut col = vec![0f32; k * p];
            for g in 0..d.g.groups {
                let wg = &w[g * cg * k..(g + 1) * cg * k];
                let dyg = &dyi[g * cg * p..(g + 1) * cg * p];
                let dxg = &mut dxi[g * d.cin_g() * d.h * d.w..][..d.cin_g() * d.h * d.w];
                if d.pointwise() {
                    matmul(k, p, cg, dxg, false, wg, (1, k), dyg, (p, 1), !by_image);
                } else {
                    matmul(k, p, cg, &mut col, false, wg, (1, k), dyg, (p, 1), !by_image);
                    col2im(&d, &col, dxg);
                }
            }
        };
        if by_image {
            dx.par_chunks_mut(in_img).enumerate().for_each(run);
        } else {
            dx.chunks_mut(in_img).enumerate().for_each(run);
        }
        Ok((CpuStorage::F32(dx), Shape::from(self.1.clone())))
    }
}

/// dW from X and dY: the sum over images of dY col(X)^T.
struct BackwardWeight(Geometry, Vec<usize>);

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "fe-conv2d-backward-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l1.dims(), &self.1, self.0)?;
        let (x, dy) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let (k, p, cg) = (d.k(), d.p(), d.cout_g());
        let in_img = d.c_in * d.h * d.w;
        let wlen = d.c_out * k;
        // Each thread sums its share of the images into its own buffer.
        let chunks = threads().min(d.n).max(1);
        let per = d.n.div_ceil(chunks);
        let partial: Vec<Vec<f32>> = (0..chunks)
            .into_par_iter()
            .map(|t| {
                let mut dw = vec![0f32; wlen];
                let mut col = if d.pointwise() { Vec::new() } else { vec![0f32; k * p] };
                for i in t * per..((t + 1) * per).min(d.n) {
                    let xi = &x[i * in_img..(i + 1) * in_img];
                    let dyi = &dy[i * d.c_out * p..(i + 1) * d.c_out * p];
                    for g in 0..d.g.groups {
                        let xg = &xi[g * d.cin_g() * d.h * d.w..][..d.cin_g() * d.h * d.w];
                        let cols: &[f32] = if d.pointwise() {
                            xg
                        } else {
                            im2col(&d, xg, &mut col);
                            &col
                        };
                        let dyg = &dyi[g * cg * p..(g + 1) * cg * p];
                        matmul(cg, k, p, &mut dw[g * cg * k..(g + 1) * cg * k], true, dyg, (p, 1), cols, (1, p), false);
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; wlen];
        for part in partial {
            for (a, b) in dw.iter_mut().zip(part) {
                *a += b;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(self.1.clone())))
    }
}

/// `x` [N, C, H, W] convolved with `w` [O, C/groups, KH, KW]; the weight gradient is
/// computed in backward only when `weight_grad` is set.
pub fn conv2d(x: &Tensor, w: &Tensor, g: Geometry, weight_grad: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Forward(g, weight_grad))
}
