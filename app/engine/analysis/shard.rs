//! Sharding (METHOD.md section 8, "Beyond one machine"): an analysis's work units, numbered
//! in one deterministic order, shared among N processes so that process I runs the units
//! whose number is I modulo N; and the merge that puts the shards' sweeps back together,
//! exactly as one process would have made them.
//!
//! The shard index I counts from 0: `--shard 0/3`, `1/3` and `2/3` are the three shares, as
//! `$SLURM_ARRAY_TASK_ID` (with `--array=0-2`) and Kubernetes' `$JOB_COMPLETION_INDEX` count.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use super::sweep::{SweepRecord, SweepResult, classify_layers};
use crate::engine::error::{EngineError, Result};

/// More shards than any cluster runs for one study: a larger count is a typo.
pub const MAX_SHARDS: usize = 100_000;

/// One share of the work: units `u` with `u % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// From 0 to `count - 1`.
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || count > MAX_SHARDS {
            return Err(EngineError::config(format!("the shard count must be 1 to {MAX_SHARDS}, found {count}")));
        }
        if index >= count {
            return Err(EngineError::config(format!(
                "shard {index}/{count}: the index counts from 0, so it must be below {count}"
            )));
        }
        Ok(Self { index, count })
    }

    pub fn owns(self, unit: usize) -> bool {
        unit % self.count == self.index
    }

    /// The name of what this shard writes: `shard-1-of-3.json`.
    pub fn file_name(self) -> String {
        format!("shard-{}-of-{}.json", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let expected = || format!("expected I/N with 0 <= I < N (I counts from 0), such as 0/4; found `{s}`");
        let (i, n) = s.split_once('/').ok_or_else(expected)?;
        let (i, n) = (i.trim().parse().map_err(|_| expected())?, n.trim().parse().map_err(|_| expected())?);
        Shard::new(i, n).map_err(|e| e.to_string())
    }
}

/// Hands out unit numbers in the canonical order and says which belong to this shard.
/// Every process walks the same units in the same order, so each unit gets one number
/// everywhere; the counter continues across the checkpoints and runs of a study.
#[derive(Debug)]
pub struct Units {
    shard: Shard,
    next: Cell<usize>,
    owned: Cell<usize>,
}

impl Units {
    pub fn new(shard: Shard) -> Self {
        Self { shard, next: Cell::new(0), owned: Cell::new(0) }
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Numbers the next `n` units; the positions (0..n) of those this shard runs.
    pub fn take(&self, n: usize) -> Vec<usize> {
        let first = self.next.get();
        self.next.set(first + n);
        let mine: Vec<usize> = (0..n).filter(|k| self.shard.owns(first + k)).collect();
        self.owned.set(self.owned.get() + mine.len());
        mine
    }

    /// Units numbered so far, of every shard.
    pub fn total(&self) -> usize {
        self.next.get()
    }

    /// Units numbered so far that this shard runs.
    pub fn owned(&self) -> usize {
        self.owned.get()
    }
}

/// One shard's share of a sweep: the records of the units it ran (unit = set x filter,
/// numbered within the sweep) and the baseline every shard measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepShard {
    pub shard: Shard,
    /// Units of the whole sweep.
    pub units: usize,
    /// The sweep's units this shard ran, ascending (one record each, in that order).
    pub ran: Vec<usize>,
    pub result: SweepResult,
}

/// Puts a sweep back together from the shares of its units: every unit exactly once, the
/// shares computed with one config from one baseline. The result is the one a single process
/// makes, record for record: the per-layer classes are recomputed from the whole, and a
/// step that one process would have taken from an earlier filter's identical all-removed
/// step is marked reused as it would have been.
pub fn merge_sweep(parts: &[SweepShard]) -> Result<SweepResult> {
    let Some(first) = parts.first() else {
        return Err(EngineError::config("no shards to merge"));
    };
    let mut records: Vec<Option<&SweepRecord>> = vec![None; first.units];
    for p in parts {
        let r = &p.result;
        if r.config != first.result.config || p.units != first.units {
            return Err(EngineError::config(format!(
                "shard {} ran a different sweep (config or units) from shard {}",
                p.shard, first.shard
            )));
        }
        if r.cancelled {
            return Err(EngineError::config(format!("shard {} was stopped before it finished: run it again", p.shard)));
        }
        if !r.records.is_empty() && r.baseline != first_baseline(parts) {
            return Err(EngineError::config(format!(
                "shard {} measured a different unfiltered network (baseline {} / {} clean): were the shards run on the same model and data?",
                p.shard, r.baseline.clean_correct, r.baseline.samples
            )));
        }
        if p.ran.len() != r.records.len() {
            return Err(EngineError::config(format!(
                "shard {} lists {} units but holds {} records",
                p.shard,
                p.ran.len(),
                r.records.len()
            )));
        }
        for (&unit, rec) in p.ran.iter().zip(&r.records) {
            let slot = records.get_mut(unit).ok_or_else(|| {
                EngineError::config(format!("shard {} names unit {unit} of a sweep of {}", p.shard, first.units))
            })?;
            if slot.replace(rec).is_some() {
                return Err(EngineError::config(format!("unit {unit} was run by two shards")));
            }
        }
    }
    if let Some(missing) = records.iter().position(Option::is_none) {
        return Err(EngineError::config(format!(
            "unit {missing} of {} was run by no shard given: is a shard's output missing?",
            first.units
        )));
    }
    let mut records: Vec<SweepRecord> = records.into_iter().flatten().cloned().collect();
    mark_all_removed_reuse(&mut records);
    let cfg = &first.result.config;
    let layer_classes = match cfg.scope {
        super::sweep::Scope::Local => classify_layers(&records, cfg.options.tau),
        super::sweep::Scope::Global => Vec::new(),
    };
    let outside_range = parts.iter().find_map(|p| p.result.outside_range);
    Ok(SweepResult {
        config: cfg.clone(),
        baseline: first_baseline(parts),
        records,
        layer_classes,
        outside_range,
        cancelled: false,
    })
}

/// The baseline of the first share that ran anything (a share with no units measures none).
fn first_baseline(parts: &[SweepShard]) -> super::sweep::Baseline {
    parts.iter().find(|p| !p.result.records.is_empty()).map_or(parts[0].result.baseline, |p| p.result.baseline)
}

/// In one process, a step removing a whole set reuses the counts of an earlier filter's
/// step that removed it all (sweep.rs); a shard running that filter alone measured them.
/// The counts are the same; this marks the flags as one process would have.
fn mark_all_removed_reuse(records: &mut [SweepRecord]) {
    for i in 0..records.len() {
        let (earlier, rest) = records.split_at_mut(i);
        let rec = &mut rest[0];
        let seen = earlier.iter().any(|e| e.layer == rec.layer && e.removed.contains(&e.n));
        if seen {
            for (step, &removed) in rec.removed.iter().enumerate() {
                if removed == rec.n && rec.n > 0 {
                    rec.reused[step] = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_zero_and_share_every_unit_once() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3", "1/3/4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let shards: Vec<Units> = (0..3).map(|i| Units::new(Shard::new(i, 3).unwrap())).collect();
        let mut seen = vec![0; 10];
        for u in &shards {
            for k in u.take(4).into_iter().chain(u.take(6).into_iter().map(|k| k + 4)) {
                seen[k] += 1;
            }
        }
        assert_eq!(seen, vec![1; 10]);
        assert_eq!(shards.iter().map(Units::owned).sum::<usize>(), 10);
    }
}
