//! The README's command blocks, read as a user reads them: commands with their optional
//! `[...]` groups, `a|b` alternatives and placeholders, filled in with fixtures.

use std::path::{Path, PathBuf};

/// One command of a block, continuation lines joined, comments dropped.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub text: String,
    pub words: Vec<String>,
}

/// The first ```sh block after the line `heading`.
pub fn code_block_after(readme: &str, heading: &str) -> String {
    let rest = readme.split_once(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("README has no `{heading}`")).1;
    let block = rest.split_once("```sh\n").unwrap_or_else(|| panic!("no ```sh block after `{heading}`")).1;
    block.split_once("\n```").unwrap_or_else(|| panic!("the block after `{heading}` does not end")).0.to_string()
}

/// The commands of a block: a line indented by whitespace continues the one before it.
pub fn commands(block: &str) -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    for line in block.lines() {
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        if code.trim().is_empty() {
            continue;
        }
        let words = code.split_whitespace().map(str::to_string);
        match out.last_mut() {
            Some(last) if line.starts_with(char::is_whitespace) => {
                last.text = format!("{} {}", last.text, code.trim());
                last.words.extend(words);
            }
            _ => out.push(Cmd { text: code.trim().to_string(), words: words.collect() }),
        }
    }
    out
}

/// What the placeholders stand for.
pub struct Places {
    /// `model.pth`, `F`: a checkpoint (its card beside it).
    pub model: PathBuf,
    /// `model.json`: the checkpoint's model card.
    pub card: PathBuf,
    /// `C`: a card to train from (with the sizes a checkpoint would give).
    pub training_card: PathBuf,
    /// `path/to/mnist`, `D`: a dataset folder with both splits.
    pub data: PathBuf,
    /// `DIR`, `runs/train/`: the folder every command writes into and reads back from.
    pub dir: PathBuf,
    /// A study file of one run: the checkpoints `train --out DIR` wrote, on `data`.
    pub study: PathBuf,
}

/// A command's words in the forms to run: first its required words alone, then with each
/// optional group added on its own (taking the first of its `|` alternatives). Groups that
/// name no option (`[sweep options]`) stand for options documented elsewhere and are skipped.
pub fn variants(cmd: &Cmd) -> Vec<Vec<String>> {
    let (mut required, mut groups) = (Vec::new(), Vec::new());
    let mut words = cmd.words.iter();
    while let Some(w) = words.next() {
        if let Some(first) = w.strip_prefix('[') {
            let mut group = vec![first.to_string()];
            let mut last = w.ends_with(']');
            while !last {
                let next = words.next().unwrap_or_else(|| panic!("an unclosed [ in `{}`", cmd.text));
                last = next.ends_with(']');
                group.push(next.clone());
            }
            if let Some(end) = group.last_mut() {
                *end = end.trim_end_matches(']').to_string();
            }
            let first_alternative: Vec<String> = group.split(|w| w == "|").next().unwrap_or_default().to_vec();
            if first_alternative.first().is_some_and(|w| w.starts_with("--")) {
                groups.push(first_alternative);
            }
        } else {
            required.push(w.clone());
        }
    }
    let mut out = vec![required.clone()];
    for g in groups {
        out.push(required.iter().chain(&g).cloned().collect());
    }
    out
}

/// Replaces placeholders with real values; an unknown upper-case placeholder fails, so a
/// README that gains one gains it here too.
pub fn fill(words: &[String], places: &Places) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let flag = if i > 0 { words[i - 1].as_str() } else { "" };
        // `a|b` offers values: the first is taken, except where it names hardware or a
        // record the other commands do not make.
        let w = match (flag, w.split('|').next().unwrap_or(w)) {
            ("--filter", _) => "h1",
            (_, first) => first,
        };
        let value = match (flag, w) {
            (_, "model.pth" | "F") => path(&places.model),
            (_, "model.json") => path(&places.card),
            (_, "C") => path(&places.training_card),
            (_, "path/to/mnist" | "D") => path(&places.data),
            (_, "DIR" | "runs/train/") => path(&places.dir),
            (_, "model.safetensors") => path(&places.dir.join("converted/model.safetensors")),
            (_, "DIR/sweep.json") => path(&places.dir.join("sweep.json")),
            (_, "RESULT...") => path(&places.dir.join("trajectory.json")),
            (_, "study.toml") => path(&places.study),
            (_, "SHARD_OUT" | "SHARD_OUT...") => path(&places.dir.join("shards")),
            (_, "MERGED") => path(&places.dir.join("merged")),
            ("--shard", "I/N") => "0/1".into(),
            ("--epochs" | "--every", _) => "1".into(),
            ("--train-limit", "N") => "60".into(),
            (_, "N") => "20".into(),
            ("--pgd-step", "S") => "0.05".into(),
            ("--pgd-steps" | "--attack-steps", "K") => "2".into(),
            ("--restarts", "R") => "1".into(),
            ("--queries", "Q") => "20".into(),
            ("--target-classes", "T") => "3".into(),
            (_, "S") => "1".into(),
            (_, "E") => "0.1".into(),
            (_, "E,...") => "0,0.1".into(),
            (_, "B") => "16".into(),
            (_, "A") => "0".into(),
            (_, "KIND") => "curves".into(),
            (_, "L" | "NAME" | "L,...") => "features.0".into(),
            (_, other) => {
                let placeholder = !other.is_empty() && other.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                assert!(!placeholder, "the README has a placeholder this test does not fill: {other}");
                other.to_string()
            }
        };
        out.push(value);
    }
    out
}
