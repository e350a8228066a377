//! The custom kernels against candle's plain ops: forward values and both gradients.

use candle_core::{Device, Tensor, Var};

use super::*;
use crate::engine::model::ops::{Axis, Pool2d};

fn close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let (a, b): (Vec<f32>, Vec<f32>) =
        (a.flatten_all().unwrap().to_vec1().unwrap(), b.flatten_all().unwrap().to_vec1().unwrap());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 2e-5 * scale, "{what}: element {i}: {x} vs {y}");
    }
}

/// A tensor's elements as bit patterns, for comparisons that must be exact.
fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic values without depending on candle's RNG.
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Candle's own convolution (padding applied by hand when asymmetric).
fn plain_conv(x: &Tensor, w: &Tensor, g: ConvGeometry) -> Tensor {
    let [ph, pw] = g.padding;
    let x = x.pad_with_zeros(2, ph, ph).unwrap().pad_with_zeros(3, pw, pw).unwrap();
    x.conv2d(w, 0, g.stride, g.dilation, g.groups).unwrap()
}

#[test]
fn conv_matches_candle_forward_and_backward() {
    let cases = [
        ([2, 3, 7, 6], [4, 3, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 }),
        ([3, 4, 9, 9], [6, 2, 3, 3], ConvGeometry { stride: 2, padding: [1, 0], dilation: 1, groups: 2 }),
        ([1, 2, 8, 8], [3, 2, 3, 3], ConvGeometry { stride: 1, padding: [2, 2], dilation: 2, groups: 1 }),
        ([4, 6, 5, 5], [6, 1, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 6 }),
        ([5, 8, 4, 4], [5, 8, 1, 1], ConvGeometry { stride: 1, padding: [0, 0], dilation: 1, groups: 1 }),
        ([2, 8, 6, 6], [4, 8, 1, 1], ConvGeometry { stride: 2, padding: [0, 0], dilation: 1, groups: 1 }),
        ([3, 1, 11, 11], [2, 1, 7, 7], ConvGeometry { stride: 2, padding: [3, 3], dilation: 1, groups: 1 }),
        // Wide outputs take the row-copy path of im2col, narrow ones the tap table.
        ([2, 3, 20, 18], [4, 3, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 }),
        ([2, 2, 40, 36], [3, 2, 5, 5], ConvGeometry { stride: 2, padding: [2, 1], dilation: 1, groups: 1 }),
        // Wide maps with more patch elements than output channels per group: the weight
        // gradient from patch rows, with groups and with dilation.
        ([2, 4, 18, 17], [6, 2, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 2 }),
        ([2, 3, 21, 20], [2, 3, 3, 3], ConvGeometry { stride: 1, padding: [0, 2], dilation: 2, groups: 1 }),
        // Several image chunks per thread: each thread's weight-gradient sums accumulate.
        ([24, 3, 9, 9], [4, 3, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 }),
        // "Same" convolutions whose kernel rows reach past every image row: each tap's
        // row of patches is a shifted plane with no rows (or one) inside the image.
        ([2, 3, 1, 17], [4, 3, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 }),
        ([3, 2, 2, 2], [3, 2, 5, 5], ConvGeometry { stride: 1, padding: [2, 2], dilation: 1, groups: 1 }),
        ([2, 2, 1, 1], [3, 2, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 }),
        // Stride 1: the input gradient as a forward convolution with the flipped kernel, on
        // a valid convolution (padded by 2 in reverse), a rectangular kernel with uneven
        // padding, and padding past the kernel (which keeps the column gradient).
        ([2, 3, 9, 8], [4, 3, 3, 3], ConvGeometry { stride: 1, padding: [0, 0], dilation: 1, groups: 1 }),
        ([2, 3, 7, 20], [5, 3, 1, 3], ConvGeometry { stride: 1, padding: [0, 1], dilation: 1, groups: 1 }),
        ([2, 2, 6, 6], [3, 2, 3, 3], ConvGeometry { stride: 1, padding: [3, 3], dilation: 1, groups: 1 }),
        // An 8x8 map with enough images that the flipped forward convolution goes direct (on
        // CPUs where the tiles of `packed` do not run; on the others, by those tiles).
        ([24, 3, 8, 8], [4, 3, 3, 3], ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 }),
    ];
    for (i, (xs, ws, g)) in cases.into_iter().enumerate() {
        let x = Var::from_tensor(&randn(&xs, i as u64)).unwrap();
        let w = Var::from_tensor(&randn(&ws, 100 + i as u64)).unwrap();
        let probe = randn(plain_conv(x.as_tensor(), w.as_tensor(), g).dims(), 200 + i as u64);
        let fast = conv2d(x.as_tensor(), w.as_tensor(), None, g, Grads::All).unwrap();
        let plain = plain_conv(x.as_tensor(), w.as_tensor(), g);
        close(&fast, &plain, &format!("case {i} forward"));
        let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        close(gf.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap(), &format!("case {i} dx"));
        close(gf.get(w.as_tensor()).unwrap(), gp.get(w.as_tensor()).unwrap(), &format!("case {i} dw"));
        let input_only = conv2d(x.as_tensor(), w.as_tensor(), None, g, Grads::Input).unwrap();
        let gi = (input_only * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(gi.get(w.as_tensor()).is_none(), "no weight gradient when not asked for");
        close(gi.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap(), &format!("case {i} dx (input only)"));
    }
}

