#!/usr/bin/env python3
"""The official ONNX operator test cases (onnx.backend.test.case.node) for the operators the
explorer runs, written as tests/fixtures/onnx_node/CASE/{model.onnx, input_I.pb, output_I.pb}.

    pip install onnx==1.23.2
    python3 scripts/onnx_node_cases.py

Only cases whose nodes are all supported operators and whose files come to at most 64 KiB are
written. A case made at an opset above 20 (most operators gained types in opsets 21 to 24) is
rewritten to opset 20 when every operator it uses exists there, and says so in `opset.txt`. The Rust test
(tests/engine/onnx_conformance.rs) runs each case and compares its recorded status in
tests/fixtures/onnx_node/STATUS.md, which `UPDATE_ONNX_STATUS=1 cargo test --release --test
engine onnx_conformance` rewrites.
"""

import re
import shutil
from pathlib import Path

import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "onnx_node"
LOWER = ROOT / "app" / "engine" / "onnx" / "lower.rs"
MAX_BYTES = 64 * 1024


def supported():
    text = LOWER.read_text()
    block = text[text.index("pub const SUPPORTED") :]
    block = block[: block.index("];")]
    return set(re.findall(r'"([A-Za-z]+)"', block))


def opset(model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return None


def main():
    ops = supported()
    for p in OUT.glob("test_*"):
        shutil.rmtree(p)
    written = skipped = 0
    for case in node_cases.collect_testcases(None):
        model = case.model
        kinds = {n.op_type for n in model.graph.node}
        version = opset(model) or 0
        if not kinds or not kinds <= ops or version < 13:
            skipped += 1
            continue
        note = None
        if version > 20:
            try:
                for k in kinds:
                    onnx.defs.get_schema(k, 20)
            except Exception:
                skipped += 1
                continue
            for o in model.opset_import:
                if o.domain in ("", "ai.onnx"):
                    o.version = 20
            note = f"made at opset {version}, rewritten to 20\n"
        inputs, outputs = case.data_sets[0]
        files = {"model.onnx": model.SerializeToString()}
        try:
            for j, x in enumerate(inputs):
                files[f"input_{j}.pb"] = numpy_helper.from_array(x, model.graph.input[j].name).SerializeToString()
            for j, y in enumerate(outputs):
                files[f"output_{j}.pb"] = numpy_helper.from_array(y, model.graph.output[j].name).SerializeToString()
        except Exception:  # sequences, optionals, strings: not tensors the explorer reads
            skipped += 1
            continue
        if sum(len(b) for b in files.values()) > MAX_BYTES:
            skipped += 1
            continue
        d = OUT / case.name
        d.mkdir(parents=True)
        if note:
            (d / "opset.txt").write_text(note)
        for name, b in files.items():
            (d / name).write_bytes(b)
        written += 1
    print(f"onnx {onnx.__version__}: {written} cases written to {OUT.relative_to(ROOT)}, {skipped} skipped")


if __name__ == "__main__":
    main()
