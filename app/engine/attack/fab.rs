//! FAB-T, the targeted Fast Adaptive Boundary attack (Croce and Hein 2020; METHOD.md section 4),
//! L-infinity: from the clean image it steps to the projection onto the linearised boundary
//! between the true and the target class, biased toward the clean image (alpha), overshooting
//! by eta, and steps back by beta once across; the smallest perturbation found counts if it is
//! within eps. The first run of each target starts at the clean image, so it is deterministic
//! and follows the reference step for step; further restarts start at seeded random points.

use candle_core::{DType, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::apgd::ranked_class;
use super::backward_to;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, ForwardCtx, Network};
use crate::engine::progress::StopFlag;

/// The reference's largest bias toward the clean image, overshoot and backward step.
const ALPHA_MAX: f64 = 0.1;
const ETA: f64 = 1.05;
const BETA: f64 = 0.9;
/// "Not found": the reference's 1e10.
const NOT_FOUND: f64 = 1e10;
/// Half-width of the box standing for "no image bounds" (normalised units): far beyond any
/// image, small enough for float64 sums to stay exact to well below a pixel step.
const UNBOUNDED: f64 = 1e6;

pub struct Fab<'a> {
    pub net: &'a Network,
    pub bn: BnMode,
    /// The L-infinity radius a perturbation must fit in to count.
    pub eps: f64,
    /// Iterations per target and restart.
    pub steps: usize,
    pub restarts: usize,
    /// Target classes, from the second highest clean logit down.
    pub targets: usize,
    pub seed: u64,
    /// Per-channel bounds of the image domain, when attacks clamp to it.
    pub bounds: Option<(Vec<f32>, Vec<f32>)>,
}

/// The rows of a batch on the host, and the box every row's values must stay in.
struct Rows<'a> {
    values: Vec<Vec<f32>>,
    /// Per value of a row, its lower and upper bound (the same for every row).
    lo: &'a [f64],
    hi: &'a [f64],
}