#[test]
fn direct_conv_for_small_maps_matches_candle() {
    // Enough images for the direct path on this machine, and an odd count for uneven chunks.
    let n = 8 * threads() + 3;
    let g = |stride, padding| ConvGeometry { stride, padding, dilation: 1, groups: 1 };
    let cases = [
        // 1x1 maps: only the centre tap reads the image.
        ([n, 6, 1, 1], [5, 6, 3, 3], g(1, [1, 1])),
        ([n, 5, 2, 2], [7, 5, 3, 3], g(1, [1, 1])),
        ([n, 4, 2, 2], [6, 4, 3, 3], g(2, [1, 1])),
        ([n, 3, 7, 7], [4, 3, 3, 3], g(2, [1, 1])),
        ([n, 4, 4, 4], [3, 4, 3, 3], g(1, [1, 0])),
        ([n, 2, 5, 3], [3, 2, 2, 2], g(1, [0, 0])),
        // A 6x6 map: direct forward and input gradient, im2col weight gradient.
        ([n, 3, 6, 6], [4, 3, 3, 3], g(1, [1, 1])),
    ];
    for (i, (xs, ws, g)) in cases.into_iter().enumerate() {
        let expected = if i == 6 { [true, true, false] } else { [true; 3] };
        assert_eq!(conv::direct_passes(&xs, &ws, g), expected, "case {i}'s paths");
        let x = Var::from_tensor(&randn(&xs, 300 + i as u64)).unwrap();
        let w = Var::from_tensor(&randn(&ws, 400 + i as u64)).unwrap();
        let b = Var::from_tensor(&randn(&[ws[0]], 500 + i as u64)).unwrap();
        let fast = conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), g, Grads::All).unwrap();
        let plain =
            plain_conv(x.as_tensor(), w.as_tensor(), g).broadcast_add(&b.reshape((1, ws[0], 1, 1)).unwrap()).unwrap();
        close(&fast, &plain, &format!("case {i} forward"));
        let probe = randn(plain.dims(), 600 + i as u64);
        let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, what) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
            close(gf.get(v.as_tensor()).unwrap(), gp.get(v.as_tensor()).unwrap(), &format!("case {i} {what}"));
        }
    }
    let few = [8 * threads() - 1, 6, 1, 1];
    assert_eq!(conv::direct_passes(&few, &[5, 6, 3, 3], g(1, [1, 1])), [false; 3], "small batches keep im2col");
}

