//! The Square attack (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020): a score-based
//! black-box random search that never asks for a gradient. Each query changes one square
//! window of the perturbation, kept only where it lowers the margin between the true class and
//! the best other one; the window shrinks on a fixed schedule. L-infinity and L2, with the
//! reference implementation's initialisation, schedule and update (one window position per
//! query for the whole batch, as there).
//!
//! The search runs on host copies of the images: only the forward passes touch the device.

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::apgd::Norm;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::StopFlag;

/// The share of the image the first windows cover (p_init of the reference).
const P_INIT: f64 = 0.8;
/// Keeps L2 normalisations finite.
const TINY: f64 = 1e-12;

pub struct Square<'a> {
    pub net: &'a Network,
    pub bn: BnMode,
    pub norm: Norm,
    pub eps: f64,
    /// Queries per restart after the first (the reference's `n_queries`).
    pub queries: usize,
    pub restarts: usize,
    pub seed: u64,
    /// Per-channel bounds of the image domain, when clamped.
    pub bounds: Option<(Vec<f32>, Vec<f32>)>,
}

/// The shape of one image and where its channels lie in a flat row.
#[derive(Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
}

impl Geometry {
    fn len(self) -> usize {
        self.c * self.h * self.w
    }

    fn at(self, ch: usize, row: usize, col: usize) -> usize {
        (ch * self.h + row) * self.w + col
    }
}

/// A square window of side `s` with its top-left corner at (`top`, `left`).
#[derive(Clone, Copy)]
struct Window {
    top: usize,
    left: usize,
    s: usize,
}

impl Window {
    fn pixels(self) -> impl Iterator<Item = (usize, usize)> {
        (self.top..self.top + self.s).flat_map(move |r| (self.left..self.left + self.s).map(move |c| (r, c)))
    }

    fn contains(self, r: usize, c: usize) -> bool {
        (self.top..self.top + self.s).contains(&r) && (self.left..self.left + self.s).contains(&c)
    }
}

