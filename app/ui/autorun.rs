//! Steps the app runs by itself once the model is open (`gui --run`, for screenshots and
//! smoke tests), typed so that a misspelt step is refused when the arguments are parsed.

use std::fmt;
use std::str::FromStr;

/// One step of `--run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStep {
    /// Show this layer.
    Layer(String),
    /// Sweep the current layer with the current filter.
    Sweep,
    /// Sweep every layer with the paper's filters.
    Characterise,
    /// Sweep the current layer with h0, h1 and h2, shown as the compression curve.
    Compression,
    /// Accuracy against eps.
    Eps,
    Perturb,
    Dropout,
    Train,
    Landscape,
    /// Paint the mask view by class (adversarial).
    Classes,
}

impl RunStep {
    /// The steps without an argument, by name.
    const NAMED: [(&'static str, RunStep); 9] = [
        ("sweep", RunStep::Sweep),
        ("characterise", RunStep::Characterise),
        ("compression", RunStep::Compression),
        ("eps", RunStep::Eps),
        ("perturb", RunStep::Perturb),
        ("dropout", RunStep::Dropout),
        ("train", RunStep::Train),
        ("landscape", RunStep::Landscape),
        ("classes", RunStep::Classes),
    ];
}

impl FromStr for RunStep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(layer) = s.strip_prefix("layer:") {
            if layer.is_empty() {
                return Err("`layer:` needs a layer name, such as layer:features.0".into());
            }
            return Ok(RunStep::Layer(layer.to_string()));
        }
        Self::NAMED.iter().find(|(name, _)| *name == s).map(|(_, step)| step.clone()).ok_or_else(|| {
            let names: Vec<&str> = Self::NAMED.iter().map(|(n, _)| *n).collect();
            format!("unknown step; expected layer:NAME or one of {}", names.join(", "))
        })
    }
}

impl fmt::Display for RunStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunStep::Layer(l) => write!(f, "layer:{l}"),
            step => {
                let name = Self::NAMED.iter().find(|(_, s)| s == step).map_or("?", |(n, _)| n);
                f.write_str(name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_reads_back_and_unknown_ones_are_refused() {
        for (name, step) in RunStep::NAMED {
            assert_eq!(name.parse::<RunStep>(), Ok(step.clone()));
            assert_eq!(step.to_string(), name);
        }
        assert_eq!("layer:features.3".parse::<RunStep>(), Ok(RunStep::Layer("features.3".into())));
        for bad in ["", "layer:", "Sweep", "sweeps", "layer"] {
            assert!(bad.parse::<RunStep>().is_err(), "{bad} should be refused");
        }
    }
}
