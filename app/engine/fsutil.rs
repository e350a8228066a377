//! File helpers shared by every writer: nothing the user made is half-written.

use std::io::Write;
use std::path::Path;

use crate::engine::error::{EngineError, Result};

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so a crash or a full disk never leaves a truncated file behind. Temporary files left in the
/// same folder by writers that were killed are removed once the new file is in place (a resumed
/// run need not rewrite the very file a kill interrupted).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(temporary_name(&name, std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        std::fs::remove_file(&tmp).ok();
        return Err(EngineError::io("write", path, e));
    }
    remove_stale_temporaries(dir);
    Ok(())
}

fn temporary_name(name: &str, pid: u32) -> String {
    format!(".{name}.tmp-{pid}")
}

/// The writer's pid of a name made by `temporary_name`.
fn writer_of_temporary(file: &str) -> Option<u32> {
    let (name, pid) = file.strip_prefix('.')?.rsplit_once(".tmp-")?;
    (!name.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// Removes the `.NAME.tmp-PID` files of `dir` whose process is gone (where /proc tells;
/// elsewhere they stay).
fn remove_stale_temporaries(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(writer_of_temporary) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            std::fs::remove_file(entry.path()).ok();
        }
    }
}

/// Refuses work that would need more memory than the machine has available (read from
/// /proc/meminfo where there is one; elsewhere nothing is refused), so that a file whose
/// header announces too much fails at once, with its size, instead of exhausting the memory.
pub fn check_fits_in_memory(bytes: u64, what: &str) -> std::result::Result<(), String> {
    match available_memory() {
        Some(free) if bytes > free => Err(format!(
            "{what} would take {:.1} GB of memory, more than this machine has available ({:.1} GB)",
            bytes as f64 / 1e9,
            free as f64 / 1e9
        )),
        _ => Ok(()),
    }
}

fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_killed_writers_go_and_those_of_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        // No process has a pid above Linux's maximum (2^22); pid 1 is always alive.
        let stale = dir.path().join(temporary_name("sweep.json", 5_000_000));
        let live = dir.path().join(temporary_name("sweep.json", 1));
        let stale_other = dir.path().join(temporary_name("checkpoint-epoch-020.optim.safetensors", 5_000_001));
        let live_other = dir.path().join(temporary_name("train.json", 1));
        let not_ours = dir.path().join(".tmp-5000000");
        for p in [&stale, &live, &stale_other, &live_other, &not_ours] {
            std::fs::write(p, b"{\"partial").unwrap();
        }
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let proc = Path::new("/proc/self").exists();
        assert_eq!(!stale.exists(), proc, "a killed writer's file goes where /proc tells");
        assert_eq!(!stale_other.exists(), proc, "so does one of another output in the folder");
        assert!(live.exists() && live_other.exists(), "live writers' files stay");
        assert!(not_ours.exists(), "a name this writer does not make stays");
    }
}
