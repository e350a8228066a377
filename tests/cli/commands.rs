//! The command line as a user meets it: help, the embedded default, clear errors.

use crate::common;

use std::process::{Command, Output};

use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fragility-explorer")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let top = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(top.contains("Usage"), "{top}");
    // The commands clap lists, one a line under "Commands:".
    let section = top.split_once("Commands:\n").expect("a Commands section").1;
    let commands: Vec<&str> =
        section.lines().take_while(|l| !l.trim().is_empty()).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(commands.len(), 15, "{commands:?}");
    for cmd in commands {
        let o = if cmd == "help" { run(&["help"]) } else { run(&[cmd, "--help"]) };
        assert!(o.status.success(), "{cmd} --help: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"), "{cmd}");
    }
}

#[test]
fn info_lists_the_embedded_model() {
    let o = run(&["info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"], 421642);
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["features.0", "features.3", "classifier.0", "classifier.2"]);
    assert!(layers.iter().all(|l| l["filterable"] == true && l["min"].as_f64() < l["max"].as_f64()));
}

/// What feeds what, in the three forms `info` writes, for an ONNX ResNet-18; and a pipe
/// closed early ends the command quietly.
#[test]
fn info_shows_the_graph_as_a_table_json_and_dot() {
    let model = fixtures().join("models/resnet18_cifar.ts.onnx");
    let model = model.to_str().unwrap();
    let o = run(&["info", "--model", model]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = table.lines().find(|l| l.trim_start().starts_with("add (layer1.0) ")).expect("the first sum");
    assert!(line.ends_with("<- layer1.0.bn2 + bn1"), "{line}");
    let o = run(&["info", "--model", model, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes = v["graph"]["nodes"].as_array().unwrap();
    let adds = nodes.iter().filter(|n| n["kind"] == serde_json::json!({"merge": "add"})).count();
    assert_eq!(adds, 8, "ResNet-18 has eight residual sums");
    let o = run(&["info", "--model", model, "--dot"]);
    let dot = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(dot.starts_with("digraph model {") && dot.trim_end().ends_with('}'), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), nodes.iter().map(|n| n["inputs"].as_array().unwrap().len()).sum::<usize>());
    // `info | head -1`: the reader goes away after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fragility-explorer"))
        .args(["info", "--model", model])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn eval_on_the_embedded_default_reports_json() {
    let o = run(&["eval", "--limit", "200", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "clean_accuracy",
        "adversarial_accuracy",
        "correct_clean",
        "correct_adversarial",
        "n",
        "eps",
        "attack",
        "grad",
        "saturated",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["n"], 200);
    assert!(v["correct_adversarial"].as_u64() < v["correct_clean"].as_u64());
}

/// The ensemble on the command line: its parameters in the config, the robust count after each
/// of its attacks, the gradient checks, and the same numbers for the same seed.
#[test]
fn the_strong_ensemble_reports_its_stages_and_checks() {
    let args = [
        "eval",
        "--limit",
        "40",
        "--attack",
        "strong",
        "--eps",
        "0.3",
        "--clamp",
        "--attack-steps",
        "5",
        "--queries",
        "50",
        "--target-classes",
        "2",
        "--seed",
        "3",
        "--json",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages: Vec<(&str, u64)> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["attack"].as_str().unwrap(), s["robust"].as_u64().unwrap()))
        .collect();
    assert_eq!(stages.iter().map(|s| s.0).collect::<Vec<_>>(), ["apgd-ce", "apgd-t", "fab-t", "square"]);
    assert_eq!(stages[3].1, v["correct_adversarial"].as_u64().unwrap());
    let attack = &v["config"]["attack"];
    assert_eq!((attack["kind"].as_str(), attack["queries"].as_u64()), (Some("strong"), Some(50)));
    assert_eq!((attack["targets"].as_u64(), attack["seed"].as_u64()), (Some(2), Some(3)));
    for key in ["zero_gradient", "nonfinite_gradient", "randomized", "warnings"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let again = run(&args);
    assert_eq!(again.stdout, o.stdout, "the same seed gives the same report");
    let human = run(&args[..args.len() - 1]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("robust after Square"), "{text}");
}

#[test]
fn pgd_is_at_least_as_strong_as_fgsm() {
    let parse = |o: Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let fgsm = parse(run(&["eval", "--limit", "100", "--eps", "0.2", "--json"]));
    let pgd = parse(run(&["eval", "--limit", "100", "--eps", "0.2", "--attack", "pgd", "--pgd-steps", "5", "--json"]));
    assert!(pgd["correct_adversarial"].as_u64() <= fgsm["correct_adversarial"].as_u64(), "{pgd} vs {fgsm}");
}

#[test]
fn wrong_image_size_is_a_clear_error() {
    let Some(shared) = shared_data() else { return };
    let o = run(&["eval", "--data", shared.join("samples/cifar10").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("the dataset's images are 3x32x32 but the model takes 1x28x28"), "{e}");
}

#[test]
fn bad_arguments_and_files_fail_cleanly() {
    let o = run(&["eval", "--limit", "10", "--eps", "-1"]);
    assert!(stderr(&o).contains("eps must be a finite number >= 0"), "{}", stderr(&o));
    let o = run(&["eval", "--model", "/no/such/model.pth"]);
    let e = stderr(&o);
    assert!(e.starts_with("error: cannot read") && e.contains("/no/such/model.pth"), "{e}");
    let evil = fixtures().join("checkpoints/evil.pth");
    let o = run(&["info", "--model", evil.to_str().unwrap()]);
    assert!(stderr(&o).contains("argparse.Namespace"));
}

/// The analysis fixture's card with the sizes training from scratch needs, in `dir`.
fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn analysis_commands_write_their_results() {
    let data = tiny_mnist();
    let out = tempfile::tempdir().unwrap();
    let model = fixtures().join("analysis/tiny_cnn.safetensors");
    let common = ["--model", path(&model), "--data", path(data.path())];
    let o = run(
        &[&["sweep"][..], &common, &["--steps", "3", "--layers", "features.4", "--out", path(out.path())]].concat()
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["sweep.json", "sweep.csv", "scores.csv", "layers.csv"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("sweep.json")).unwrap()).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    for key in [
        "layer",
        "filter",
        "alphas",
        "removed",
        "n",
        "clean_correct",
        "adv_correct",
        "clean_accuracy",
        "adv_accuracy",
        "rho",
        "s_clean",
        "s_adv",
        "s_diff",
        "step_class_clean",
        "step_class_adv",
    ] {
        assert!(v["records"][0].get(key).is_some(), "sweep record lacks {key}");
    }
    let o = run(&[&["dropout"][..], &common, &["--out", path(out.path())]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("dropout.json")).unwrap()).unwrap();
    for key in
        ["layer", "accuracy_per_kernel", "mean", "fragile", "null", "d_per_kernel", "d_fragile", "d_other", "targeted"]
    {
        assert!(v.get(key).is_some(), "dropout.json lacks {key}");
    }
    let o = run(&["sweep", "--model", path(&model), "--data", path(data.path()), "--steps", "4"]);
    assert!(stderr(&o).contains("odd and at least 3"), "{}", stderr(&o));
}

#[test]
fn train_resume_landscape_and_selective_run_end_to_end() {
    let data = tiny_mnist();
    let runs = tempfile::tempdir().unwrap();
    let card = training_card(runs.path());
    let ckpts = runs.path().join("run");
    let o = run(&[
        "train",
        "--model-card",
        path(&card),
        "--data",
        path(data.path()),
        "--epochs",
        "1",
        "--out",
        path(&ckpts),
        "--test-limit",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = ckpts.join("checkpoint-epoch-001.safetensors");
    assert!(first.is_file() && ckpts.join("checkpoint-epoch-001.json").is_file() && ckpts.join("train.csv").is_file());
    let o = run(&[
        "train",
        "--resume",
        path(&first),
        "--data",
        path(data.path()),
        "--epochs",
        "2",
        "--out",
        path(&ckpts),
        "--test-limit",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ckpts.join("checkpoint-epoch-002.safetensors").is_file());

    let land = runs.path().join("landscape");
    let o = run(&[
        "landscape",
        "--checkpoints",
        path(&ckpts),
        "--data",
        path(data.path()),
        "--steps",
        "3",
        "--layers",
        "features.0",
        "--out",
        path(&land),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(land.join("landscape.json")).unwrap()).unwrap();
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 2);

    let sel = runs.path().join("selective");
    let o = run(&[
        "selective",
        "--checkpoint",
        path(&first),
        "--data",
        path(data.path()),
        "--epochs",
        "2",
        "--steps",
        "3",
        "--out",
        path(&sel),
        "--test-limit",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(sel.join("selective.json").is_file() && sel.join("regular/checkpoint-epoch-002.safetensors").is_file());
}

#[test]
fn ctrl_c_stops_a_sweep_and_keeps_its_finished_steps() {
    let out = tempfile::tempdir().unwrap();
    let rest = interrupted_sweep(out.path());
    assert!(rest.contains("cancelled: the steps finished so far are kept"), "{rest}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("sweep.json")).unwrap()).unwrap();
    assert_eq!(v["cancelled"], true);
    let steps: usize =
        v["records"].as_array().unwrap().iter().map(|r| r["clean_correct"].as_array().unwrap().len()).sum();
    assert!(steps < 4 * 3 * 25, "the sweep stopped early ({steps} steps)");
}

/// Runs `sweep --limit 300 --out dir`, presses Ctrl-C once it has started, and returns what
/// it printed on stderr after its first line; it must exit with 130.
fn interrupted_sweep(dir: &std::path::Path) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fragility-explorer"))
        .args(["sweep", "--limit", "300", "--out", path(dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The announcement comes after the Ctrl-C handler is installed.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("Ctrl-C stops"), "{line}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill only sends SIGINT to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest}");
    rest
}

/// Every command of the README's command-line block, as written there: first with its
/// required words, then with each optional group on its own, placeholders filled with the
/// analysis fixture. A flag documented but not parsed (or parsed but documented otherwise)
/// fails here, and so does an `--out` folder that lacks a file the README's table promises.
#[test]
fn the_readme_command_line_block_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = common::readme::commands(&common::readme::code_block_after(&readme, "## Command line"));
    let names: Vec<&str> = commands.iter().filter_map(|c| c.words.get(1).map(String::as_str)).collect();
    assert_eq!(
        names,
        [
            "info",
            "eval",
            "convert",
            "sweep",
            "dropout",
            "train",
            "landscape",
            "trajectory",
            "compare",
            "study",
            "sweep",
            "merge",
            "selective",
            "figure"
        ],
        "the block's commands, in an order where each finds what the ones before it wrote"
    );
    let data = tiny_mnist();
    let dir = tempfile::tempdir().unwrap();
    let analysis = fixtures().join("analysis");
    let places = common::readme::Places {
        model: analysis.join("tiny_cnn.safetensors"),
        card: analysis.join("tiny_cnn.json"),
        training_card: training_card(data.path()),
        data: data.path().to_path_buf(),
        dir: dir.path().to_path_buf(),
        study: dir.path().join("study.toml"),
    };
    let study = format!(
        "[options]\nsteps = 3\n\n[[runs]]\nname = \"tiny\"\ncheckpoints = \"{}\"\ndata = \"{}\"\n",
        places.dir.display(),
        places.data.display()
    );
    std::fs::write(&places.study, study).unwrap();
    let promised = promised_files(&readme);
    // `convert --out` writes into an existing folder, as a user's would be.
    std::fs::create_dir(dir.path().join("converted")).unwrap();
    for command in &commands {
        assert_eq!(command.words[0], "fragility-explorer", "{}", command.text);
        for words in common::readme::variants(command) {
            let args = common::readme::fill(&words[1..], &places);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = run(&args);
            assert!(o.status.success(), "`{}` as `{}` failed:\n{}", command.text, args.join(" "), stderr(&o));
            if args.contains(&"--out") {
                for file in promised.iter().filter(|(c, _)| c == args[0]).map(|(_, f)| f) {
                    assert!(dir.path().join(file).exists(), "`{}` did not write {file}", args.join(" "));
                }
            }
        }
    }
}

/// (command, file) pairs of the README's table of output files; `NNN` is the first epoch.
fn promised_files(readme: &str) -> Vec<(String, String)> {
    let table = readme.split_once("| command | files | contents |").expect("the README's table of output files").1;
    let mut command = String::new();
    let mut out = Vec::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if !cells[1].is_empty() {
            command = cells[1].trim_matches('`').to_string();
        }
        let is_file =
            |f: &&str| !f.starts_with('.') && [".json", ".csv", ".safetensors", "/"].iter().any(|end| f.ends_with(end));
        for file in cells[2].split('`').skip(1).step_by(2).filter(is_file) {
            out.push((command.clone(), file.replace("NNN", "001")));
        }
    }
    assert!(out.len() >= 10, "the table lists the analyses' files: {out:?}");
    out
}

/// Numbers and cards a layer or float32 cannot work with are refused with the accepted range,
/// and a results file whose arrays disagree is an error, never a panic (exit 101).
#[test]
fn hostile_numbers_cards_and_results_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let analysis = fixtures().join("analysis");
    let model = analysis.join("tiny_cnn.safetensors");
    let card = std::fs::read_to_string(analysis.join("tiny_cnn.json")).unwrap();
    let info = |card_text: String| {
        let file = dir.path().join("card.json");
        std::fs::write(&file, card_text).unwrap();
        run(&["info", "--model", path(&model), "--card", path(&file)])
    };
    for (card_text, expected) in [
        (card.replacen("\"padding\": 1", "\"padding\": 1, \"stride\": 0", 1), "`stride` must be at least 1"),
        (card.replacen("\"kernel\": 2", "\"kernel\": 0", 1), "`kernel` must be at least 1"),
        (card.replacen("\"padding\": 1", "\"padding\": 1, \"dilation\": 0", 1), "`dilation` must be at least 1"),
        (card.replace("0.3081", "1e-30"), "`normalize.std` values must be at least"),
    ] {
        let o = info(card_text);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    }
    // The card and the checkpoint agree on every bias, in both directions.
    let o = info(card.replacen("\"key\": \"classifier.2\"", "\"key\": \"classifier.2\", \"bias\": false", 1));
    assert!(
        stderr(&o).contains("no bias (\"bias\": false) but the checkpoint holds `classifier.2.bias`"),
        "{}",
        stderr(&o)
    );
    let mut tensors = load_tensors(&model);
    tensors.remove("classifier.2.bias");
    let unbiased = dir.path().join("unbiased.safetensors");
    candle_core::safetensors::save(&tensors, &unbiased).unwrap();
    let card_path = dir.path().join("unbiased-card.json");
    std::fs::write(&card_path, &card).unwrap();
    let o = run(&["info", "--model", path(&unbiased), "--card", path(&card_path)]);
    assert!(
        stderr(&o).contains("gives `classifier.2` a bias but the checkpoint lacks `classifier.2.bias`"),
        "{}",
        stderr(&o)
    );

    let o = info(format!("\u{feff}{card}"));
    assert!(o.status.success(), "a byte-order mark before the JSON is fine: {}", stderr(&o));

    let o = run(&["eval", "--limit", "10", "--eps", "1e300"]);
    assert!(stderr(&o).contains("at most 1000000"), "{}", stderr(&o));
    let o = run(&["sweep", "--limit", "10", "--steps", "1000001"]);
    assert!(stderr(&o).contains("at most 10001") && o.status.code() == Some(1), "{}", stderr(&o));

    let out = dir.path().join("sweep");
    let o = run(&["sweep", "--model", path(&model), "--data", path(&analysis), "--layers", "features.0"]
        .into_iter()
        .chain(["--steps", "3", "--filters", "h1", "--limit", "20", "--out", path(&out)])
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let results = out.join("sweep.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    v["records"][0]["rho"].as_array_mut().unwrap().pop();
    std::fs::write(&results, v.to_string()).unwrap();
    let o = run(&["figure", "--results", path(&results)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("`rho` has 2 values but `clean_correct` has 3"), "{}", stderr(&o));
}

/// A cancelled sweep never replaces a complete earlier result: both are kept, and the user is
/// told where the partial one went. An output folder that cannot be written is found before
/// any work, and `convert` does not write its card over a file it was not asked to replace.
#[test]
fn results_are_never_replaced_by_partial_ones_or_written_over_unasked() {
    let out = tempfile::tempdir().unwrap();
    let dir = path(out.path());
    let o = run(&["sweep", "--limit", "20", "--steps", "3", "--layers", "features.0", "--out", dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let complete = std::fs::read(out.path().join("sweep.json")).unwrap();

    let rest = interrupted_sweep(out.path());
    assert!(rest.contains("holds a complete earlier result"), "{rest}");
    assert_eq!(std::fs::read(out.path().join("sweep.json")).unwrap(), complete, "the complete result is untouched");
    let partial = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("cancelled-"))
        .expect("the partial result's folder");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(partial.path().join("sweep.json")).unwrap()).unwrap();
    assert_eq!(v["cancelled"], true);

    // Not a folder (as root, permissions cannot make one unwritable): refused before work.
    let file = out.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let start = std::time::Instant::now();
    let o = run(&["sweep", "--out", path(&file.join("results"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot create the output folder"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("sweeping"), "found before the sweep started: {}", stderr(&o));
    eprintln!("refused in {:?}", start.elapsed());

    let card = out.path().join("mine.json");
    std::fs::write(&card, b"{\"my\": \"notes\"}").unwrap();
    let o = run(&["convert", "--out", path(&out.path().join("mine.safetensors"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("would be replaced"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&card).unwrap(), b"{\"my\": \"notes\"}");
}