/// The direct path keeps a parameter's gathered taps between calls; changing the parameter
/// (by `params::overwrite` or the Adam kernel) must drop them.
#[test]
fn direct_conv_sees_every_change_to_its_weights() {
    let g = ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 };
    let (xs, ws) = ([8 * threads(), 6, 2, 2], [5, 6, 3, 3]);
    assert_eq!(conv::direct_passes(&xs, &ws, g), [true; 3]);
    let x = Var::from_tensor(&randn(&xs, 700)).unwrap();
    let w = Var::from_tensor(&randn(&ws, 701)).unwrap();
    let probe = randn(&[xs[0], 5, 2, 2], 702);
    let check = |what: &str| {
        let fast = conv2d(x.as_tensor(), w.as_tensor(), None, g, Grads::Input).unwrap();
        let plain = plain_conv(x.as_tensor(), &w.as_tensor().detach(), g);
        close(&fast, &plain, &format!("{what}: forward"));
        let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        close(gf.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap(), &format!("{what}: dx"));
    };
    check("first call");
    check("second call, from the kept taps");
    crate::engine::model::params::overwrite(&w, &randn(&ws, 703)).unwrap();
    check("after overwrite");
    let mv = Tensor::zeros((2, 5, 6, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let s = AdamStep { beta1: 0.9, beta2: 0.999, step_size: 0.5, bias2_sqrt: 1.0, eps: 1e-8 };
    adam_update(w.as_tensor(), &mv, &randn(&ws, 704), None, s).unwrap();
    check("after an Adam step");
}

/// Batch norm (running statistics) and ReLU inside the convolution's op give bitwise the
/// values and gradients of the separate ops, on the im2col and the direct path.
#[test]
fn conv_epilogue_is_bitwise_the_separate_ops() {
    let g = ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 };
    for (xs, direct) in [([3, 4, 6, 5], false), ([8 * threads() + 1, 4, 2, 2], true)] {
        assert_eq!(conv::direct_passes(&xs, &[6, 4, 3, 3], g), [direct; 3]);
        let x = Var::from_tensor(&randn(&xs, 800)).unwrap();
        let w = Var::from_tensor(&randn(&[6, 4, 3, 3], 801)).unwrap();
        let b = Var::from_tensor(&randn(&[6], 802)).unwrap();
        let (alpha, beta) = (randn(&[6], 803), randn(&[6], 804));
        for relu_after in [false, true] {
            let then = Epilogue { alpha: alpha.to_vec1().unwrap(), beta: beta.to_vec1().unwrap(), relu: relu_after };
            let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), Some(b.as_tensor()));
            let input_only = conv2d_then(xt, wt, bt, g, Grads::Input, Some(then.clone()), None).unwrap();
            let fused = conv2d_then(xt, wt, bt, g, Grads::All, Some(then), None).unwrap();
            let conv = conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), g, Grads::All).unwrap();
            let apart = channel_affine(&conv, &alpha, &beta).unwrap();
            let apart = if relu_after { relu(&apart).unwrap() } else { apart };
            let what = format!("direct {direct}, relu {relu_after}");
            assert_eq!(bits(&fused), bits(&apart), "{what}: forward");
            let probe = randn(fused.dims(), 805);
            let gf = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let ga = (apart * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, name) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
                assert_eq!(
                    bits(gf.get(v.as_tensor()).unwrap()),
                    bits(ga.get(v.as_tensor()).unwrap()),
                    "{what}: {name}"
                );
            }
            // The input's gradient alone (attacks), where the direct path runs the epilogue's
            // backward pass inside the input gradient's op.
            let gi = (input_only * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let (alone, with_all) = (gi.get(x.as_tensor()).unwrap(), ga.get(x.as_tensor()).unwrap());
            assert_eq!(bits(alone), bits(with_all), "{what}: dx alone");
        }
    }
}

