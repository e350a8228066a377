//! The compute worker survives a job that panics: the job fails with a message, the
//! network is left unfiltered, and the next jobs run as before (issue 21, item 5).

use crate::common;

use std::time::{Duration, Instant};

use candle_core::Device;
use common::*;
use fragility_explorer::engine::analysis::masks::{FilterSet, Masker};
use fragility_explorer::engine::attack::AttackConfig;
use fragility_explorer::engine::device::DeviceChoice;
use fragility_explorer::engine::model::Network;
use fragility_explorer::engine::progress::StopFlag;
use fragility_explorer::jobs::command::{
    Command, EvalOutcome, EvalSetup, Event, ExportItem, Job, JobKind, Payload, Source,
};
use fragility_explorer::jobs::worker::Worker;

/// Waits for the final event of `generation` (progress and estimates are skipped).
fn final_event(worker: &Worker, kind: JobKind, generation: u64) -> Payload {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match worker.try_recv() {
            Some(Event { kind: k, generation: g, payload }) if k == kind && g == generation => match payload {
                Payload::Progress { .. } | Payload::EvalEstimate(_) => {}
                p => return p,
            },
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("no answer to {kind:?} job {generation} within 120 s");
}

/// What a payload that was not the expected one says.
fn failure(payload: &Payload) -> String {
    match payload {
        Payload::Failed(message) => format!("failed: {message}"),
        Payload::Cancelled => "cancelled".into(),
        _ => "another answer".into(),
    }
}

fn job(kind: JobKind, generation: u64) -> Job {
    Job { kind, generation, stop: StopFlag::new() }
}

fn evaluate(worker: &Worker, generation: u64) -> EvalOutcome {
    let setup = EvalSetup { attack: AttackConfig::fgsm(0.1), subset: 200, batch: 100 };
    worker.send(Command::Evaluate { job: job(JobKind::Eval, generation), filter: None, setup }).unwrap();
    match final_event(worker, JobKind::Eval, generation) {
        Payload::Evaluated(outcome) => outcome,
        other => panic!("evaluation {generation} did not finish: {}", failure(&other)),
    }
}

#[test]
fn the_worker_survives_a_panicking_job_and_answers_the_next_ones() {
    let worker = Worker::spawn(DeviceChoice::Cpu, || {}).unwrap();
    let open =
        Command::Open { job: job(JobKind::Load, 1), model: Some(Source::Embedded), data: Some(Source::Embedded) };
    worker.send(open).unwrap();
    assert!(matches!(final_event(&worker, JobKind::Load, 1), Payload::Opened { .. }));
    let before = evaluate(&worker, 2);

    // A figure builder that panics stands for any bug a job may hit.
    let item = ExportItem {
        stem: "broken".into(),
        build: Box::new(|| panic!("a builder bug")),
        config: serde_json::json!({}),
    };
    let dir = tempfile::tempdir().unwrap();
    let export = Command::Export { job: job(JobKind::Export, 3), dir: dir.path().into(), items: vec![item] };
    worker.send(export).unwrap();
    match final_event(&worker, JobKind::Export, 3) {
        Payload::Failed(message) => {
            assert!(message.contains("internal error") && message.contains("a builder bug"), "{message}")
        }
        other => panic!("the panicking export was not reported as failed: {}", failure(&other)),
    }

    assert!(worker.is_alive(), "the worker thread ended with the panic");
    let after = evaluate(&worker, 4);
    assert_eq!(after, before, "the network or its data changed across the panic");
}

#[test]
fn a_panic_while_a_network_is_filtered_leaves_it_unfiltered() {
    let net = Network::load(&fixtures().join("analysis/tiny_cnn.safetensors"), None, &Device::Cpu).unwrap();
    let original = all_weights(&net);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut masker = Masker::new(&net);
        let set = FilterSet::global(&net, true).unwrap();
        let zeros = vec![0f32; masker.values(&set).unwrap().len()];
        masker.apply(&set, &zeros).unwrap();
        assert!(all_weights(&net).iter().all(|w| *w == 0.0), "the mask was not applied");
        panic!("a job bug while filtered");
    }));
    assert!(unwound.is_err());
    assert_eq!(all_weights(&net), original);
}

fn all_weights(net: &Network) -> Vec<f32> {
    net.params.params().iter().filter(|p| p.role.trainable()).flat_map(|p| vec4(p.var.as_tensor())).collect()
}
