//! The official ONNX operator test cases for the supported operators
//! (`tests/fixtures/onnx_node`, made by `scripts/onnx_node_cases.py`): each case's result must
//! be the one `tests/fixtures/onnx_node/STATUS.md` records, so a case that passes keeps passing
//! and the file says truthfully which do not. `UPDATE_ONNX_STATUS=1` rewrites the file.

use crate::common;

use common::*;
use fragility_explorer::engine::onnx::conformance::run_case;

const HEADER: &str = "# ONNX operator test cases\n\n\
The official cases (`onnx.backend.test.case.node`, onnx 1.23.2) for the operators the explorer runs, \
as `scripts/onnx_node_cases.py` writes them; `tests/engine/onnx_conformance.rs` checks that each \
gives the result recorded here. `opset.txt` in a case marks one made at a later opset and rewritten \
to opset 20.\n\n";

#[test]
fn every_case_gives_its_recorded_result() {
    let root = fixtures().join("onnx_node");
    let mut dirs: Vec<_> =
        std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 300, "{} cases", dirs.len());
    let mut lines = Vec::new();
    let mut passed = 0;
    let mut panics = Vec::new();
    for d in &dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let result = std::panic::catch_unwind(|| run_case(d));
        let status = match result {
            Ok(Ok(())) => {
                passed += 1;
                "pass".to_string()
            }
            Ok(Err(e)) => {
                format!("fails: {}", e.replace('|', "/").replace('\n', " ").chars().take(160).collect::<String>())
            }
            Err(_) => {
                panics.push(name.clone());
                "panics".to_string()
            }
        };
        lines.push(format!("| `{name}` | {status} |"));
    }
    let text =
        format!("{HEADER}{passed} of {} pass.\n\n| case | result |\n|---|---|\n{}\n", dirs.len(), lines.join("\n"));
    let file = root.join("STATUS.md");
    if std::env::var_os("UPDATE_ONNX_STATUS").is_some() {
        std::fs::write(&file, &text).unwrap();
    }
    assert!(panics.is_empty(), "cases that panic: {panics:?}");
    let recorded = std::fs::read_to_string(&file).unwrap_or_default();
    if recorded != text {
        let old: std::collections::HashSet<&str> = recorded.lines().collect();
        let changed: Vec<&str> = text.lines().filter(|l| !old.contains(l)).take(20).collect();
        panic!("results differ from STATUS.md (UPDATE_ONNX_STATUS=1 rewrites it):\n{}", changed.join("\n"));
    }
}
