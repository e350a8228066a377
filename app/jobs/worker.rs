//! The one compute thread: it owns the device, the network, the data and their caches,
//! takes commands from a bounded channel and answers with events.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, unbounded};

use super::command::{Command, Event, Job, JobKind, Payload};
use super::progress::EventProgress;
use super::state::WorkerState;
use super::tasks;
use crate::engine::EngineError;
use crate::engine::device::DeviceChoice;
use crate::engine::progress::Ctrl;

/// Commands waiting beyond this make `send` fail instead of blocking the UI.
const QUEUE: usize = 64;

/// Sends events to the UI and wakes it.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Event>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Outbox {
    pub fn send(&self, event: Event) {
        // The UI is gone when this fails; the worker ends at its next receive.
        if self.tx.send(event).is_ok() {
            (self.wake)();
        }
    }

    pub fn reply(&self, job: &Job, payload: Payload) {
        self.send(Event { kind: job.kind, generation: job.generation, payload });
    }
}

/// The UI's handle on the worker thread.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker; `wake` is called after every event (the UI passes
    /// `ctx.request_repaint`).
    pub fn spawn(device: DeviceChoice, wake: impl Fn() + Send + Sync + 'static) -> std::io::Result<Self> {
        let (commands, inbox) = bounded(QUEUE);
        let (tx, events) = unbounded();
        let out = Outbox { tx, wake: Arc::new(wake) };
        let thread = std::thread::Builder::new().name("engine-worker".into()).spawn(move || run(device, inbox, out))?;
        Ok(Self { commands, events, thread: Some(thread) })
    }

    /// Queues a command without waiting; an error means the worker is gone or swamped.
    pub fn send(&self, command: Command) -> Result<(), String> {
        match self.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err("the worker is busy with too many requests; try again".into()),
            Err(TrySendError::Disconnected(_)) => Err("the compute worker has stopped; restart the app".into()),
        }
    }

    /// The next waiting event, if any (never blocks).
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Never join: a long batch may still be running and the UI must close at once.
        self.commands.try_send(Command::Shutdown).ok();
        self.thread.take();
    }
}

/// Keeps, of the commands waiting, only the newest of each kind that supersedes
/// (exports always run); order is otherwise kept.
fn coalesce(queue: Vec<Command>, out: &Outbox) -> Vec<Command> {
    let mut keep = Vec::with_capacity(queue.len());
    for (i, cmd) in queue.iter().enumerate() {
        let superseded = match cmd.job() {
            // Exports and runs to compare add up: a newer one does not replace an older one.
            Some(job) if !matches!(job.kind, JobKind::Export | JobKind::Compare) => {
                queue[i + 1..].iter().any(|later| later.job().is_some_and(|j| j.kind == job.kind))
            }
            _ => false,
        };
        keep.push(!superseded);
    }
    let mut result = Vec::new();
    for (cmd, k) in queue.into_iter().zip(keep) {
        if k {
            result.push(cmd);
        } else if let Some(job) = cmd.job() {
            out.reply(job, Payload::Cancelled);
        }
    }
    result
}

fn run(device: DeviceChoice, inbox: Receiver<Command>, out: Outbox) {
    super::priority::lower_compute();
    let mut state = match WorkerState::new(device) {
        Ok(s) => s,
        Err(e) => {
            out.send(Event { kind: JobKind::Load, generation: 0, payload: Payload::Failed(format!("{e:#}")) });
            return;
        }
    };
    while let Ok(first) = inbox.recv() {
        let mut queue = vec![first];
        queue.extend(inbox.try_iter());
        for cmd in coalesce(queue, &out) {
            let Some(job) = cmd.job().cloned() else { return };
            if job.stop.is_stopped() {
                out.reply(&job, Payload::Cancelled);
                continue;
            }
            let progress = EventProgress::new(&out, job.kind, job.generation);
            let ctrl = Ctrl { progress: &progress, stop: &job.stop };
            // A panic in one job (a bug, or input no check foresaw) fails that job only: the
            // state's guards restore the weights as the panic unwinds, and the worker goes on.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tasks::run(&mut state, cmd, ctrl, &|p| out.reply(&job, p))
            }));
            match result {
                Ok(Ok(Some(payload))) => out.reply(&job, payload),
                Ok(Ok(None)) => {}
                Ok(Err(e)) if is_cancelled(&e) => out.reply(&job, Payload::Cancelled),
                Ok(Err(e)) => out.reply(&job, Payload::Failed(format!("{e:#}"))),
                Err(panic) => out.reply(&job, Payload::Failed(panic_message(panic.as_ref()))),
            }
        }
    }
}

fn is_cancelled(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<EngineError>(), Some(EngineError::Cancelled))
}

/// What a caught panic said, as a job failure the user can report.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("internal error ({what}); the job was stopped and the app goes on, please report it")
}
