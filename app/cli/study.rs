//! `study`: the runs a study file names, each characterised through training (as
//! `trajectory`), then compared (as `compare`), resumably; with `--shard I/N`, one share of
//! the whole study's units, for `merge` to combine.
//!
//! A study file (TOML or JSON) lists `runs`, each a `checkpoints` folder and a `data` set
//! (paths relative to the study file) with an optional `name` and `options`, and `options`
//! for every run. Options are `trajectory`'s flags without their dashes (`steps = 9`,
//! `limit = 500`, `filters = ["h1", "h3"]`, `transfer = true`), so they mean, and default
//! to, exactly what the flags do.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::common::prepare_out;
use super::compare::{self, CompareArgs};
use super::progress;
use super::shards::{Manifest, SHARD_HELP, StudyShard};
use super::trajectory::{TrajectoryCmd, characterise};
use crate::engine::analysis::shard::{Shard, Units};
use crate::engine::analysis::study::{self, STUDY_FILE, StudyIndex};
use crate::engine::analysis::trajectory::RESULT_FILE;
use crate::export::tables::write_json;

#[derive(Args, Debug)]
#[command(after_long_help = "The study file (TOML or JSON):\n\n\
    [options]              # every run: `trajectory` flags without dashes\n\
    steps = 9\n\
    limit = 500\n\n\
    [[runs]]\n\
    name = \"mnist-cnn\"      # optional: the checkpoint folder's name\n\
    checkpoints = \"mnist/cnn/checkpoints\"   # relative to the study file\n\
    data = \"data/mnist\"\n\
    options = { limit = 200 }                # this run only\n\n\
OUT gets runs/NAME/ (as `trajectory --out`), compare/ (as `compare --out`) and study.json.")]
pub struct StudyCmd {
    /// Study file: runs (checkpoint folder and dataset each) and options
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "I/N", help = SHARD_HELP)]
    pub shard: Option<Shard>,
    /// Folder for every run's results, the comparison figures and study.json
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    #[serde(default)]
    options: Map<String, Value>,
    runs: Vec<FileRun>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// A run as the study file gives it.
struct FileRun {
    name: Option<String>,
    checkpoints: PathBuf,
    data: PathBuf,
    #[serde(default)]
    options: Map<String, Value>,
}

/// Larger than any study file a person writes; a larger file is not one.
const MAX_STUDY_BYTES: u64 = 1 << 20;

/// Flags that the study sets itself, per run.
const RESERVED: [&str; 5] = ["checkpoints", "data", "name", "out", "shard"];

/// Where a run's results go inside a study's folder.
pub fn run_dir(out: &Path, name: &str) -> PathBuf {
    out.join(RUNS_DIR).join(name)
}

const RUNS_DIR: &str = "runs";
const COMPARE_DIR: &str = "compare";

#[derive(Parser, Debug)]
#[command(name = "trajectory")]
struct AsTrajectory {
    #[command(flatten)]
    cmd: TrajectoryCmd,
}

#[derive(Parser, Debug)]
#[command(name = "compare")]
struct AsCompare {
    #[command(flatten)]
    cmd: CompareArgs,
}

/// A study run's options as `trajectory` flags.
fn flags(options: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let mut args = Vec::new();
    for (key, value) in options {
        let flag = key.replace('_', "-");
        if RESERVED.contains(&flag.as_str()) {
            return Err(format!(
                "`{key}` is not an option: the study sets it (give `name`, `checkpoints` and `data` per run)"
            ));
        }
        let word = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!("option `{key}`: {other} is not a word or a number")),
        };
        match value {
            Value::Bool(true) => args.push(format!("--{flag}")),
            Value::Bool(false) => {}
            Value::Array(items) => {
                let words: Vec<String> = items.iter().map(word).collect::<std::result::Result<_, _>>()?;
                args.extend([format!("--{flag}"), words.join(",")]);
            }
            v => args.extend([format!("--{flag}"), word(v)?]),
        }
    }
    Ok(args)
}

