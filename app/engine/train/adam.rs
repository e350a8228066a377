//! Adam (PyTorch's update, no weight decay) with optional per-element freezing: a frozen
//! element keeps its value and its optimiser state untouched.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::engine::error::Result;
use crate::engine::model::kernels::{self, AdamStep};
use crate::engine::model::params::overwrite;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// Adam's step size unless told otherwise (PyTorch's default).
pub const DEFAULT_LR: f64 = 1e-3;

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: DEFAULT_LR, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

struct Slot {
    key: String,
    var: Var,
    /// The first and second moments stacked: [2, ...variable shape], owned by this slot alone
    /// (the CPU kernel updates them in place).
    mv: Tensor,
    /// 1 where the element trains, 0 where it is frozen; None trains everything.
    mask: Option<Tensor>,
    /// Steps taken by this tensor (for bias correction, as PyTorch counts per tensor).
    steps: i32,
}

pub struct Adam {
    cfg: AdamConfig,
    slots: Vec<Slot>,
}

impl Adam {
    /// An optimiser over named variables (state_dict keys name the saved state).
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(key, var)| {
                let mut shape = vec![2];
                shape.extend_from_slice(var.dims());
                let mv = Tensor::zeros(shape, var.dtype(), var.device())?;
                Ok(Slot { key, mv, var, mask: None, steps: 0 })
            })
            .collect::<Result<_>>()?;
        Ok(Self { cfg, slots })
    }

    /// The optimiser state as named tensors: `<key>.exp_avg`, `<key>.exp_avg_sq`, `<key>.step`.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.slots.len());
        for s in &self.slots {
            // Copies: the moments change in place at the next step.
            out.push((format!("{}.exp_avg", s.key), s.mv.get(0)?.copy()?));
            out.push((format!("{}.exp_avg_sq", s.key), s.mv.get(1)?.copy()?));
            out.push((format!("{}.step", s.key), Tensor::new(s.steps as i64, s.mv.device())?));
        }
        Ok(out)
    }

    /// Restores state written by [`Adam::state`]; every variable must be present.
    pub fn load_state(&mut self, state: &crate::engine::checkpoint::StateDict) -> Result<()> {
        for s in &mut self.slots {
            let get = |suffix: &str| {
                state.get(&format!("{}.{suffix}", s.key)).cloned().ok_or_else(|| {
                    crate::engine::EngineError::model(format!("the optimiser state lacks `{}.{suffix}`", s.key))
                })
            };
            let (m, v) = (get("exp_avg")?, get("exp_avg_sq")?);
            if m.dims() != s.var.dims() || v.dims() != s.var.dims() {
                return Err(crate::engine::EngineError::model(format!(
                    "the optimiser state of `{}` has the wrong shape",
                    s.key
                )));
            }
            // A new tensor: the state dict's tensors must not change with the moments.
            s.mv = Tensor::stack(&[m, v], 0)?.to_device(s.var.device())?.to_dtype(s.var.dtype())?;
            s.steps = get("step")?.to_dtype(DType::I64)?.to_scalar::<i64>()? as i32;
        }
        Ok(())
    }

    /// Freezes elements where `mask` is 0 (same shape as the variable); None unfreezes all.
    pub fn set_mask(&mut self, key: &str, mask: Option<Tensor>) -> Result<()> {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.key == key) {
            slot.mask = mask.map(|m| m.to_dtype(DType::F32)).transpose()?;
        }
        Ok(())
    }

    /// One update from the gradients of the last backward pass. Variables without a
    /// gradient, and wholly frozen ones, are left alone (their state too).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            if let Some(mask) = &slot.mask
                && mask.sum_all()?.to_scalar::<f32>()? == 0.0
            {
                continue;
            }
            slot.steps += 1;
            let step = AdamStep {
                beta1: c.beta1,
                beta2: c.beta2,
                step_size: c.lr / (1.0 - c.beta1.powi(slot.steps)),
                bias2_sqrt: (1.0 - c.beta2.powi(slot.steps)).sqrt(),
                eps: c.eps,
            };
            let p = slot.var.as_tensor();
            if kernels::enabled_for(p) && p.dtype() == DType::F32 {
                kernels::adam_update(p, &slot.mv, g, slot.mask.as_ref(), step)?;
                continue;
            }
            let (m, v) = (slot.mv.get(0)?, slot.mv.get(1)?);
            let new_m = ((&m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let new_v = ((&v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((new_v.sqrt()? / step.bias2_sqrt)? + c.eps)?;
            let update = ((&new_m / denom)? * step.step_size)?;
            let (m, v, next) = match &slot.mask {
                None => (new_m, new_v, (p - update)?),
                Some(mask) => {
                    // Frozen elements keep value and state: blend old and new by the mask.
                    let keep = |new: &Tensor, old: &Tensor| -> Result<Tensor> { Ok((old + ((new - old)? * mask)?)?) };
                    (keep(&new_m, &m)?, keep(&new_v, &v)?, (p - (update * mask)?)?)
                }
            };
            slot.mv = Tensor::stack(&[m, v], 0)?.detach();
            overwrite(&slot.var, &next.detach())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        // With bias correction, Adam's first step is lr * g / (|g| + eps').
        let w = Var::from_vec(vec![1.0f32, -2.0, 3.0], 3, &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::default()).unwrap();
        let loss =
            (w.as_tensor() * Tensor::new(&[2.0f32, -0.5, 0.0], &Device::Cpu).unwrap()).unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let v: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        assert!((v[0] - 0.999).abs() < 1e-6 && (v[1] - (-1.999)).abs() < 1e-6 && v[2] == 3.0, "{v:?}");
    }

    #[test]
    fn frozen_elements_keep_value_and_state() {
        let w = Var::from_vec(vec![1.0f32, 1.0], 2, &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::default()).unwrap();
        opt.set_mask("w", Some(Tensor::new(&[1.0f32, 0.0], &Device::Cpu).unwrap())).unwrap();
        for _ in 0..3 {
            let loss = w.as_tensor().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        let v: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        assert!(v[0] < 0.998 && v[1] == 1.0, "{v:?}");
        assert_eq!(opt.slots[0].mv.get(0).unwrap().to_vec1::<f32>().unwrap()[1], 0.0);
    }
}