/// A max-pool inside the convolution's op (after batch norm and ReLU, or alone) gives
/// bitwise the values and gradients of the separate ops, on the im2col and the direct path,
/// with ReLU's zeros making ties and all-zero windows.
#[test]
fn conv_pool_is_bitwise_the_separate_ops() {
    let g = ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 };
    let pools = [Pool2d::square(3, 2, 1), Pool2d::square(2, 2, 0)];
    // One chunk of three images; five chunks of four (the last of two), pooled in parallel.
    for (xs, direct) in [([3, 4, 9, 7], false), ([18, 4, 12, 12], false), ([8 * threads() + 1, 4, 6, 6], true)] {
        assert_eq!(conv::direct_passes(&xs, &[6, 4, 3, 3], g)[0], direct);
        let x = Var::from_tensor(&randn(&xs, 900)).unwrap();
        let w = Var::from_tensor(&randn(&[6, 4, 3, 3], 901)).unwrap();
        let b = Var::from_tensor(&randn(&[6], 902)).unwrap();
        let (alpha, beta) = (randn(&[6], 903), randn(&[6], 904));
        let epilogue = |relu| Epilogue { alpha: alpha.to_vec1().unwrap(), beta: beta.to_vec1().unwrap(), relu };
        for (pool, then) in
            pools.iter().flat_map(|p| [None, Some(epilogue(false)), Some(epilogue(true))].map(|t| (p, t)))
        {
            let what = format!("direct {direct}, {pool:?}, epilogue {:?}", then.as_ref().map(|t| t.relu));
            let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), Some(b.as_tensor()));
            let fused = conv2d_then(xt, wt, bt, g, Grads::All, then.clone(), Some(*pool)).unwrap();
            let eval = conv2d_then(&xt.detach(), &wt.detach(), bt, g, Grads::None, then.clone(), Some(*pool));
            assert_eq!(bits(&eval.unwrap()), bits(&fused), "{what}: evaluation");
            let apart = max_pool2d(&conv2d_then(xt, wt, bt, g, Grads::All, then, None).unwrap(), pool).unwrap();
            assert_eq!(bits(&fused), bits(&apart), "{what}: forward");
            let probe = randn(fused.dims(), 905);
            let gf = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let ga = (apart * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, name) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
                let (f, a) = (gf.get(v.as_tensor()).unwrap(), ga.get(v.as_tensor()).unwrap());
                assert_eq!(bits(f), bits(a), "{what}: {name}");
            }
        }
    }
}

#[test]
fn linear_matches_matmul() {
    let x = Var::from_tensor(&randn(&[5, 7], 1)).unwrap();
    let w = Var::from_tensor(&randn(&[3, 7], 2)).unwrap();
    let probe = randn(&[5, 3], 3);
    let b = Var::from_tensor(&randn(&[3], 4)).unwrap();
    let fast = linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), Grads::All).unwrap();
    let plain = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
    close(&fast, &plain, "forward");
    let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    close(gf.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap(), "dx");
    close(gf.get(w.as_tensor()).unwrap(), gp.get(w.as_tensor()).unwrap(), "dw");
    close(gf.get(b.as_tensor()).unwrap(), gp.get(b.as_tensor()).unwrap(), "db");
}

