//! `eval --out`: the per-image outcomes are kept batch by batch, so an interrupted ensemble
//! resumes and `--shard I/N` runs merge into exactly the single run's files; `--eps-curve`
//! checks the curve; a single FGSM step beating the iterative attack is reported.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fragility-explorer");

fn run(args: &[&str]) -> Output {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The ensemble on 400 images in 20 batches, small budgets so that a batch takes a moment.
fn ensemble(out: &Path) -> Vec<String> {
    ensemble_seeded(out, 5)
}

fn ensemble_seeded(out: &Path, seed: u64) -> Vec<String> {
    let args = "eval --limit 400 --batch 20 --attack strong --eps 0.25 --clamp --attack-steps 5 --queries 40 \
                --target-classes 2 --out";
    let tail = [s(out).to_string(), "--seed".into(), seed.to_string()];
    args.split_whitespace().map(String::from).chain(tail).collect()
}

fn same_files(a: &Path, b: &Path) {
    for name in ["eval.json", "outcomes.csv", "batches.json"] {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        assert!(x == y, "{name} differs between {} and {}", a.display(), b.display());
    }
}

fn kept_batches(out: &Path) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("batches.json")).unwrap()).unwrap();
    v["batches"].as_array().unwrap().len()
}

#[test]
fn an_interrupted_ensemble_resumes_and_shards_merge_into_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let o = run(&ensemble(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&o.stdout).contains("robust after Square"));
    assert_eq!(kept_batches(&whole), 20);
    let rows = std::fs::read_to_string(whole.join("outcomes.csv")).unwrap();
    assert_eq!(rows.lines().count(), 401, "a header and one row per image");
    assert!(rows.lines().next().unwrap().ends_with(",robust"));

    // Ctrl-C once the first batches are kept: it stops at once, keeping them.
    let stopped = dir.path().join("stopped");
    let mut child =
        Command::new(BIN).args(ensemble(&stopped)).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !stopped.join("batches.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no batch was kept");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill only sends SIGINT to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let stderr = {
        let mut e = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut e).unwrap();
        e
    };
    assert_eq!(child.wait().unwrap().code(), Some(130), "{stderr}");
    assert!(stderr.contains("the same command resumes"), "{stderr}");
    let kept = kept_batches(&stopped);
    assert!((1..20).contains(&kept), "{kept} batches kept");
    assert!(!stopped.join("eval.json").exists(), "no summary of an unfinished evaluation");
    let o = run(&ensemble(&stopped).iter().map(String::as_str).collect::<Vec<_>>());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains(&format!("resuming: {kept} finished batch")), "{said}");
    same_files(&whole, &stopped);

    // Three shards in one folder, merged: the same files again, and `eval --out` on the
    // merged folder recomputes nothing.
    let shards = dir.path().join("shards");
    for i in 0..3 {
        let mut args = ensemble(&shards);
        args.extend(["--shard".into(), format!("{i}/3")]);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let merged = dir.path().join("merged");
    let o = run(&["merge", s(&shards), "--out", s(&merged)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("adversarial accuracy"));
    same_files(&whole, &merged);
    let o = run(&ensemble(&merged).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming: 20 finished batches"));
    same_files(&whole, &merged);

    // A missing shard, and a shard of other options, are refused with what is wrong.
    let two = dir.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    for f in ["shard-0-of-3.json", "shard-1-of-3.json"] {
        std::fs::copy(shards.join(f), two.join(f)).unwrap();
    }
    let o = Command::new(BIN).args(["merge", s(&two), "--out", s(&dir.path().join("m2"))]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("shards 2/3 are missing"), "{o:?}");
    let other = dir.path().join("other");
    let mut args = ensemble_seeded(&other, 6);
    args.extend(["--shard".into(), "2/3".into()]);
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let o = Command::new(BIN).args(["merge", s(&two), s(&other), "--out", s(&dir.path().join("m3"))]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("another model, data or options"), "{o:?}");
}

#[test]
fn the_eps_curve_falls_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "eval",
        "--limit",
        "100",
        "--attack",
        "pgd",
        "--eps-curve",
        "0,0.2,0.5,1.5",
        "--json",
        "--out",
        s(dir.path()),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let acc: Vec<f64> =
        v["points"].as_array().unwrap().iter().map(|p| p["adversarial_accuracy"].as_f64().unwrap()).collect();
    assert_eq!(acc.len(), 4);
    assert!(acc.windows(2).all(|w| w[1] <= w[0]), "{acc:?}");
    assert!(acc[3] < 0.05, "PGD at eps 1.5 leaves {acc:?}");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "{v}");
    assert!(dir.path().join("eps_curve.csv").exists());
    // A curve that stops while many stay robust says so.
    let o = run(&["eval", "--limit", "100", "--attack", "fgsm", "--eps-curve", "0,0.05"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("warning: at the largest eps (0.0500)"), "{text}");
    let o = Command::new(BIN).args(["eval", "--eps-curve", "0.2,0.1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("ascending order: 0.2 comes before 0.1"), "{o:?}");
}

#[test]
fn an_iterative_attack_beaten_by_one_fgsm_step_is_reported() {
    // PGD whose steps are far too small to leave the clean image: one full FGSM step fools
    // many samples it does not.
    let args = ["eval", "--limit", "100", "--attack", "pgd", "--pgd-steps", "3", "--pgd-step", "0.0001", "--json"];
    let v: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    let gain = v["single_step_gain"].as_u64().unwrap();
    assert!(gain > 10, "{v}");
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains(&format!("fooled {gain} samples"))), "{v}");
    // A sound PGD is not.
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["eval", "--limit", "100", "--attack", "pgd", "--json"]).stdout).unwrap();
    assert_eq!(v["single_step_gain"], 0, "{v}");
}
