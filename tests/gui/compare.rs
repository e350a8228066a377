//! The Compare view: runs added through the dialog (and the built-in browser's answer path),
//! plotted on shared axes, exported like every figure; a file that is not a trajectory gives
//! one error and leaves the runs there; a study's folder adds all its runs.

use std::sync::Arc;

use egui_kittest::kittest::Queryable;
use fragility_explorer::engine::analysis::trajectory::TrajectoryResult;
use fragility_explorer::export::figures::builders::Score;
use fragility_explorer::ui::actions::{Action, FigureId};
use fragility_explorer::ui::dialogs::ScriptedDialogs;
use fragility_explorer::ui::settings::{ComparePlot, Tab};

use crate::app::{app, wait};
use crate::common::synthetic;

fn write_run(dir: &std::path::Path, name: &str, model: &str, parameters: usize) -> std::path::PathBuf {
    let mut r: TrajectoryResult = synthetic::trajectory();
    r.run.model = model.into();
    r.run.parameters = parameters;
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("trajectory.json");
    std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
    path
}

#[test]
fn runs_are_added_compared_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let small = write_run(dir.path(), "small", "small (sequential)", 6_802);
    let large = write_run(dir.path(), "large", "large (resnet18)", 11_000_000);
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut h = app(dialogs.clone(), [1300.0, 820.0]);
    h.get_by_label("Compare").click();
    h.step();
    assert_eq!(h.state().settings.layout.tab, Tab::Compare);
    h.get_by_label_contains("No runs to compare yet");

    for path in [&small, &large] {
        ScriptedDialogs::push(&dialogs.results, path.clone());
        let before = h.state().session.runs.len();
        h.get_by_label("Add run…").click();
        wait(&mut h, "the run to be read", |a| a.session.runs.len() == before + 1);
    }
    h.get_by_label_contains("Run 1: small (sequential) on MNIST test");
    h.get_by_label_contains("Run 2: large (resnet18) on MNIST test");
    assert_eq!(h.state().settings.recent_runs.first(), Some(&large));

    // Every plot draws without an error, the per-run ones one per run.
    for plot in ComparePlot::ALL {
        h.state_mut().settings.compare_plot = plot;
        h.state_mut().settings.compare_score = Score::Diff;
        h.step();
        h.step();
        assert!(
            h.query_all_by_label_contains("the trajectory holds no").next().is_none(),
            "{plot:?} could not be drawn"
        );
    }
    h.state_mut().settings.compare_plot = ComparePlot::LayerScores;
    h.step();
    h.get_by_label_contains("Run 1, small (sequential)");
    h.get_by_label_contains("Run 2, large (resnet18)");

    // Export: one figure per run, on one scale.
    let out = dir.path().join("figures");
    ScriptedDialogs::push(&dialogs.folders, out.clone());
    // The view's own button, as Ctrl+E presses it (the side panel has one of its own).
    h.state_mut().push(Action::Export(FigureId::Compare));
    h.step();
    wait(&mut h, "the export", |a| !a.session.exported.is_empty());
    for stem in ["compare-run1-scores-s-diff", "compare-run2-scores-s-diff"] {
        for ext in ["png", "svg", "csv", "json"] {
            assert!(out.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
        }
    }

    // A file that is not a trajectory: one error, the runs kept.
    let sweep = dir.path().join("sweep.json");
    std::fs::write(&sweep, serde_json::to_vec(&synthetic::sweep()).unwrap()).unwrap();
    ScriptedDialogs::push(&dialogs.results, sweep);
    let errors = |a: &fragility_explorer::ui::ExplorerApp| a.session.messages.iter().filter(|m| m.error).count();
    let before = errors(h.state());
    h.get_by_label("Add run…").click();
    wait(&mut h, "the error", |a| errors(a) == before + 1);
    assert_eq!(h.state().session.runs.len(), 2);
    let last = h.state().session.messages.last().unwrap().text.clone();
    assert!(last.contains("not a trajectory result") && last.contains("sweep.json"), "{last}");

    // Removing a run.
    h.query_all_by_label("Remove").next().expect("a remove button").click();
    h.step();
    h.step();
    assert_eq!(h.state().session.runs.len(), 1);

    // A study's folder adds every run its study.json names (paths relative to it).
    let study = serde_json::json!({
        "file": "study.toml",
        "runs": [
            {"name": "small", "results": "small/trajectory.json", "seconds": 1.0},
            {"name": "large", "results": "large/trajectory.json", "seconds": 2.0},
        ],
        "compare": "compare",
        "seconds": 3.0,
    });
    std::fs::write(dir.path().join("study.json"), study.to_string()).unwrap();
    ScriptedDialogs::push(&dialogs.results, dir.path().to_path_buf());
    h.get_by_label("Add run…").click();
    // The run still there is read again in its place, the removed one comes back.
    wait(&mut h, "the study's runs", |a| a.session.runs.len() == 2);
    h.get_by_label_contains("Run 1: large (resnet18) on MNIST test");
    h.get_by_label_contains("Run 2: small (sequential) on MNIST test");
}