/// The reference's piecewise-constant schedule of the window's share of the image.
fn window_share(query: usize, queries: usize) -> f64 {
    let it = (query as f64 / queries.max(1) as f64 * 10_000.0) as usize;
    let halvings = match it {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    P_INIT / f64::from(1u32 << halvings)
}

fn random_sign(rng: &mut ChaCha8Rng) -> f64 {
    if rng.random_bool(0.5) { 1.0 } else { -1.0 }
}

/// A window corner in `0..room`, as the reference draws it (the last position never).
fn corner(rng: &mut ChaCha8Rng, room: usize) -> usize {
    if room == 0 { 0 } else { rng.random_range(0..room) }
}

/// Concentric rectangles of weight 1 / (k + 1)^2 around the centre of an `x` by `y` block,
/// normalised to unit L2 length (row-major).
fn rectangles(x: usize, y: usize) -> Vec<f64> {
    let mut d = vec![0.0; x * y];
    let (xc, yc) = (x as i64 / 2 + 1, y as i64 / 2 + 1);
    let (mut r0, mut c0) = (xc - 1, yc - 1);
    for k in 0..xc.max(yc) {
        let (r_lo, r_hi) = (r0.max(0) as usize, ((r0 + 2 * k + 1).min(x as i64)).max(0) as usize);
        let (c_lo, c_hi) = (c0.max(0) as usize, ((c0 + 2 * k + 1).min(y as i64)).max(0) as usize);
        for r in r_lo..r_hi {
            for c in c_lo..c_hi {
                d[r * y + c] += 1.0 / ((k + 1) * (k + 1)) as f64;
            }
        }
        r0 -= 1;
        c0 -= 1;
    }
    normalised(d)
}

fn normalised(mut d: Vec<f64>) -> Vec<f64> {
    let len = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    if len > 0.0 {
        d.iter_mut().for_each(|v| *v /= len);
    }
    d
}

/// The L2 attack's window pattern: rectangles above, their negative below, unit length,
/// transposed half the time.
fn pattern(s: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let half = s / 2;
    let mut d = rectangles(half, s);
    d.extend(rectangles(s - half, s).iter().map(|v| -v));
    let d = normalised(d);
    if rng.random_bool(0.5) { (0..s * s).map(|i| d[(i % s) * s + i / s]).collect() } else { d }
}

impl Square<'_> {
    /// The adversarial batch and which samples stayed robust. `robust` says which samples
    /// are still to fool.
    pub fn run(
        &self,
        x: &Tensor,
        labels: &[u32],
        mut robust: Vec<bool>,
        stop: &StopFlag,
    ) -> Result<(Tensor, Vec<bool>)> {
        let (_, c, h, w) = x.dims4()?;
        let geo = Geometry { c, h, w };
        if self.norm == Norm::L2 && h.min(w) < 5 {
            return Err(EngineError::config(format!(
                "the L2 Square attack needs images at least 5 pixels on each side, found {h}x{w}"
            )));
        }
        let clean: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut adv = clean.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        for _ in 0..self.restarts {
            let left: Vec<usize> = (0..labels.len()).filter(|&i| robust[i]).collect();
            if left.is_empty() {
                break;
            }
            let rows: Vec<&[f32]> = left.iter().map(|&i| &clean[i * geo.len()..(i + 1) * geo.len()]).collect();
            let ys: Vec<u32> = left.iter().map(|&i| labels[i]).collect();
            let (best, margins) = self.single_run(&rows, &ys, geo, x, &mut rng, stop)?;
            for (j, &i) in left.iter().enumerate() {
                if margins[j] <= 0.0 {
                    adv[i * geo.len()..(i + 1) * geo.len()].copy_from_slice(&best[j]);
                    robust[i] = false;
                }
            }
        }
        let adv = Tensor::from_vec(adv, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((adv, robust))
    }

    /// The margin z_y - max_{j != y} z_j of each row (<= 0: misclassified).
    fn margins(&self, rows: &[Vec<f32>], y: &[u32], geo: Geometry, like: &Tensor) -> Result<Vec<f32>> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let batch = Tensor::from_vec(flat, (rows.len(), geo.c, geo.h, geo.w), like.device())?.to_dtype(like.dtype())?;
        let z: Vec<Vec<f32>> = self.net.logits(&batch, self.bn)?.to_dtype(DType::F32)?.to_vec2()?;
        Ok(z.iter()
            .zip(y)
            .map(|(row, &y)| {
                let other = row.iter().enumerate().filter(|&(j, _)| j != y as usize).map(|(_, &v)| v);
                row[y as usize] - other.fold(f32::NEG_INFINITY, f32::max)
            })
            .collect())
    }

    /// `v` for pixel `i` of channel `ch` of a sample whose clean value is `x0`, brought into
    /// the image domain (and, for L-infinity, into the ball).
    fn bound(&self, v: f64, x0: f32, ch: usize) -> f32 {
        let mut v = v as f32;
        if self.norm == Norm::Linf {
            v = v.clamp(x0 - self.eps as f32, x0 + self.eps as f32);
        }
        match &self.bounds {
            Some((lo, hi)) => v.clamp(lo[ch], hi[ch]),
            None => v,
        }
    }

    /// `x0 + eps * delta / |delta|_2`, in the image domain.
    fn on_sphere(&self, x0: &[f32], delta: &[f64], geo: Geometry) -> Vec<f32> {
        let len = delta.iter().map(|v| v * v).sum::<f64>().sqrt() + TINY;
        let per_channel = geo.h * geo.w;
        x0.iter()
            .zip(delta)
            .enumerate()
            .map(|(i, (&x, d))| self.bound(x as f64 + d / len * self.eps, x, i / per_channel))
            .collect()
    }

    fn initial(&self, x0: &[f32], geo: Geometry, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let per_channel = geo.h * geo.w;
        match self.norm {
            Norm::Linf => {
                // Vertical stripes: one sign per channel and column.
                let signs: Vec<f64> = (0..geo.c * geo.w).map(|_| random_sign(rng)).collect();
                x0.iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let (ch, col) = (i / per_channel, i % geo.w);
                        self.bound(x as f64 + self.eps * signs[ch * geo.w + col], x, ch)
                    })
                    .collect()
            }
            Norm::L2 => {
                // A grid of s x s patterns, s = h / 5, each with a random sign per channel.
                let s = geo.h / 5;
                let start = (geo.h - 5 * s) / 2;
                let mut delta = vec![0.0; geo.len()];
                for gr in 0..geo.h / s {
                    for gc in 0..geo.w / s {
                        let win = Window { top: start + gr * s, left: start + gc * s, s };
                        if win.top + s > geo.h || win.left + s > geo.w {
                            continue;
                        }
                        let p = pattern(s, rng);
                        for ch in 0..geo.c {
                            let sign = random_sign(rng);
                            for (k, (r, c)) in win.pixels().enumerate() {
                                delta[geo.at(ch, r, c)] += p[k] * sign;
                            }
                        }
                    }
                }
                self.on_sphere(x0, &delta, geo)
            }
        }
    }

    /// One proposal for each row from its best point so far; the window and its pattern are
    /// drawn once for the whole batch.
    fn propose(
        &self,
        x0: &[&[f32]],
        best: &[&Vec<f32>],
        geo: Geometry,
        share: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f32>> {
        let side = (share * geo.len() as f64 / geo.c as f64).sqrt().round() as usize;
        match self.norm {
            Norm::Linf => {
                let s = side.clamp(1, geo.h.min(geo.w));
                let win = Window { top: corner(rng, geo.h - s), left: corner(rng, geo.w - s), s };
                let signs: Vec<f64> = (0..geo.c).map(|_| random_sign(rng)).collect();
                x0.iter()
                    .zip(best)
                    .map(|(x, b)| {
                        let mut row = (*b).clone();
                        for (ch, sign) in signs.iter().enumerate() {
                            for (r, c) in win.pixels() {
                                let i = geo.at(ch, r, c);
                                row[i] = self.bound(b[i] as f64 + 2.0 * self.eps * sign, x[i], ch);
                            }
                        }
                        row
                    })
                    .collect()
            }
            Norm::L2 => {
                let mut s = side.max(3);
                if s.is_multiple_of(2) {
                    s += 1;
                }
                let s = s.min(geo.h.min(geo.w));
                let win = Window { top: corner(rng, geo.h - s), left: corner(rng, geo.w - s), s };
                let gone = Window { top: corner(rng, geo.h - s), left: corner(rng, geo.w - s), s };
                let p = pattern(s, rng);
                x0.iter()
                    .zip(best)
                    .map(|(x, b)| {
                        let signs: Vec<f64> = (0..geo.c).map(|_| random_sign(rng)).collect();
                        let mut delta: Vec<f64> = b.iter().zip(x.iter()).map(|(&b, &x)| (b - x) as f64).collect();
                        let image = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
                        let in_windows: f64 = (0..geo.len())
                            .filter(|&i| {
                                let (r, c) = ((i / geo.w) % geo.h, i % geo.w);
                                win.contains(r, c) || gone.contains(r, c)
                            })
                            .map(|i| delta[i] * delta[i])
                            .sum::<f64>();
                        let budget =
                            ((self.eps * self.eps - image * image).max(0.0) / geo.c as f64 + in_windows).sqrt();
                        let fresh: Vec<Vec<f64>> = (0..geo.c)
                            .map(|ch| {
                                let old: Vec<f64> = win.pixels().map(|(r, c)| delta[geo.at(ch, r, c)]).collect();
                                let old_len = old.iter().map(|v| v * v).sum::<f64>().sqrt() + TINY;
                                let mixed: Vec<f64> =
                                    p.iter().zip(&old).map(|(p, o)| p * signs[ch] + o / old_len).collect();
                                let len = mixed.iter().map(|v| v * v).sum::<f64>().sqrt() + TINY;
                                mixed.iter().map(|v| v / len * budget).collect()
                            })
                            .collect();
                        for ch in 0..geo.c {
                            for (r, c) in gone.pixels() {
                                delta[geo.at(ch, r, c)] = 0.0;
                            }
                            for (k, (r, c)) in win.pixels().enumerate() {
                                delta[geo.at(ch, r, c)] = fresh[ch][k];
                            }
                        }
                        self.on_sphere(x, &delta, geo)
                    })
                    .collect()
            }
        }
    }

    /// One run: each row's best point and its lowest margin (<= 0: fooled).
    fn single_run(
        &self,
        x0: &[&[f32]],
        y: &[u32],
        geo: Geometry,
        like: &Tensor,
        rng: &mut ChaCha8Rng,
        stop: &StopFlag,
    ) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
        let mut best: Vec<Vec<f32>> = x0.iter().map(|x| self.initial(x, geo, rng)).collect();
        let mut margin = self.margins(&best, y, geo, like)?;
        for query in 0..self.queries {
            if stop.is_stopped() {
                return Err(EngineError::Cancelled);
            }
            let open: Vec<usize> = (0..y.len()).filter(|&j| margin[j] > 0.0).collect();
            if open.is_empty() {
                break;
            }
            let xs: Vec<&[f32]> = open.iter().map(|&j| x0[j]).collect();
            let bs: Vec<&Vec<f32>> = open.iter().map(|&j| &best[j]).collect();
            let tried = self.propose(&xs, &bs, geo, window_share(query, self.queries), rng);
            let ys: Vec<u32> = open.iter().map(|&j| y[j]).collect();
            let m = self.margins(&tried, &ys, geo, like)?;
            for ((&j, row), m) in open.iter().zip(tried).zip(m) {
                if m < margin[j] || m <= 0.0 {
                    margin[j] = m;
                    best[j] = row;
                }
            }
        }
        Ok((best, margin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_halves_at_the_reference_checkpoints() {
        assert_eq!(window_share(0, 5000), 0.8);
        assert_eq!(window_share(5, 5000), 0.8);
        assert_eq!(window_share(6, 5000), 0.4);
        assert_eq!(window_share(4999, 5000), 0.8 / 512.0);
    }

    #[test]
    fn patterns_have_unit_length_and_opposite_halves() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for s in [3, 5, 8] {
            let p = pattern(s, &mut rng);
            let len: f64 = p.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((len - 1.0).abs() < 1e-12, "{s}: {len}");
            assert!(p.iter().sum::<f64>().abs() < 1.0, "{s}: halves of opposite sign");
        }
    }
}