/// Evaluation records no graph (so activations are freed layer by layer) and gives the
/// same values, bit for bit, as a pass that records one.
#[test]
fn evaluation_ops_record_no_graph() {
    let g = ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 };
    let x = randn(&[3, 2, 5, 5], 30);
    let w = Var::from_tensor(&randn(&[4, 2, 3, 3], 31)).unwrap();
    let b = Var::from_tensor(&randn(&[4], 32)).unwrap();
    let conv = |grads| conv2d(&x, w.as_tensor(), Some(b.as_tensor()), g, grads).unwrap();
    let (eval, recorded) = (conv(Grads::None), conv(Grads::All));
    assert!(recorded.track_op() && !eval.track_op(), "the convolution records a graph only when asked");
    assert_eq!(bits(&eval), bits(&recorded), "convolution");
    let (lw, lb) = (Var::from_tensor(&randn(&[3, 100], 33)).unwrap(), Var::from_tensor(&randn(&[3], 34)).unwrap());
    let flat = eval.flatten_from(1).unwrap();
    let lin = |grads| linear(&flat, lw.as_tensor(), Some(lb.as_tensor()), grads).unwrap();
    let (eval_l, recorded_l) = (lin(Grads::None), lin(Grads::All));
    assert!(recorded_l.track_op() && !eval_l.track_op(), "the linear layer records a graph only when asked");
    assert_eq!(bits(&eval_l), bits(&recorded_l), "linear");
    let (bw, bb) = (Var::from_tensor(&randn(&[4], 35)).unwrap(), Var::from_tensor(&randn(&[4], 36)).unwrap());
    let bn = |grads| batch_norm(&eval, bw.as_tensor(), bb.as_tensor(), 1e-5, grads, false).unwrap().0;
    let (eval_b, recorded_b) = (bn(Grads::None), bn(Grads::All));
    assert!(recorded_b.track_op() && !eval_b.track_op(), "batch norm records a graph only when asked");
    assert_eq!(bits(&eval_b), bits(&recorded_b), "batch norm");
}

#[test]
fn conv_bias_is_fused_with_its_gradient() {
    let g = ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 };
    let x = Var::from_tensor(&randn(&[3, 2, 5, 5], 9)).unwrap();
    let w = Var::from_tensor(&randn(&[4, 2, 3, 3], 10)).unwrap();
    let b = Var::from_tensor(&randn(&[4], 11)).unwrap();
    let fast = conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), g, Grads::All).unwrap();
    let plain = plain_conv(x.as_tensor(), w.as_tensor(), g)
        .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap())
        .unwrap();
    close(&fast, &plain, "forward");
    let probe = randn(fast.dims(), 12);
    let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    close(gf.get(b.as_tensor()).unwrap(), gp.get(b.as_tensor()).unwrap(), "db");
    close(gf.get(w.as_tensor()).unwrap(), gp.get(w.as_tensor()).unwrap(), "dw");
}

#[test]
fn relu_and_max_pool_match_the_plain_ops() {
    let x = Var::from_tensor(&randn(&[2, 3, 9, 7], 5)).unwrap();
    let probe_for = |t: &Tensor, s| randn(t.dims(), s);
    let fast = relu(x.as_tensor()).unwrap();
    let plain = {
        let mask = x.as_tensor().gt(0f64).unwrap().to_dtype(candle_core::DType::F32).unwrap().detach();
        x.as_tensor().mul(&mask).unwrap()
    };
    close(&fast, &plain, "relu");
    let probe = probe_for(&fast, 6);
    let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    close(gf.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap(), "relu dx");

    let pools = [
        Pool2d::square(2, 2, 0),
        Pool2d::square(3, 2, 1),
        Pool2d {
            h: Axis { kernel: 3, stride: 2, padding: 0 },
            w: Axis { kernel: 3, stride: 2, padding: 0 },
            ceil_mode: true,
        },
        Pool2d {
            h: Axis { kernel: 2, stride: 1, padding: 1 },
            w: Axis { kernel: 3, stride: 2, padding: 1 },
            ceil_mode: false,
        },
    ];
    // Values of five levels: most windows hold ties, which the gradient must resolve alike.
    let ties = Var::from_tensor(&(randn(&[2, 3, 9, 7], 8) * 2.0).unwrap().round().unwrap()).unwrap();
    for (i, (p, x)) in pools.iter().flat_map(|p| [(p, &x), (p, &ties)]).enumerate() {
        let fast = max_pool2d(x.as_tensor(), p).unwrap();
        let plain = super::plain(|| crate::engine::model::ops::max_pool2d(x.as_tensor(), p).unwrap());
        close(&fast, &plain, &format!("pool {i}"));
        let probe = probe_for(&fast, 7 + i as u64);
        let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        close(gf.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap(), &format!("pool {i} dx"));
    }
    // Ties: the whole gradient goes to the first maximum.
    let t = Var::from_vec(vec![5f32; 4], (1, 1, 2, 2), &Device::Cpu).unwrap();
    let y = max_pool2d(t.as_tensor(), &Pool2d::square(2, 2, 0)).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(t.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![1., 0., 0., 0.]);
}

