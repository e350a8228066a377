//! File helpers shared by every writer: nothing the user made is half-written.

use std::io::Write;
use std::path::Path;

use crate::engine::error::{EngineError, Result};

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so a crash or a full disk never leaves a truncated file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
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
    Ok(())
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
