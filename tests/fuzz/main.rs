//! Fuzzing every file loader on stable Rust: seeded mutations of valid files (truncations,
//! bit flips, lying lengths, duplicated and deleted chunks, hostile JSON values, deep
//! nesting) and the regression corpus of known hostile inputs, each opened through the
//! loader's public entry point. No input may panic, abort or hold more than a bounded amount
//! of memory; every error must name the file it concerns.
//!
//! `FUZZ_SECONDS` (default 60) bounds the mutation run, shared among the loaders; `FUZZ_SEED`
//! (default 0) chooses the inputs. Run alone, with its report:
//!
//!     FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture
//!
//! A failure prints the loader, seed and iteration that reproduce it, and the input stays in
//! `target/tmp/fuzz/<loader>/` (there too after an abort).

mod mutate;
mod regressions;
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mutate::Mutator;
use targets::{Seed, Target};

/// Peak resident memory the whole run may reach: the inputs are kilobytes and the bombs
/// announce kilobytes, so anything near this means a loader trusted a length.
const PEAK_LIMIT: u64 = 768 << 20;

/// How far one small input may raise the process's peak memory.
const INPUT_GROWTH_MIB: u64 = 64;

/// The two tests take turns, so that each one's memory measurements are its own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Takes this test's turn; and keeps candle's errors from capturing backtraces when the shell
/// sets RUST_BACKTRACE: resolving one loads the binary's debug lines (about 300 MB), which
/// is not what a user's run costs and would hide what the loaders themselves hold.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: set while holding the lock both tests take first; no other thread of this
    // binary reads the environment meanwhile.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    guard
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A clean folder for one loader's inputs; kept after the run, so the last input survives an abort.
fn workdir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz").join(target);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the seed's files with `input` in place of the mutated one; returns its path.
fn write_input(dir: &Path, seed: &Seed, input: &[u8]) -> PathBuf {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.unwrap();
    }
    let mut mutated = PathBuf::new();
    for (i, (name, bytes)) in seed.files.iter().enumerate() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, if i == seed.mutated { input } else { bytes }).unwrap();
        if i == seed.mutated {
            mutated = path;
        }
    }
    mutated
}

/// Opens one input; Err says what went wrong (a panic, or an error that names no file).
fn check(target: &Target, dir: &Path, file: &Path) -> Result<Result<(), String>, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.open)(dir, file))).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        format!("panicked: {}", msg.unwrap_or_default())
    })?;
    if let Err(e) = &outcome {
        let names = [file.file_name(), file.parent().and_then(Path::file_name), dir.file_name()];
        let named = names.iter().flatten().any(|n| e.contains(n.to_string_lossy().as_ref()));
        if !named && target.name != "settings" {
            return Err(format!("an error that names no file: {e}"));
        }
    }
    Ok(outcome)
}

#[test]
fn the_regression_corpus_gives_its_errors() {
    let _turn = turn();
    let targets = targets::all();
    let mut failures = Vec::new();
    for case in regressions::all() {
        let target = targets.iter().find(|t| t.name == case.target).expect("a known target");
        let dir = workdir(&format!("regression-{}", case.target));
        let file = write_input(&dir, &case.seed, &case.seed.files[case.seed.mutated].1);
        let before = peak_rss();
        let started = Instant::now();
        let outcome = check(target, &dir, &file);
        let (ms, grew) =
            (started.elapsed().as_millis(), peak_rss().zip(before).map(|(a, b)| a.saturating_sub(b) >> 20));
        let grew_text = grew.map_or("unmeasured".to_string(), |mib| format!("{mib} MiB"));
        eprintln!("{:<60} {ms:>6} ms, peak grew {grew_text}", case.name);
        match (outcome, case.expect) {
            (Err(e), _) => failures.push(format!("{}: {e}", case.name)),
            (Ok(Ok(())), Ok(())) => {}
            (Ok(Err(e)), Err(want)) if e.contains(want) => {}
            (Ok(got), want) => failures.push(format!("{}: expected {want:?}, got {got:?}", case.name)),
        }
        if let Some(mib) = grew
            && mib > INPUT_GROWTH_MIB
        {
            failures.push(format!("{}: peak memory grew by {mib} MiB", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mutated_files_never_crash_a_loader() {
    let _turn = turn();
    let budget = Duration::from_secs(env_u64("FUZZ_SECONDS", 60));
    let seed = env_u64("FUZZ_SEED", 0);
    let targets = targets::all();
    let share = budget / targets.len() as u32;
    let mut failures = Vec::new();
    let mut total = 0u64;
    for target in &targets {
        let dir = workdir(target.name);
        let started = Instant::now();
        let (mut runs, mut errors) = (0u64, 0u64);
        while started.elapsed() < share {
            let mut m = Mutator::new(seed, target.name, runs);
            let s = &target.seeds[m.below(target.seeds.len())];
            let input = (target.mutate)(&mut m, &s.files[s.mutated].1);
            let file = write_input(&dir, s, &input);
            let before = peak_rss();
            let at = format!("{} (FUZZ_SEED={seed}, iteration {runs}, {} bytes)", target.name, input.len());
            match check(target, &dir, &file) {
                Ok(Ok(())) => {}
                Ok(Err(_)) => errors += 1,
                Err(e) => {
                    let kept = dir.with_extension(format!("crash-{runs}"));
                    std::fs::copy(&file, &kept).ok();
                    failures.push(format!("{at}: {e} (input kept as {})", kept.display()));
                }
            }
            if let Some(grew) = peak_rss().zip(before).map(|(a, b)| a.saturating_sub(b) >> 20)
                && grew > INPUT_GROWTH_MIB
            {
                std::fs::copy(&file, dir.with_extension(format!("grew-{runs}"))).ok();
                failures.push(format!("{at}: raised the peak memory by {grew} MiB"));
            }
            runs += 1;
        }
        total += runs;
        eprintln!(
            "{:<14} {runs:>7} inputs, {errors:>7} refused with an error, {:>7} opened; peak RSS so far {} MiB",
            target.name,
            runs - errors,
            peak_rss().unwrap_or(0) >> 20
        );
    }
    let peak = peak_rss();
    eprintln!("{total} inputs in {:.0?}, none crashed; peak RSS {} MiB", budget, peak.unwrap_or(0) >> 20);
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
    if let Some(p) = peak {
        assert!(p < PEAK_LIMIT, "peak RSS {} MiB: some input held memory it should not have", p >> 20);
    }
}