/// PyTorch's scan of one window, row by row: a later value takes the place when larger or
/// NaN. Returns the chosen (value, plane index), or (-inf, None) for an empty window.
fn scan_window(x: &[f32], w: usize, ys: std::ops::Range<isize>, xs: std::ops::Range<isize>) -> (f32, Option<usize>) {
    let mut best = (f32::NEG_INFINITY, None);
    for y in ys.filter(|&y| y >= 0 && (y as usize) < x.len() / w) {
        for xx in xs.clone().filter(|&xx| xx >= 0 && (xx as usize) < w) {
            let (i, v) = (y as usize * w + xx as usize, x[y as usize * w + xx as usize]);
            if best.1.is_none() || v > best.0 || v.is_nan() {
                best = (v, Some(i));
            }
        }
    }
    best
}

/// The two-pass max pool against the window scan, on planes full of ties and NaNs: same
/// values (NaN where NaN) and the gradient on the same element of every window.
#[test]
fn max_pool_picks_the_scan_order_element_among_ties_and_nans() {
    let (h, w) = (11usize, 10usize);
    let levels: Vec<f32> =
        (randn(&[2, 2, h, w], 30) * 3.4).unwrap().round().unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let values: Vec<f32> = levels.iter().map(|&v| if v == 3.0 { f32::NAN } else { v }).collect();
    assert!(values.iter().any(|v| v.is_nan()));
    let x = Var::from_vec(values.clone(), (2, 2, h, w), &Device::Cpu).unwrap();
    let pools = [
        Pool2d::square(3, 2, 1),
        Pool2d::square(2, 2, 0),
        Pool2d::square(3, 1, 1),
        Pool2d {
            h: Axis { kernel: 2, stride: 2, padding: 1 },
            w: Axis { kernel: 4, stride: 3, padding: 2 },
            ceil_mode: true,
        },
    ];
    for (n, p) in pools.iter().enumerate() {
        let y = max_pool2d(x.as_tensor(), p).unwrap();
        let (oh, ow) = (y.dim(2).unwrap(), y.dim(3).unwrap());
        let probe = randn(y.dims(), 40 + n as u64);
        let dx = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = dx.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let pr: Vec<f32> = probe.flatten_all().unwrap().to_vec1().unwrap();
        let mut want_dx = vec![0f32; values.len()];
        for plane in 0..4 {
            let xs = &values[plane * h * w..(plane + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * p.h.stride) as isize - p.h.padding as isize;
                    let x0 = (ox * p.w.stride) as isize - p.w.padding as isize;
                    let (v, at) = scan_window(xs, w, y0..y0 + p.h.kernel as isize, x0..x0 + p.w.kernel as isize);
                    let o = (plane * oh + oy) * ow + ox;
                    assert!(got[o] == v || (got[o].is_nan() && v.is_nan()), "pool {n} plane {plane} ({oy}, {ox})");
                    if let Some(at) = at {
                        want_dx[plane * h * w + at] += pr[o];
                    }
                }
            }
        }
        assert_eq!(dx, want_dx, "pool {n}: gradients");
        let (values_only, none, _) = pool::pool_forward(*p, &[2, 2, h, w], &values, false).unwrap();
        assert!(none.is_none(), "pool {n}: no indices asked for");
        assert_eq!(values_only.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bits(&y), "pool {n}: without indices");
    }
}

