#!/usr/bin/env python3
"""Full-width models, each written natively and as its ONNX export, for
`cargo run --release --example bench_engine -- --onnx NATIVE,ONNX`.

    python3 scripts/onnx_bench_models.py OUT_DIR

Writes OUT_DIR/resnet18.safetensors (+ .json card) and OUT_DIR/resnet18.ts.onnx (+ .json):
torchvision's ResNet-18 layout with the CIFAR stem, 10 classes, seeded random weights and batch
norm statistics, 3x32x32 inputs; the TorchScript exporter at opset 13 with batch norm kept apart
(do_constant_folding=False) and a free batch dimension, as the test fixtures are.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import BasicBlock, ResNet, randomize_batchnorm  # noqa: E402


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = ResNet(BasicBlock, [2, 2, 2, 2], width=64, stem="cifar", in_channels=3, num_classes=10)
    randomize_batchnorm(model)
    model.eval()
    card = {"input": [3, 32, 32], "normalize": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "resnet18.safetensors"))
    (out / "resnet18.json").write_text(json.dumps({"architecture": "resnet18", **card}, indent=2))
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        model, (x,), str(out / "resnet18.ts.onnx"), dynamo=False, do_constant_folding=False, opset_version=13,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    (out / "resnet18.ts.json").write_text(json.dumps(card, indent=2))
    print(f"wrote {out}/resnet18.safetensors and {out}/resnet18.ts.onnx")


if __name__ == "__main__":
    main()
