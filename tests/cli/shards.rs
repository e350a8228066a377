//! Sharding: N processes, each with `--shard I/N`, and `merge` give exactly (byte for byte)
//! what one process writes, for `sweep`, `trajectory` and `study`; the cluster examples run
//! their shards from the scheduler's variables; broken splits and study files are refused
//! with what is wrong.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_fragility-explorer");

fn run(args: &[&str]) -> Output {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Runs a command that must fail (1, or 2 for a flag clap refuses) and returns what it said.
fn refused(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().unwrap();
    let code = o.status.code();
    assert!(matches!(code, Some(1 | 2)), "{args:?} should fail, gave {code:?}: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts the commands at once (separate processes, sharing the machine) and waits for all.
fn run_together(commands: Vec<Command>) {
    let children: Vec<_> = commands.into_iter().map(|mut c| c.spawn().unwrap()).collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "a shard failed: {}", String::from_utf8_lossy(&o.stderr));
    }
}

fn quiet(mut c: Command) -> Command {
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p.strip_prefix(dir).unwrap().to_path_buf()) }
        }
    }
    out.sort();
    out
}

/// The files of an unsharded result are in the merged one with the same bytes (the figures'
/// pictures aside: they are drawn from the same tables, compared here).
fn assert_same_results(whole: &Path, merged: &Path, skip: impl Fn(&str) -> bool) {
    let mut compared = 0;
    for f in files(whole) {
        let name = f.to_string_lossy();
        if name.ends_with(".png") || name.ends_with(".svg") || skip(&name) {
            continue;
        }
        let (a, b) = (std::fs::read(whole.join(&f)).unwrap(), std::fs::read(merged.join(&f)));
        assert_eq!(Some(&a), b.as_ref().ok(), "{name} differs between the unsharded run and the merge");
        compared += 1;
    }
    assert!(compared > 0, "nothing compared in {}", whole.display());
}

/// Three checkpoints of the tiny CNN trained on the tiny data.
fn trained_run(dir: &Path, data: &Path) -> PathBuf {
    let runs = dir.join("runs");
    let card = training_card(dir);
    run(&[
        "train",
        "--model-card",
        s(&card),
        "--data",
        s(data),
        "--epochs",
        "3",
        "--test-limit",
        "20",
        "--out",
        s(&runs),
    ]);
    runs
}

#[test]
fn three_shard_processes_merge_into_the_unsharded_sweep_and_trajectory() {
    let data = tiny_mnist();
    let dir = tempfile::tempdir().unwrap();
    let runs = trained_run(dir.path(), data.path());
    let common = ["--data", s(data.path()), "--limit", "30", "--steps", "5"];

    // trajectory: one process, then three shards in their own folders.
    let whole = dir.path().join("whole");
    run(&[&["trajectory", "--checkpoints", s(&runs)][..], &common, &["--out", s(&whole)]].concat());
    let shard_dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("shard-{i}"))).collect();
    run_together(
        (0..3)
            .map(|i| {
                let mut c = Command::new(BIN);
                c.args(["trajectory", "--checkpoints", s(&runs)]).args(common);
                c.args(["--shard", &format!("{i}/3"), "--out", s(&shard_dirs[i])]);
                quiet(c)
            })
            .collect(),
    );
    let merged = dir.path().join("merged");
    let said =
        run(&[&["merge"][..], &shard_dirs.iter().map(|d| s(d)).collect::<Vec<_>>(), &["--out", s(&merged)]].concat());
    assert!(String::from_utf8_lossy(&said.stdout).contains("trajectory.json"));
    assert_same_results(&whole, &merged, |_| false);
    // The merged folder is an unsharded run's: running it again reuses every part.
    let again = run(&[&["trajectory", "--checkpoints", s(&runs)][..], &common, &["--out", s(&merged)]].concat());
    assert!(String::from_utf8_lossy(&again.stdout).contains("9 of 9 parts reused"));

    // sweep: the three shards write into one shared folder, as on a shared volume.
    let model = runs.join("checkpoint-epoch-002.safetensors");
    let sweep_args = [&["sweep", "--model", s(&model)][..], &common].concat();
    let whole_sweep = dir.path().join("sweep-whole");
    run(&[&sweep_args[..], &["--out", s(&whole_sweep)]].concat());
    let shared = dir.path().join("sweep-shards");
    run_together(
        (0..3)
            .map(|i| {
                let mut c = Command::new(BIN);
                c.args(&sweep_args).args(["--shard", &format!("{i}/3"), "--out", s(&shared)]);
                quiet(c)
            })
            .collect(),
    );
    let merged_sweep = dir.path().join("sweep-merged");
    run(&["merge", s(&shared), "--out", s(&merged_sweep)]);
    assert_same_results(&whole_sweep, &merged_sweep, |_| false);
}