#[test]
fn batch_norm_matches_the_composed_formula() {
    let x = Var::from_tensor(&(randn(&[4, 3, 5, 6], 20) * 3.0).unwrap()).unwrap();
    let w = Var::from_tensor(&randn(&[3], 21)).unwrap();
    let b = Var::from_tensor(&randn(&[3], 22)).unwrap();
    let eps = 1e-5;
    let (fast, (mean, var)) = batch_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), eps, Grads::All, false).unwrap();
    let plain = {
        let per = x.as_tensor().transpose(0, 1).unwrap().flatten_from(1).unwrap();
        let m = per.mean(1).unwrap();
        let v = per.broadcast_sub(&m.unsqueeze(1).unwrap()).unwrap().sqr().unwrap().mean(1).unwrap();
        close(&Tensor::new(mean.as_slice(), &Device::Cpu).unwrap(), &m, "mean");
        close(&Tensor::new(var.as_slice(), &Device::Cpu).unwrap(), &v, "var");
        let shape = (1, 3, 1, 1);
        let xh = x.as_tensor().broadcast_sub(&m.reshape(shape).unwrap()).unwrap();
        let xh = xh.broadcast_div(&(v + eps).unwrap().sqrt().unwrap().reshape(shape).unwrap()).unwrap();
        xh.broadcast_mul(&w.as_tensor().reshape(shape).unwrap())
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape(shape).unwrap())
            .unwrap()
    };
    close(&fast, &plain, "forward");
    let probe = randn(fast.dims(), 23);
    let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    for (v, name) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
        close(gf.get(v.as_tensor()).unwrap(), gp.get(v.as_tensor()).unwrap(), name);
    }
}

/// Batch norm with its ReLU in the same op (training) gives the separate ops' output and
/// gradients bit for bit.
#[test]
fn batch_norm_relu_is_bitwise_the_separate_ops() {
    let x = Var::from_tensor(&(randn(&[4, 3, 5, 6], 40) * 3.0).unwrap()).unwrap();
    let w = Var::from_tensor(&randn(&[3], 41)).unwrap();
    let b = Var::from_tensor(&randn(&[3], 42)).unwrap();
    let run = |fused: bool| {
        let (y, _) = batch_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5, Grads::All, fused).unwrap();
        if fused { y } else { relu(&y).unwrap() }
    };
    let (fused, apart) = (run(true), run(false));
    assert_eq!(bits(&fused), bits(&apart), "forward");
    let out = bits(&fused);
    assert!(out.contains(&0) && out.iter().any(|&v| v != 0), "the ReLU cuts some values");
    let probe = randn(fused.dims(), 43);
    let gf = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let ga = (apart * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    for (v, name) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
        assert_eq!(bits(gf.get(v.as_tensor()).unwrap()), bits(ga.get(v.as_tensor()).unwrap()), "{name}");
    }
}

