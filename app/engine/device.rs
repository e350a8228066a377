//! Choosing where tensors live: the CPU, or a GPU when built with `cuda` or `metal`.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if cfg!(feature = "cuda") => {
            Device::new_cuda(0).map_err(|e| EngineError::config(format!("cannot open CUDA device 0: {e}")))
        }
        DeviceChoice::Metal if cfg!(feature = "metal") => {
            Device::new_metal(0).map_err(|e| EngineError::config(format!("cannot open Metal device 0: {e}")))
        }
        other => Err(EngineError::config(format!(
            "this build has no {other:?} support; rebuild with `--features {}`",
            format!("{other:?}").to_lowercase()
        ))),
    }
}