/// A study file naming two runs of the same checkpoints on different numbers of images.
fn study_file(dir: &Path, runs: &Path, data: &Path) -> PathBuf {
    let file = dir.join("study.toml");
    let text = format!(
        "[options]\nsteps = 3\nfilters = [\"h1\", \"h3\"]\n\n\
         [[runs]]\nname = \"first-30\"\ncheckpoints = \"{}\"\ndata = \"{}\"\noptions = {{ limit = 30 }}\n\n\
         [[runs]]\nname = \"first-20\"\ncheckpoints = \"{}\"\ndata = \"{}\"\noptions = {{ limit = 20 }}\n",
        s(runs),
        s(data),
        s(runs),
        s(data)
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A study's files that name where its results are and how long they took (study.json and
/// the figures' sidecars): everything else of a merged study equals the unsharded one.
fn where_and_when(name: &str) -> bool {
    name == "study.json" || (name.starts_with("compare/") && name.ends_with(".json"))
}

/// The `sh -c` script and environment of the only container in a Kubernetes Job manifest.
fn container(job: &Yaml) -> (String, Vec<(String, String)>) {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let command = c["command"].as_vec().expect("the container has a command");
    assert_eq!(command[0].as_str(), Some("sh"));
    assert_eq!(command[1].as_str(), Some("-c"));
    let env = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    (command[2].as_str().unwrap().to_string(), env)
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}", path.display());
    docs.remove(0)
}

/// A folder whose `fragility-explorer` is the binary under test, for scripts that call it by name.
fn path_with_binary(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("fragility-explorer")).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn the_cluster_examples_run_a_study_in_shards_that_merge_into_the_whole() {
    let data = tiny_mnist();
    let dir = tempfile::tempdir().unwrap();
    let runs = trained_run(dir.path(), data.path());
    let study = study_file(dir.path(), &runs, data.path());
    let whole = dir.path().join("whole");
    run(&["study", s(&study), "--out", s(&whole)]);
    // `compare` reads a study as all its runs.
    let compared = dir.path().join("compared");
    run(&["compare", s(&whole), "--out", s(&compared)]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(compared.join("compare.json")).unwrap()).unwrap();
    assert_eq!(index["runs"].as_array().map(Vec::len), Some(2), "{index}");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let path = path_with_binary(dir.path());

    // Slurm: the array task's id is the shard (an array written 1-3 too), then the merge job.
    let slurm = dir.path().join("slurm");
    run_together(
        (1..=3)
            .map(|task| {
                let mut c = Command::new("bash");
                c.arg(examples.join("slurm/shard.sbatch")).env("PATH", &path);
                c.env("SLURM_ARRAY_TASK_ID", task.to_string()).env("SLURM_ARRAY_TASK_MIN", "1");
                c.env("SLURM_ARRAY_TASK_COUNT", "3").env("STUDY", &study).env("RESULTS", &slurm);
                quiet(c)
            })
            .collect(),
    );
    let o = Command::new("bash")
        .arg(examples.join("slurm/merge.sbatch"))
        .env("PATH", &path)
        .env("RESULTS", &slurm)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_results(&whole, &slurm.join("merged"), where_and_when);

    // submit.sh queues the array over 0..N-1 and a merge that waits for all of it.
    let fake = dir.path().join("fake-sbatch");
    std::fs::create_dir_all(&fake).unwrap();
    let log = dir.path().join("sbatch.log");
    let sbatch = format!("#!/bin/sh\necho \"$*\" >> {}\necho 4242\n", log.display());
    std::fs::write(fake.join("sbatch"), sbatch).unwrap();
    std::fs::set_permissions(fake.join("sbatch"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new("bash")
        .arg(examples.join("slurm/submit.sh"))
        .args([s(&study), s(&dir.path().join("queued")), "5"])
        .env("PATH", format!("{}:{path}", fake.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert!(calls[0].contains("--array=0-4") && calls[0].ends_with("shard.sbatch"), "{calls:?}");
    assert!(calls[1].contains("--dependency=afterok:4242") && calls[1].ends_with("merge.sbatch"), "{calls:?}");

    // Kubernetes: an Indexed Job whose completion index is the shard, on a shared volume.
    let job = yaml(&examples.join("k8s/study-job.yaml"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let completions = job["spec"]["completions"].as_i64().unwrap();
    let (script, env) = container(&job);
    let shards: i64 = env.iter().find(|(k, _)| k == "SHARDS").unwrap().1.parse().unwrap();
    assert_eq!(shards, completions, "SHARDS must equal the job's completions");
    let claim = |y: &Yaml| y["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"].clone();
    let volume = yaml(&examples.join("k8s/volume.yaml"));
    assert_eq!(volume["kind"].as_str(), Some("PersistentVolumeClaim"));
    assert_eq!(claim(&job), volume["metadata"]["name"]);
    let merge_job = yaml(&examples.join("k8s/merge-job.yaml"));
    assert_eq!(claim(&merge_job), volume["metadata"]["name"]);

    // Each pod's script, run as the pod would (its env, the volume's paths moved here).
    let k8s = dir.path().join("k8s");
    let pod = |script: &str, env: &[(String, String)], index: Option<i64>| {
        let mut c = Command::new("sh");
        c.args(["-c", script]).env("PATH", &path);
        for (k, v) in env {
            c.env(k, v);
        }
        c.env("STUDY", &study).env("RESULTS", &k8s);
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i.to_string());
        }
        quiet(c)
    };
    run_together((0..completions).map(|i| pod(&script, &env, Some(i))).collect());
    let (merge_script, merge_env) = container(&merge_job);
    let o = pod(&merge_script, &merge_env, None).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_results(&whole, &k8s.join("merged"), where_and_when);
}

#[test]
fn broken_splits_and_study_files_are_refused_with_what_is_wrong() {
    let data = tiny_mnist();
    let dir = tempfile::tempdir().unwrap();
    let runs = trained_run(dir.path(), data.path());
    let model = runs.join("checkpoint-epoch-001.safetensors");
    let sweep = ["sweep", "--model", s(&model), "--data", s(data.path()), "--limit", "10", "--steps", "3"];
    let err = refused(&[&sweep[..], &["--shard", "3/3", "--out", s(dir.path())]].concat());
    assert!(err.contains("counts from 0"), "{err}");
    let shards = dir.path().join("shards");
    for i in [0, 2] {
        run(&[&sweep[..], &["--shard", &format!("{i}/3"), "--out", s(&shards)]].concat());
    }
    let out = dir.path().join("merged");
    let err = refused(&["merge", s(&shards), "--out", s(&out)]);
    assert!(err.contains("shards 1/3 are missing"), "{err}");
    let err = refused(&["merge", s(&shards), s(&shards), "--out", s(&out)]);
    assert!(err.contains("shard 0/3 is given twice"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = refused(&["merge", s(&empty), "--out", s(&out)]);
    assert!(err.contains("holds no finished shard"), "{err}");
    // A shard of another sweep (more steps) does not merge with these.
    let other = dir.path().join("other");
    run(&[&sweep[..7], &["--steps", "5", "--shard", "1/3", "--out", s(&other)]].concat());
    let err = refused(&["merge", s(&shards), s(&other), "--out", s(&out)]);
    assert!(err.contains("different sweep"), "{err}");

    let study = study_file(dir.path(), &runs, data.path());
    let text = std::fs::read_to_string(&study).unwrap();
    for (change, expected) in [
        (text.replace("steps = 3", "stepz = 3"), "run 1: unexpected argument '--stepz'"),
        (text.replace("steps = 3", "data = \"x\""), "run 1: `data` is not an option"),
        (text.replace("name = \"first-20\"", "name = \"first-30\""), "run 2: two runs are named `first-30`"),
        (text.replace("name = \"first-20\"", "name = \"../up\""), "run name `../up`"),
        (text.replace("[[runs]]", "[[run]]"), "unknown field `run`"),
        (text.replace("steps = 3", "steps = 4"), "odd"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, change).unwrap();
        let err = refused(&["study", s(&bad), "--out", s(&dir.path().join("bad-out"))]);
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
}
