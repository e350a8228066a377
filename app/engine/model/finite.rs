//! NaN and infinite parameters, found before any analysis: accuracies computed from them are
//! meaningless (a NaN logit makes every prediction class 0), and so would be every class and
//! score built on those accuracies.

use candle_core::DType;

use super::Network;
use crate::engine::error::{EngineError, Result};

/// Tensors named in the refusal; the rest are counted.
const NAMED: usize = 5;

impl Network {
    /// The parameters holding NaN or infinite values, each with how many, in module order.
    pub fn non_finite(&self) -> Result<Vec<(String, usize)>> {
        let mut found = Vec::new();
        for p in self.params.params() {
            let t = p.var.as_tensor();
            if !t.dtype().is_float() {
                continue;
            }
            // x - x is NaN exactly where x is NaN or infinite: one vectorised pass says
            // whether a tensor needs counting.
            #[allow(clippy::eq_op)]
            let probe = (t - t)?.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if probe.is_nan() {
                let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                found.push((p.key.clone(), values.iter().filter(|v| !v.is_finite()).count()));
            }
        }
        Ok(found)
    }

    /// Refuses a network with NaN or infinite parameters, naming them.
    pub fn check_finite(&self) -> Result<()> {
        let bad = self.non_finite()?;
        if bad.is_empty() {
            return Ok(());
        }
        let mut named: Vec<String> = bad.iter().take(NAMED).map(|(k, n)| format!("{k} ({n})")).collect();
        if bad.len() > NAMED {
            named.push(format!("and {} more", bad.len() - NAMED));
        }
        Err(EngineError::model(format!(
            "the network holds NaN or infinite values in {} tensor(s): {}; accuracies, classes and scores \
             computed from them would be meaningless, so none are computed (repair or retrain the checkpoint)",
            bad.len(),
            named.join(", ")
        )))
    }
}
