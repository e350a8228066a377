//! The UI's view of jobs: generations, stop flags, progress and ETA per kind.

use std::collections::BTreeMap;
use std::time::Instant;

use super::command::{Event, Job, JobKind, Payload};
use crate::engine::progress::StopFlag;

#[derive(Debug, Clone)]
pub struct JobStatus {
    pub generation: u64,
    pub stop: StopFlag,
    pub started: Instant,
    pub stage: String,
    pub done: usize,
    pub total: usize,
    pub eta_s: Option<f64>,
    pub running: bool,
}

impl JobStatus {
    /// Fraction done of the current stage, if it has a size.
    pub fn fraction(&self) -> Option<f32> {
        (self.total > 0).then(|| (self.done as f32 / self.total as f32).clamp(0.0, 1.0))
    }
}

#[derive(Debug, Default)]
pub struct JobTracker {
    next_generation: u64,
    jobs: BTreeMap<JobKind, JobStatus>,
}

impl JobTracker {
    /// A new job of `kind`; the running one of the same kind is told to stop.
    pub fn start(&mut self, kind: JobKind) -> Job {
        self.next_generation += 1;
        if let Some(old) = self.jobs.get(&kind) {
            old.stop.stop();
        }
        let stop = StopFlag::new();
        self.jobs.insert(
            kind,
            JobStatus {
                generation: self.next_generation,
                stop: stop.clone(),
                started: Instant::now(),
                stage: String::new(),
                done: 0,
                total: 0,
                eta_s: None,
                running: true,
            },
        );
        Job { kind, generation: self.next_generation, stop }
    }

    /// Asks the running job of `kind` to stop; its partial results still arrive.
    pub fn cancel(&mut self, kind: JobKind) {
        if let Some(j) = self.jobs.get(&kind) {
            j.stop.stop();
        }
    }

    /// Marks a job that could not be sent as ended.
    pub fn abandon(&mut self, kind: JobKind) {
        if let Some(j) = self.jobs.get_mut(&kind) {
            j.running = false;
        }
    }

    /// Whether an event answers the newest job of its kind (older ones are dropped).
    pub fn is_current(&self, e: &Event) -> bool {
        self.jobs.get(&e.kind).is_some_and(|j| j.generation == e.generation)
    }

    /// Updates progress and the running state from a current event.
    pub fn update(&mut self, e: &Event) {
        let Some(j) = self.jobs.get_mut(&e.kind) else { return };
        if j.generation != e.generation {
            return;
        }
        match &e.payload {
            Payload::Progress { stage, done, total, eta_s } => {
                j.stage.clone_from(stage);
                j.done = *done;
                j.total = *total;
                j.eta_s = *eta_s;
            }
            Payload::Opened { .. }
            | Payload::NeedCard { .. }
            | Payload::Layer(_)
            | Payload::Evaluated(_)
            | Payload::Samples(_)
            | Payload::SweepDone(_)
            | Payload::EpsDone
            | Payload::Dropout(_)
            | Payload::Landscape(_)
            | Payload::Trained(_)
            | Payload::Exported(_)
            | Payload::Runs { .. }
            | Payload::Cancelled
            | Payload::Failed(_) => j.running = false,
            _ => {}
        }
    }

    pub fn status(&self, kind: JobKind) -> Option<&JobStatus> {
        self.jobs.get(&kind)
    }

    pub fn is_running(&self, kind: JobKind) -> bool {
        self.jobs.get(&kind).is_some_and(|j| j.running)
    }

    /// Running jobs, in kind order.
    pub fn running(&self) -> impl Iterator<Item = (JobKind, &JobStatus)> {
        self.jobs.iter().filter(|(_, j)| j.running).map(|(k, j)| (*k, j))
    }

    pub fn any_running(&self) -> bool {
        self.jobs.values().any(|j| j.running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: JobKind, generation: u64, payload: Payload) -> Event {
        Event { kind, generation, payload }
    }

    #[test]
    fn a_newer_job_stops_the_older_and_its_events_are_stale() {
        let mut t = JobTracker::default();
        let a = t.start(JobKind::Eval);
        let b = t.start(JobKind::Eval);
        assert!(a.stop.is_stopped() && !b.stop.is_stopped());
        assert!(!t.is_current(&event(JobKind::Eval, a.generation, Payload::Cancelled)));
        assert!(t.is_current(&event(JobKind::Eval, b.generation, Payload::Cancelled)));
        t.update(&event(JobKind::Eval, b.generation, Payload::Cancelled));
        assert!(!t.is_running(JobKind::Eval));
    }

    #[test]
    fn progress_keeps_a_job_running() {
        let mut t = JobTracker::default();
        let j = t.start(JobKind::Sweep);
        let p = Payload::Progress { stage: "sweeping".into(), done: 3, total: 10, eta_s: Some(7.0) };
        t.update(&event(JobKind::Sweep, j.generation, p));
        let s = t.status(JobKind::Sweep).unwrap();
        assert!(s.running && s.fraction() == Some(0.3) && s.eta_s == Some(7.0));
    }
}
