//! The vendored candle-core's backward pass (vendor/candle-core.patch stores each first
//! gradient as computed instead of adding it to zeros) against analytic gradients, on the
//! cases the patch touches: a tensor used several times, broadcast and reduced gradients,
//! views, and cross-entropy's gather, whose backward scatters into a stored gradient.

use candle_core::{Device, Tensor, Var};

fn close(got: &Tensor, want: &[f32], what: &str) {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn gradients_accumulate_over_every_use() {
    let x = Var::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
    let t = x.as_tensor();
    // y = sum(x + x) + sum(x * x) + 3 * sum(x):  dy/dx = 2 + 2x + 3
    let y = ((t + t).unwrap().sum_all().unwrap() + (t * t).unwrap().sum_all().unwrap()).unwrap();
    let y = (y + (t.sum_all().unwrap() * 3.0).unwrap()).unwrap();
    let g = y.backward().unwrap();
    close(g.get(t).unwrap(), &[7.0, 1.0, 11.0], "dx");
}

#[test]
fn broadcast_and_view_gradients_are_whole_tensors() {
    let w = Var::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    let b = Var::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
    // z = sum((w + b) * c) over a transposed view of w:  dz/dw = c^T, dz/db = column sums of c^T
    let c = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    let wt = w.as_tensor().t().unwrap();
    let z = (wt.broadcast_add(b.as_tensor()).unwrap() * &c).unwrap().sum_all().unwrap();
    let g = z.backward().unwrap();
    let dw = g.get(w.as_tensor()).unwrap();
    assert!(dw.is_contiguous(), "stored gradients are contiguous");
    close(dw, &[1.0, 3.0, 2.0, 4.0], "dw");
    close(g.get(b.as_tensor()).unwrap(), &[4.0, 6.0], "db");
}

#[test]
fn cross_entropy_gradient_is_softmax_minus_one_hot() {
    let logits = Var::new(&[[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]], &Device::Cpu).unwrap();
    let labels = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(logits.as_tensor(), &labels).unwrap();
    let g = loss.backward().unwrap();
    let mut want = Vec::new();
    for (row, label) in [([1.0f64, 2.0, 0.5], 1), ([0.0, -1.0, 3.0], 0)] {
        let total: f64 = row.iter().map(|v| v.exp()).sum();
        for (j, v) in row.iter().enumerate() {
            want.push(((v.exp() / total - if j == label { 1.0 } else { 0.0 }) / 2.0) as f32);
        }
    }
    close(g.get(logits.as_tensor()).unwrap(), &want, "dlogits");
}