impl Fab<'_> {
    /// The adversarial batch, and which samples no target fooled within eps. `robust` says
    /// which samples are still to fool; `classes` is the network's output width.
    pub fn run(
        &self,
        x: &Tensor,
        labels: &[u32],
        mut robust: Vec<bool>,
        classes: usize,
        stop: &StopFlag,
    ) -> Result<(Tensor, Vec<bool>)> {
        if classes < 2 {
            return Err(EngineError::config("FAB-T needs a network with at least 2 classes"));
        }
        let (n, c, h, w) = x.dims4()?;
        let len = c * h * w;
        let clean: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let (lo, hi) = self.box_of(c, h * w);
        let mut adv = clean.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        for rank in 2..=(self.targets + 1).min(classes) {
            for restart in 0..self.restarts {
                let left: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
                if left.is_empty() {
                    break;
                }
                let rows = Rows {
                    values: left.iter().map(|&i| clean[i * len..(i + 1) * len].to_vec()).collect(),
                    lo: &lo,
                    hi: &hi,
                };
                let ys: Vec<u32> = left.iter().map(|&i| labels[i]).collect();
                let xs = self.tensor(&rows.values, x)?;
                let targets = ranked_class(&self.net.logits(&xs, self.bn)?, rank)?;
                let (best, dist) = self.single_run(&rows, &ys, &targets, restart > 0, x, &mut rng, stop)?;
                // What counts is how the network classifies the best point, and its distance.
                let preds: Vec<u32> = self.net.logits(&self.tensor(&best, x)?, self.bn)?.argmax(1)?.to_vec1()?;
                for (j, &i) in left.iter().enumerate() {
                    if preds[j] != ys[j] && dist[j] <= self.eps {
                        adv[i * len..(i + 1) * len].copy_from_slice(&best[j]);
                        robust[i] = false;
                    }
                }
            }
        }
        Ok((Tensor::from_vec(adv, x.shape(), x.device())?.to_dtype(x.dtype())?, robust))
    }

    /// Per value of a sample, the bounds of the image domain (or a box far beyond it).
    fn box_of(&self, channels: usize, per_channel: usize) -> (Vec<f64>, Vec<f64>) {
        (0..channels * per_channel)
            .map(|i| match &self.bounds {
                Some((lo, hi)) => (lo[i / per_channel] as f64, hi[i / per_channel] as f64),
                None => (-UNBOUNDED, UNBOUNDED),
            })
            .unzip()
    }

    fn tensor(&self, rows: &[Vec<f32>], like: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = like.dims4()?;
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(flat, (rows.len(), c, h, w), like.device())?.to_dtype(like.dtype())?)
    }

    /// `z_t - z_y` of each row and its input gradient.
    fn difference_and_gradient(
        &self,
        rows: &[Vec<f32>],
        ys: &[u32],
        ts: &[u32],
        like: &Tensor,
    ) -> Result<(Vec<f64>, Vec<Vec<f32>>)> {
        let xv = Var::from_tensor(&self.tensor(rows, like)?)?;
        let logits = self.net.forward(xv.as_tensor(), &mut ForwardCtx::input_grad(self.bn))?;
        let z: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        let k = z.first().map_or(0, Vec::len);
        let mut cot = vec![0f32; rows.len() * k];
        for (i, (&y, &t)) in ys.iter().zip(ts).enumerate() {
            cot[i * k + t as usize] += 1.0;
            cot[i * k + y as usize] -= 1.0;
        }
        let cot = Tensor::from_vec(cot, (rows.len(), k), logits.device())?.to_dtype(logits.dtype())?;
        let g: Vec<Vec<f32>> = backward_to(&xv, &logits, &cot)?.to_dtype(DType::F32)?.flatten_from(1)?.to_vec2()?;
        let df = z.iter().zip(ys.iter().zip(ts)).map(|(r, (&y, &t))| (r[t as usize] - r[y as usize]) as f64).collect();
        Ok((df, g))
    }

    /// One run toward each row's target: the best point found and its L-infinity distance
    /// (NOT_FOUND where none crossed).
    #[allow(clippy::too_many_arguments)]
    fn single_run(
        &self,
        rows: &Rows,
        ys: &[u32],
        ts: &[u32],
        random_start: bool,
        like: &Tensor,
        rng: &mut ChaCha8Rng,
        stop: &StopFlag,
    ) -> Result<(Vec<Vec<f32>>, Vec<f64>)> {
        let x0 = &rows.values;
        let mut best = x0.clone();
        let mut dist = vec![NOT_FOUND; x0.len()];
        let mut x1 = x0.clone();
        if random_start {
            for (row, start) in x1.iter_mut().zip(x0) {
                let t: Vec<f64> = (0..row.len()).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect();
                let top = t.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
                // The reference scales by min(best distance, eps) / 2; nothing is found yet.
                for (i, v) in row.iter_mut().enumerate() {
                    *v = self.clamp(start[i] as f64 + self.eps * t[i] / top * 0.5, rows, i);
                }
            }
        }
        for _ in 0..self.steps {
            if stop.is_stopped() {
                return Err(EngineError::Cancelled);
            }
            let (df, dg) = self.difference_and_gradient(&x1, ys, ts, like)?;
            for (j, row) in x1.iter_mut().enumerate() {
                let w: Vec<f64> = dg[j].iter().map(|&v| v as f64).collect();
                let here: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                let b = -df[j] + dot(&w, &here);
                let start: Vec<f64> = x0[j].iter().map(|&v| v as f64).collect();
                let d1 = project_linf(&here, &w, b, rows.lo, rows.hi);
                let d2 = project_linf(&start, &w, b, rows.lo, rows.hi);
                let (a1, a2) = (linf(&d1).max(1e-8), linf(&d2).max(1e-8));
                let alpha = (a1 / (a1 + a2)).clamp(0.0, ALPHA_MAX);
                for i in 0..row.len() {
                    let v = (here[i] + ETA * d1[i]) * (1.0 - alpha) + (start[i] + ETA * d2[i]) * alpha;
                    row[i] = self.clamp(v, rows, i);
                }
            }
            let preds: Vec<u32> = self.net.logits(&self.tensor(&x1, like)?, self.bn)?.argmax(1)?.to_vec1()?;
            for (j, row) in x1.iter_mut().enumerate() {
                if preds[j] == ys[j] {
                    continue;
                }
                let t = row.iter().zip(&x0[j]).fold(0f32, |m, (&a, &b)| m.max((a - b).abs())) as f64;
                if t < dist[j] {
                    best[j].clone_from(row);
                    dist[j] = t;
                }
                for (v, &s) in row.iter_mut().zip(&x0[j]) {
                    *v = (s as f64 + (*v - s) as f64 * BETA) as f32;
                }
            }
        }
        Ok((best, dist))
    }

    fn clamp(&self, v: f64, rows: &Rows, i: usize) -> f32 {
        v.clamp(rows.lo[i], rows.hi[i]) as f32
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn linf(d: &[f64]) -> f64 {
    d.iter().fold(0f64, |m, v| m.max(v.abs()))
}

/// The smallest L-infinity step `d` from `t` onto the hyperplane `w . x = b` within the box
/// `[lo, hi]`, or, when the box does not reach the hyperplane, the step to the box's nearest
/// corner (the reference's projection_linf, for one point and any box).
pub(super) fn project_linf(t: &[f64], w: &[f64], b: f64, lo: &[f64], hi: &[f64]) -> Vec<f64> {
    let n = t.len();
    // Orient the hyperplane so that t lies on its non-negative side.
    let sign = if dot(w, t) - b >= 0.0 { 1.0 } else { -1.0 };
    let w: Vec<f64> = w.iter().map(|v| v * sign).collect();
    let b = b * sign;
    // Moving toward the corner that lowers w . x: up where w < 0, down elsewhere.
    let up: Vec<bool> = w.iter().map(|&v| v < 0.0).collect();
    let mut d: Vec<f64> = (0..n)
        .map(|i| {
            if w[i] == 0.0 {
                0.0
            } else if up[i] {
                hi[i] - t[i]
            } else {
                lo[i] - t[i]
            }
        })
        .collect();
    let p: Vec<f64> = (0..n).map(|i| if up[i] { hi[i] - t[i] } else { t[i] - lo[i] }).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &c| p[a].total_cmp(&p[c]));
    let b = b - dot(&w, t);
    let b0 = dot(&w, &d);
    // Cumulative sums over the coordinates from the largest room p down.
    let (mut s, mut sb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut acc_s, mut acc_b) = (0.0, b0);
    for &i in order.iter().rev() {
        acc_s += w[i].abs();
        acc_b += -w[i] * d[i];
        s.push(acc_s);
        sb.push(acc_b);
    }
    let direction = |i: usize| if up[i] { 1.0 } else { -1.0 };
    let reaches_at_largest = b - (sb[n - 1] - s[n - 1] * p[order[0]]) > 0.0;
    if reaches_at_largest {
        let lambda = ((b - sb[n - 1]) / -s[n - 1]).max(0.0);
        for (i, v) in d.iter_mut().enumerate() {
            *v = direction(i) * lambda;
        }
    } else if b - b0 > 0.0 {
        // Bisection for how many coordinates saturate at their bound.
        let (mut lower, mut upper) = (0usize, n - 1);
        for _ in 0..(n as f64).log2().ceil() as usize {
            let mid = (lower + upper) / 2;
            let at = order[n - 1 - mid];
            if b - (sb[mid] - s[mid] * p[at]) > 0.0 {
                lower = mid;
            } else {
                upper = mid;
            }
        }
        let lambda = ((b - sb[lower]) / -s[lower]).max(0.0);
        for (i, v) in d.iter_mut().enumerate() {
            *v = if up[i] { v.min(lambda) } else { v.max(-lambda) };
        }
    }
    (0..n).map(|i| if w[i] == 0.0 { 0.0 } else { d[i] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The projection lands on the hyperplane with the smallest L-infinity step when the box
    /// allows, found here by brute force over the step size.
    #[test]
    fn projection_reaches_the_hyperplane_with_the_smallest_step() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let n = 2 + rng.random_range(0..6usize);
            let t: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
            let w: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
            let b = dot(&w, &t) + (rng.random::<f64>() - 0.5) * 0.6;
            let (lo, hi) = (vec![0.0; n], vec![1.0; n]);
            let d = project_linf(&t, &w, b, &lo, &hi);
            let x: Vec<f64> = t.iter().zip(&d).map(|(a, c)| a + c).collect();
            assert!(x.iter().all(|&v| (-1e-12..=1.0 + 1e-12).contains(&v)), "{x:?}");
            // The box's reach toward the hyperplane: the most w . x can move.
            let sign = if dot(&w, &t) >= b { -1.0 } else { 1.0 };
            let corner: Vec<f64> = w.iter().map(|&v| if (v * sign) > 0.0 { 1.0 } else { 0.0 }).collect();
            let reachable = (dot(&w, &corner) - b) * (dot(&w, &t) - b) <= 0.0;
            if reachable {
                assert!((dot(&w, &x) - b).abs() < 1e-9, "not on the hyperplane: {}", dot(&w, &x) - b);
                // No smaller step reaches it: the clipped move of size r is monotone in r.
                let r = linf(&d);
                let shrunk: Vec<f64> =
                    (0..n).map(|i| (t[i] + sign * w[i].signum() * (r * 0.999)).clamp(0.0, 1.0)).collect();
                assert!((dot(&w, &shrunk) - b) * (dot(&w, &t) - b) > 0.0, "a smaller step reaches it too");
            } else {
                assert_eq!(x, corner, "unreachable: the step goes to the corner");
            }
        }
    }
}
