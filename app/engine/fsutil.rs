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