/// A residual block's `relu(a + b)` in one op: the separate ops' output and both
/// gradients bit for bit; different shapes are an error, not a broadcast.
#[test]
fn add_relu_is_bitwise_the_separate_ops() {
    let a = Var::from_tensor(&randn(&[3, 4, 5, 5], 50)).unwrap();
    let b = Var::from_tensor(&randn(&[3, 4, 5, 5], 51)).unwrap();
    let fused = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
    let apart = relu(&(a.as_tensor() + b.as_tensor()).unwrap()).unwrap();
    assert_eq!(bits(&fused), bits(&apart), "forward");
    let probe = randn(fused.dims(), 52);
    let gf = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let ga = (apart * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    for (v, name) in [(&a, "da"), (&b, "db")] {
        assert_eq!(bits(gf.get(v.as_tensor()).unwrap()), bits(ga.get(v.as_tensor()).unwrap()), "{name}");
    }
    let other = randn(&[3, 4, 5, 1], 53);
    assert!(add_relu(a.as_tensor(), &other).is_err(), "shapes must match");
}

#[test]
fn channel_affine_is_bitwise_the_composed_ops() {
    let x = randn(&[2, 3, 4, 4], 30);
    let (a, b) = (randn(&[3], 31), randn(&[3], 32));
    let fast = channel_affine(&x, &a, &b).unwrap();
    let shape = (1, 3, 1, 1);
    let plain = x.broadcast_mul(&a.reshape(shape).unwrap()).unwrap().broadcast_add(&b.reshape(shape).unwrap()).unwrap();
    let (f, p): (Vec<f32>, Vec<f32>) =
        (fast.flatten_all().unwrap().to_vec1().unwrap(), plain.flatten_all().unwrap().to_vec1().unwrap());
    assert_eq!(f, p);
}

#[test]
fn adam_update_matches_the_formula_and_keeps_frozen_elements() {
    let n = 200_000; // several parallel tasks
    let p0: Vec<f32> = randn(&[n], 1).to_vec1().unwrap();
    let g: Vec<f32> = randn(&[n], 2).to_vec1().unwrap();
    let m0: Vec<f32> = randn(&[n], 3).to_vec1().unwrap();
    let v0: Vec<f32> = randn(&[n], 4).to_vec1::<f32>().unwrap().iter().map(|v| v.abs()).collect();
    let mask: Vec<f32> = (0..n).map(|i| (i % 3 != 0) as u8 as f32).collect();
    let s = AdamStep { beta1: 0.9, beta2: 0.999, step_size: 1e-3 / 0.19, bias2_sqrt: 0.001999f64.sqrt(), eps: 1e-8 };
    for masked in [false, true] {
        let p = Tensor::new(p0.as_slice(), &Device::Cpu).unwrap();
        let mv = Tensor::new([m0.as_slice(), v0.as_slice()].concat(), &Device::Cpu).unwrap().reshape((2, n)).unwrap();
        let g_t = Tensor::new(g.as_slice(), &Device::Cpu).unwrap();
        let k = Tensor::new(mask.as_slice(), &Device::Cpu).unwrap();
        adam_update(&p, &mv, &g_t, masked.then_some(&k), s).unwrap();
        let (p, mv): (Vec<f32>, Vec<Vec<f32>>) = (p.to_vec1().unwrap(), mv.to_vec2().unwrap());
        for i in 0..n {
            let frozen = masked && mask[i] == 0.0;
            let (g, m0, v0) = (g[i] as f64, m0[i] as f64, v0[i] as f64);
            let m = if frozen { m0 } else { 0.9 * m0 + 0.1 * g };
            let v = if frozen { v0 } else { 0.999 * v0 + 0.001 * g * g };
            let want =
                if frozen { p0[i] as f64 } else { p0[i] as f64 - s.step_size * m / (v.sqrt() / s.bias2_sqrt + s.eps) };
            for (what, got, want) in [("m", mv[0][i], m), ("v", mv[1][i], v), ("p", p[i], want)] {
                assert!(
                    (got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "masked {masked}, {what}[{i}]: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn conv_skips_the_gradient_of_an_input_that_tracks_none() {
    let g = ConvGeometry { stride: 1, padding: [1, 1], dilation: 1, groups: 1 };
    let x = randn(&[2, 3, 6, 6], 11);
    let w = Var::from_tensor(&randn(&[4, 3, 3, 3], 12)).unwrap();
    let probe = randn(&[2, 4, 6, 6], 13);
    let fast = conv2d(&x, w.as_tensor(), None, g, Grads::All).unwrap();
    let plain = plain_conv(&x, w.as_tensor(), g);
    let gf = (fast * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let gp = (plain * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(gf.get(&x).is_none(), "no input gradient for images that track none");
    close(gf.get(w.as_tensor()).unwrap(), gp.get(w.as_tensor()).unwrap(), "dw");
}