/// A run's name: given, or its checkpoint folder's; a relative path of plain parts.
fn run_name(run: &FileRun) -> std::result::Result<String, String> {
    let name = match &run.name {
        Some(n) => n.clone(),
        None => run.checkpoints.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !name.split('/').all(plain) {
        return Err(format!(
            "run name `{name}`: use letters, digits, `-`, `_` and `.` (and `/` between parts) for its folder"
        ));
    }
    Ok(name)
}

/// The study file's runs as `trajectory` commands writing into `out`.
fn plan(file: &Path, out: &Path) -> Result<Vec<(String, TrajectoryCmd)>> {
    let meta = std::fs::metadata(file).with_context(|| format!("cannot read the study file {}", file.display()))?;
    if meta.len() > MAX_STUDY_BYTES {
        bail!("{} has {} bytes: a study file has at most {MAX_STUDY_BYTES}", file.display(), meta.len());
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read the study file {}", file.display()))?;
    let study: StudyFile = match file.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
        Some("json") => serde_json::from_str(&text).with_context(|| format!("{} is not a study", file.display()))?,
        _ => bail!("{}: a study file is .toml or .json", file.display()),
    };
    if study.runs.is_empty() {
        bail!("{} names no runs ([[runs]] with checkpoints and data)", file.display());
    }
    let base = file.parent().unwrap_or(Path::new(""));
    let mut planned: Vec<(String, TrajectoryCmd)> = Vec::new();
    for (i, run) in study.runs.iter().enumerate() {
        let at = |e: String| anyhow::anyhow!("{}, run {}: {e}", file.display(), i + 1);
        let name = run_name(run).map_err(at)?;
        if planned.iter().any(|(n, _)| *n == name) {
            return Err(at(format!("two runs are named `{name}`: give each a `name`")));
        }
        let mut options = study.options.clone();
        options.extend(run.options.clone());
        let mut args: Vec<String> = vec!["trajectory".into()];
        for (flag, path) in [("--checkpoints", &run.checkpoints), ("--data", &run.data)] {
            args.extend([flag.into(), base.join(path).to_string_lossy().into_owned()]);
        }
        args.extend(["--name".into(), name.clone()]);
        args.extend(flags(&options).map_err(at)?);
        args.extend(["--out".into(), run_dir(out, &name).to_string_lossy().into_owned()]);
        let cmd = AsTrajectory::try_parse_from(&args).map_err(|e| {
            let text = e.render().to_string();
            at(text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string())
        })?;
        planned.push((name, cmd.cmd));
    }
    Ok(planned)
}

pub fn run(a: &StudyCmd) -> Result<()> {
    let planned = plan(&a.file, &a.out)?;
    prepare_out(&a.out)?;
    // Runs number their units one after another, so the shards share the whole study.
    let units = a.shard.map(Units::new);
    let names: Vec<String> = planned.iter().map(|(n, _)| n.clone()).collect();
    if let Some(shard) = a.shard {
        let manifest = a.out.join(shard.file_name());
        if manifest.exists() {
            std::fs::remove_file(&manifest).with_context(|| format!("replacing {}", manifest.display()))?;
        }
    }
    let start = Instant::now();
    let mut seconds = Vec::new();
    for (i, (name, cmd)) in planned.iter().enumerate() {
        eprintln!("\nrun {}/{}: {name}", i + 1, planned.len());
        let t = Instant::now();
        let cancelled = characterise(cmd, units.as_ref())?;
        seconds.push(t.elapsed().as_secs_f64());
        if cancelled {
            return progress::finished(true, "the runs' finished parts are kept; run the study again to go on");
        }
    }
    if let Some(units) = units {
        let shard = units.shard();
        let manifest = a.out.join(shard.file_name());
        let m = Manifest::Study(Box::new(StudyShard {
            shard,
            file: a.file.clone(),
            runs: names,
            units: units.total(),
            owned: units.owned(),
        }));
        write_json(&manifest, &m)?;
        println!(
            "shard {shard}: ran {} of the study's {} units in {:.1} s; wrote {}",
            units.owned(),
            units.total(),
            start.elapsed().as_secs_f64(),
            manifest.display()
        );
        return Ok(());
    }
    let folders: Vec<PathBuf> = names.iter().map(|n| run_dir(&a.out, n)).collect();
    finish(&a.file, &names, &folders, Some((seconds, start.elapsed().as_secs_f64())), &a.out)
}

/// The comparison of the study's runs (their results in `folders`) and `study.json`.
pub fn finish(
    file: &Path,
    names: &[String],
    folders: &[PathBuf],
    seconds: Option<(Vec<f64>, f64)>,
    out: &Path,
) -> Result<()> {
    let compare_dir = out.join(COMPARE_DIR);
    let mut args: Vec<String> = vec!["compare".into()];
    args.extend(folders.iter().map(|f| f.to_string_lossy().into_owned()));
    args.extend(["--out".into(), compare_dir.to_string_lossy().into_owned()]);
    let cmd = AsCompare::try_parse_from(&args).context("the comparison's arguments")?;
    compare::run(&cmd.cmd)?;
    let index = StudyIndex {
        file: file.to_path_buf(),
        runs: names
            .iter()
            .enumerate()
            .map(|(i, name)| study::StudyRun {
                name: name.clone(),
                results: Path::new(RUNS_DIR).join(name).join(RESULT_FILE),
                seconds: seconds.as_ref().map(|(s, _)| s[i]),
            })
            .collect(),
        compare: PathBuf::from(COMPARE_DIR),
        seconds: seconds.as_ref().map(|(_, total)| *total),
    };
    write_json(&out.join(STUDY_FILE), &index)?;
    println!("wrote {}", out.join(STUDY_FILE).display());
    Ok(())
}
