//! Engine progress turned into events for the UI, with an ETA, at most a few per second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::command::{Event, JobKind, Payload};
use super::worker::Outbox;
use crate::engine::progress::Progress;

/// How often progress events may be sent; the UI repaints on each.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

struct Stage {
    name: String,
    total: usize,
    done: usize,
    started: Instant,
    last_sent: Option<Instant>,
}

/// Progress of one job, sent to the UI as `Payload::Progress` events.
pub struct EventProgress<'a> {
    out: &'a Outbox,
    kind: JobKind,
    generation: u64,
    stage: Mutex<Stage>,
}

impl<'a> EventProgress<'a> {
    pub fn new(out: &'a Outbox, kind: JobKind, generation: u64) -> Self {
        let stage = Stage { name: String::new(), total: 0, done: 0, started: Instant::now(), last_sent: None };
        Self { out, kind, generation, stage: Mutex::new(stage) }
    }

    fn send(&self, s: &mut Stage, force: bool) {
        let now = Instant::now();
        if !force && s.last_sent.is_some_and(|t| now - t < MIN_INTERVAL) && s.done < s.total {
            return;
        }
        s.last_sent = Some(now);
        let elapsed = (now - s.started).as_secs_f64();
        // Linear extrapolation; no estimate until some work is done.
        let eta_s = (s.done > 0 && s.total >= s.done).then(|| elapsed / s.done as f64 * (s.total - s.done) as f64);
        self.out.send(Event {
            kind: self.kind,
            generation: self.generation,
            payload: Payload::Progress { stage: s.name.clone(), done: s.done, total: s.total, eta_s },
        });
    }
}

impl Progress for EventProgress<'_> {
    fn start(&self, stage: &str, total: usize) {
        let Ok(mut s) = self.stage.lock() else { return };
        *s = Stage { name: stage.to_string(), total, done: 0, started: Instant::now(), last_sent: None };
        self.send(&mut s, true);
    }

    fn advance(&self, n: usize) {
        let Ok(mut s) = self.stage.lock() else { return };
        s.done += n;
        self.send(&mut s, false);
    }
}
