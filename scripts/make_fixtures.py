#!/usr/bin/env python3
"""Generate the small reference fixtures under tests/fixtures/ that the Rust tests compare against.

    python3 scripts/make_fixtures.py

Everything is deterministic (torch.manual_seed per model, CPU, float32). See
tests/fixtures/README.md for what each file contains, and section 4 of the method spec (docs/METHOD.md)
for the attack.

  A. tests/fixtures/models/      tiny random-weight models (one per architecture family), their model
                                 cards, and reference inputs / logits / gradients / FGSM / PGD outputs.
  B. tests/fixtures/checkpoints/ the seq_cnn weights saved in the checkpoint formats met in the wild.
"""

import argparse
import copy
import io
import json
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune
import torchvision
from safetensors.torch import load_file, save_file

from fixture_archs import VGG_CFGS, DMWideResNet, MobileNetV2, OpsetProbe, PreActResNet18, Vgg, ZooWideResNet

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "models"
CHECKPOINTS = FIXTURES / "checkpoints"

N_SAMPLES = 5  # 6 would push tests/fixtures over 3 MB (3.35 MB)
EPS = 0.1
PGD_STEPS = 3
PGD_STEP = 0.04
NORM_MEAN = 0.5
NORM_STD = 0.25
TARGET_LOGIT_STD = 4.0  # the head is rescaled so that the eval logits have this std
SATURATED_MARGIN = 24.0  # seq_cnn_saturated: exp(-24) ~ 4e-11, far below float32's 2^-24 ~ 6e-8
MAX_SIZE_BYTES = 12_500_000  # all of tests/fixtures: the robust-model architectures, ONNX exports of whole networks and ONNX operator cases took it past 3 MB


# --------------------------------------------------------------------------------------------------
# Sequential models
# --------------------------------------------------------------------------------------------------


class SeqCnn(nn.Module):
    """features -> flatten -> classifier, as in the classic VGG-style torchvision layout."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),  # features.0
            nn.BatchNorm2d(4),  # features.1
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3),  # features.4
            nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(6 * 2 * 2, 16),  # classifier.1
            nn.ReLU(),
            nn.Linear(16, 10),  # classifier.3
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


SEQ_CNN_LAYERS = [
    {"type": "conv2d", "key": "features.0", "stride": 1, "padding": 1},
    {"type": "batchnorm2d", "key": "features.1"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "key": "features.4"},
    {"type": "relu"},
    {"type": "avgpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.5},
    {"type": "linear", "key": "classifier.1"},
    {"type": "relu"},
    {"type": "linear", "key": "classifier.3"},
]


class SeqMisc(nn.Module):
    """Exercises strided/padded/grouped convs, ceil-mode pooling, tanh/sigmoid, adaptive pooling."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1),  # net.0
            nn.Tanh(),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Conv2d(4, 8, 3, padding=1, groups=2),  # net.3
            nn.Sigmoid(),
            nn.AdaptiveAvgPool2d((2, 2)),
            nn.Flatten(),
            nn.Linear(32, 7),  # net.7
        )

    def forward(self, x):
        return self.net(x)


SEQ_MISC_LAYERS = [
    {"type": "conv2d", "key": "net.0", "stride": 2, "padding": 1},
    {"type": "tanh"},
    {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"type": "conv2d", "key": "net.3", "padding": 1, "groups": 2},
    {"type": "sigmoid"},
    {"type": "adaptive_avgpool2d", "output": [2, 2]},
    {"type": "flatten"},
    {"type": "linear", "key": "net.7"},
]


# --------------------------------------------------------------------------------------------------
# Narrow ResNet with torchvision's module names
# --------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck: the stride sits on the 3x3 conv (conv2)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet with a width parameter (stage widths w, 2w, 4w, 8w) and a choice of
    stem: "tv" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, max-pool replaced by Identity)."""

    def __init__(self, block, layers, width=64, stem="tv", in_channels=3, num_classes=1000):
        super().__init__()
        self.inplanes = width
        if stem == "tv":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        else:
            raise ValueError(stem)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "tv" else nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNET_CONFIGS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], torchvision.models.resnet18),
    "resnet34": (BasicBlock, [3, 4, 6, 3], torchvision.models.resnet34),
    "resnet50": (Bottleneck, [3, 4, 6, 3], torchvision.models.resnet50),
}


# --------------------------------------------------------------------------------------------------
# Narrow SqueezeNet 1.1 with torchvision's module names
# --------------------------------------------------------------------------------------------------


class Fire(nn.Module):
    def __init__(self, inplanes, squeeze, expand1x1, expand3x3):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


class SqueezeNet11(nn.Module):
    """torchvision SqueezeNet 1.1 with every channel count divided by `div`."""

    def __init__(self, div=1, num_classes=1000):
        super().__init__()

        def c(n):
            assert n % div == 0
            return n // div

        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, c(64), 3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(c(64), c(16), c(64), c(64)),
            Fire(c(128), c(16), c(64), c(64)),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(c(128), c(32), c(128), c(128)),
            Fire(c(256), c(32), c(128), c(128)),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(c(256), c(48), c(192), c(192)),
            Fire(c(384), c(48), c(192), c(192)),
            Fire(c(384), c(64), c(256), c(256)),
            Fire(c(512), c(64), c(256), c(256)),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(c(512), num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# --------------------------------------------------------------------------------------------------
# Parity checks against torchvision at full width
# --------------------------------------------------------------------------------------------------


def shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def assert_same_keys_and_shapes(ours, theirs, what, except_keys=()):
    a, b = shapes(ours.state_dict()), shapes(theirs.state_dict())
    assert list(a.keys()) == list(b.keys()), f"{what}: state_dict keys differ from torchvision"
    for k in a:
        if k not in except_keys:
            assert a[k] == b[k], f"{what}: shape of {k} differs: {a[k]} vs {b[k]}"


def assert_same_logits(ours, theirs, what, size):
    torch.manual_seed(1234)
    randomize_batchnorm(ours)
    theirs.load_state_dict(ours.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    diff = (a - b).abs().max().item()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), f"{what}: logits differ from torchvision by {diff}"
    print(f"  parity {what:<28} keys/shapes OK, logits max |diff| = {diff:.3g}")


def check_torchvision_parity():
    print("Parity with torchvision at full width:")
    with torch.no_grad():
        for name, (block, layers, tv_ctor) in RESNET_CONFIGS.items():
            tv = tv_ctor(weights=None)
            ours = ResNet(block, layers, width=64, stem="tv")
            assert_same_keys_and_shapes(ours, tv, f"{name} (tv stem)")
            assert_same_logits(ours, tv, f"{name} (tv stem)", 64)
            cifar = ResNet(block, layers, width=64, stem="cifar")
            assert_same_keys_and_shapes(cifar, tv, f"{name} (cifar stem)", except_keys=("conv1.weight",))
            print(f"  parity {name + ' (cifar stem)':<28} keys/shapes OK (except conv1.weight)")
        tv = torchvision.models.squeezenet1_1(weights=None)
        ours = SqueezeNet11(div=1)
        assert_same_keys_and_shapes(ours, tv, "squeezenet1_1")
        assert_same_logits(ours, tv, "squeezenet1_1", 64)
        for name, bn in [("vgg11", True), ("vgg16", False)]:
            full = name + ("_bn" if bn else "")
            tv = getattr(torchvision.models, full)(weights=None)
            ours = Vgg(name, bn)
            assert_same_keys_and_shapes(ours, tv, full)
            assert_same_logits(ours, tv, full, 32)
        tv = torchvision.models.mobilenet_v2(weights=None)
        ours = MobileNetV2()
        assert_same_keys_and_shapes(ours, tv, "mobilenet_v2")
        assert_same_logits(ours, tv, "mobilenet_v2", 64)


# --------------------------------------------------------------------------------------------------
# Initialisation helpers
# --------------------------------------------------------------------------------------------------


def init_weights(model):
    """Kaiming-normal weights, small non-zero biases (so that bias loading is exercised)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.1)


def calibrate(model, x):
    """LSUV-style: in module order (upstream before downstream for every model here), scale each
    conv/linear layer's weight and bias so that its eval-mode output on `x` has unit std. Keeps the
    activations O(1) through deep random nets (without it, random ResNet-50 activations reach ~600
    and random SqueezeNet logits barely depend on the input)."""
    model.eval()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            captured = {}
            hook = m.register_forward_hook(lambda mod, inp, out: captured.__setitem__("out", out))
            with torch.no_grad():
                model(x)
                if "out" not in captured:  # a module the forward pass never calls (sub_block1)
                    hook.remove()
                    continue
                s = 1.0 / captured["out"].std().item()
                m.weight.mul_(s)
                if m.bias is not None:
                    m.bias.mul_(s)
            hook.remove()


def randomize_batchnorm(model):
    """Non-trivial running statistics and affine parameters, so eval mode != batch-statistics mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.num_batches_tracked.fill_(7)


def has_batchnorm(model):
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def head_of(model):
    """The last parametrised layer, the one rescaled to set the logit magnitude."""
    last = None
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            last = m
    return last


def rescale_head(model, x, target_std):
    """Scale the last layer (weight and bias; every model here is positively homogeneous after it) so
    that the eval logits on the fixture inputs have std `target_std`."""
    model.eval()
    with torch.no_grad():
        s = target_std / model(x).std().item()
        head = head_of(model)
        head.weight.mul_(s)
        if head.bias is not None:
            head.bias.mul_(s)


# --------------------------------------------------------------------------------------------------
# Attack reference computations (METHOD.md section 4)
# --------------------------------------------------------------------------------------------------


def exact_cotangent(z, y):
    """Per sample: r = max_{j != y} z_j, c_j = exp(z_j - r) (j != y), c_y = -sum_{j != y} c_j.
    Computed in float64 from the detached logits, cast to the logits' dtype."""
    z64 = z.detach().double()
    onehot = F.one_hot(y, z.shape[1]).bool()
    r = z64.masked_fill(onehot, float("-inf")).max(dim=1, keepdim=True).values
    c = torch.exp(z64 - r).masked_fill(onehot, 0.0)
    c = c - onehot.double() * c.sum(dim=1, keepdim=True)
    return c.to(z.dtype)


def grad_exact(model, x, y):
    x = x.detach().clone().requires_grad_(True)
    z = model(x)
    (z * exact_cotangent(z, y)).sum().backward()
    return x.grad.detach()


def grad_autograd(model, x, y):
    x = x.detach().clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return x.grad.detach()


def pgd(model, x0, y, eps, step, steps):
    lo, hi = x0 - eps, x0 + eps
    x = x0.clone()
    for _ in range(steps):
        x = x + step * torch.sign(grad_exact(model, x, y))
        x = torch.max(torch.min(x, hi), lo)
    return x


def batchstats_logits(model, x):
    """Logits with BatchNorm using batch statistics (BN in train mode, dropout still eval), on a copy."""
    m = copy.deepcopy(model)
    m.eval()
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.train()
    with torch.no_grad():
        return m(x)


def make_io(model, x, y, num_channels):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    g_exact = grad_exact(model, x, y)
    g_auto = grad_autograd(model, x, y)
    fgsm = x + EPS * torch.sign(g_exact)
    lo = ((0.0 - torch.full((num_channels,), NORM_MEAN)) / NORM_STD).view(1, -1, 1, 1)
    hi = ((1.0 - torch.full((num_channels,), NORM_MEAN)) / NORM_STD).view(1, -1, 1, 1)
    fgsm_clamp = torch.max(torch.min(fgsm, hi), lo)
    fgsm_auto = x + EPS * torch.sign(g_auto)
    x_pgd = pgd(model, x, y, EPS, PGD_STEP, PGD_STEPS)
    with torch.no_grad():
        logits_fgsm = model(fgsm)
    io_tensors = {
        "input": x,
        "label": y,
        "logits": logits,
        "grad_exact": g_exact,
        "grad_autograd": g_auto,
        "fgsm": fgsm,
        "fgsm_clamp": fgsm_clamp,
        "fgsm_autograd": fgsm_auto,
        "pgd": x_pgd,
        "logits_fgsm": logits_fgsm,
    }
    if has_batchnorm(model):
        io_tensors["logits_batchstats"] = batchstats_logits(model, x)
        # Batch statistics over few samples are ill-conditioned: PyTorch's own float32
        # result can be 1e-3 away from the exact one, so tests compare with float64 too.
        io_tensors["logits_batchstats_f64"] = batchstats_logits(copy.deepcopy(model).double(), x.double()).float()
    return io_tensors


# --------------------------------------------------------------------------------------------------
# Writing a model fixture
# --------------------------------------------------------------------------------------------------


def contiguous_state_dict(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_model(name, arch, model, input_chw, num_classes, layers=None, saturate=0, native=True):
    """The caller seeded and built `model`. Initialises it, draws the inputs/labels, calibrates the
    activations, rescales the head, and writes NAME.safetensors, NAME.json, NAME.io.safetensors.

    saturate > 0: the bias of class 0 in the (linear) head is raised so that every sample predicts
    class 0 with a margin of at least SATURATED_MARGIN, and the first `saturate` samples get label 0:
    their true-class softmax rounds to exactly 1 in float32, where the float32 autograd gradient goes
    wrong and the exact cotangent does not. The other samples keep random labels (never 0)."""
    c, h, w = input_chw
    init_weights(model)
    randomize_batchnorm(model)
    pixels = torch.rand(N_SAMPLES, c, h, w)
    x = (pixels - NORM_MEAN) / NORM_STD
    y = torch.randint(0, num_classes, (N_SAMPLES,), dtype=torch.int64)
    calibrate(model, x)
    if isinstance(model, SqueezeNet11):
        # Its logits pass through a ReLU: lift the final conv's bias so most of them are not zero.
        with torch.no_grad():
            model.classifier[1].bias.add_(1.0)
    rescale_head(model, x, TARGET_LOGIT_STD)
    model.eval()
    if saturate:
        head = head_of(model)
        assert isinstance(head, nn.Linear)
        with torch.no_grad():
            z = model(x)
            head.bias[0] += SATURATED_MARGIN + (z[:, 1:].max(1).values - z[:, 0]).max().item()
            y[:saturate] = 0
            y[saturate:] = torch.randint(1, num_classes, (N_SAMPLES - saturate,))
            p_true = torch.softmax(model(x), 1).gather(1, y.view(-1, 1)).squeeze(1)
        assert int((p_true == 1.0).sum()) == saturate, f"{name}: saturation failed: {p_true}"

    if native:
        save_file(contiguous_state_dict(model), str(MODELS / f"{name}.safetensors"), metadata={"format": "pt"})
    card = {
        "architecture": arch,
        "input": [c, h, w],
        "normalize": {"mean": [NORM_MEAN] * c, "std": [NORM_STD] * c},
    }
    if layers is not None:
        card["layers"] = layers
    card.update(CARD_EXTRA.get(name, {}))
    (MODELS / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")

    io_tensors = make_io(model, x, y, c)
    assert io_tensors["logits"].shape == (N_SAMPLES, num_classes)
    save_file(
        {k: v.contiguous() for k, v in io_tensors.items()},
        str(MODELS / f"{name}.io.safetensors"),
        metadata={"format": "pt"},
    )
    manifest = {
        "architecture": arch,
        "eps": EPS,
        "pgd_steps": PGD_STEPS,
        "pgd_step": PGD_STEP,
        "num_classes": num_classes,
    }
    if name in CARD_EXTRA:
        manifest["card_only"] = sorted(CARD_EXTRA[name])
    if not native:
        manifest["native"] = False
    return manifest, model, io_tensors


def build_models():
    """Returns [(name, arch, seed, constructor, input, num_classes, layers, saturate)]."""
    return [
        ("seq_cnn", "sequential", 1, SeqCnn, [1, 12, 12], 10, SEQ_CNN_LAYERS, 0),
        ("seq_cnn_saturated", "sequential", 9, SeqCnn, [1, 12, 12], 10, SEQ_CNN_LAYERS, 3),
        ("seq_misc", "sequential", 2, SeqMisc, [3, 10, 10], 7, SEQ_MISC_LAYERS, 0),
        (
            "resnet18_cifar", "resnet18", 3,
            lambda: ResNet(BasicBlock, [2, 2, 2, 2], width=4, stem="cifar", in_channels=3, num_classes=10),
            [3, 16, 16], 10, None, 0,
        ),
        (
            "resnet18_tv", "resnet18", 4,
            lambda: ResNet(BasicBlock, [2, 2, 2, 2], width=4, stem="tv", in_channels=1, num_classes=10),
            [1, 28, 28], 10, None, 0,
        ),
        (
            "resnet34_tv", "resnet34", 5,
            lambda: ResNet(BasicBlock, [3, 4, 6, 3], width=2, stem="tv", in_channels=3, num_classes=10),
            [3, 32, 32], 10, None, 0,
        ),
        (
            "resnet50_tv", "resnet50", 6,
            lambda: ResNet(Bottleneck, [3, 4, 6, 3], width=2, stem="tv", in_channels=3, num_classes=10),
            [3, 32, 32], 10, None, 0,
        ),
        ("squeezenet1_1", "squeezenet1_1", 7, lambda: SqueezeNet11(div=8, num_classes=10), [3, 32, 32], 10, None, 0),
        (
            "shufflenet_v2", "shufflenet_v2_x0_5", 8,
            lambda: torchvision.models.shufflenetv2.ShuffleNetV2(
                stages_repeats=[4, 8, 4], stages_out_channels=[8, 16, 32, 64, 128], num_classes=10
            ),
            [3, 32, 32], 10, None, 0,
        ),
        (
            "wide_resnet", "wide_resnet", 10,
            lambda: ZooWideResNet(depth=16, widen_factor=1, num_classes=10, sub_block1=True, base=8),
            [3, 16, 16], 10, None, 0,
        ),
        ("dm_wide_resnet", "dm_wide_resnet", 11, lambda: DMWideResNet(10, depth=10, width=1, base=8), [3, 16, 16], 10, None, 0),
        ("preact_resnet18", "preact_resnet18", 12, lambda: PreActResNet18(width=4), [3, 16, 16], 10, None, 0),
        (
            "preact_resnet18_in", "preact_resnet18", 13,
            lambda: PreActResNet18(width=4, stem="imagenet", in_channels=1),
            [1, 32, 32], 10, None, 0,
        ),
        (
            "vgg11_bn", "vgg", 14,
            lambda: Vgg("vgg11", True, div=32, hidden=32, in_channels=1, num_classes=10),
            [1, 32, 32], 10, None, 0,
        ),
        (
            "vgg16", "vgg", 15,
            lambda: Vgg("vgg16", False, div=32, hidden=32, in_channels=1, num_classes=10),
            [1, 32, 32], 10, None, 0,
        ),
        (
            "vgg13_cifar", "vgg", 16,
            lambda: Vgg("vgg13", True, div=32, head="cifar", in_channels=1, num_classes=10),
            [1, 32, 32], 10, None, 0,
        ),
        (
            "mobilenet_v2", "mobilenet_v2", 17,
            lambda: MobileNetV2(width_mult=0.1, last_channel=32, in_channels=1, num_classes=10, round_nearest=4),
            [1, 32, 32], 10, None, 0,
        ),
        (
            "mobilenet_v2_cifar", "mobilenet_v2", 18,
            lambda: MobileNetV2(width_mult=0.1, last_channel=32, stem="cifar", num_classes=10, round_nearest=4),
            [3, 16, 16], 10, None, 0,
        ),
    ]


# Card fields that the weights cannot show: such a model is recognised without its card only
# up to them (its manifest entry says `card_only`).
CARD_EXTRA = {"mobilenet_v2_cifar": {"stem": "cifar"}}


def summarize_io(name, io_tensors):
    z = io_tensors["logits"]
    g = io_tensors["grad_exact"]
    ga = io_tensors["grad_autograd"]
    y = io_tensors["label"]
    n = g.shape[0]
    sign_diff = (torch.sign(g) != torch.sign(ga)).reshape(n, -1).sum(1).tolist()
    zeros = (g == 0).reshape(n, -1).sum(1).tolist()
    gmax = g.abs().reshape(n, -1).max(1, keepdim=True).values
    rel = g.abs().reshape(n, -1) / gmax
    nonzero = g.reshape(n, -1) != 0
    tiny4 = ((rel < 1e-4) & nonzero).sum().item()
    tiny6 = ((rel < 1e-6) & nonzero).sum().item()
    p_true = torch.softmax(z, 1).gather(1, y.view(-1, 1)).squeeze(1)
    saturated = int((p_true == 1.0).sum().item())
    correct = int((z.argmax(1) == y).sum().item())
    correct_fgsm = int((io_tensors["logits_fgsm"].argmax(1) == y).sum().item())
    line = (
        f"  {name:<17} |z| max {z.abs().max().item():5.2f} mean {z.abs().mean().item():5.2f}"
        f" zero {int((z == 0).sum())}"
        f" | clean {correct}/{n} fgsm {correct_fgsm}/{n} saturated {saturated}"
        f" | sign(g_exact)!=sign(g_auto) per sample {sign_diff} | exact zeros {zeros} | nonzero |g|/max < 1e-4: {tiny4}, < 1e-6: {tiny6}"
    )
    if "logits_batchstats" in io_tensors:
        d = (io_tensors["logits_batchstats"] - z).abs().max().item()
        line += f" | max|bs-eval| {d:.2f}"
    print(line)


def write_models():
    MODELS.mkdir(parents=True, exist_ok=True)
    manifest = {}
    seq_cnn = None
    print("Models:")
    for name, arch, seed, ctor, input_chw, num_classes, layers, saturate in build_models():
        torch.manual_seed(seed)
        model = ctor()
        manifest[name], model, io_tensors = write_model(
            name, arch, model, input_chw, num_classes, layers, saturate
        )
        summarize_io(name, io_tensors)
        if name == "seq_cnn":
            seq_cnn = model
        if name in ONNX_EXPORTS:
            manifest[name]["onnx"] = write_onnx(name, model, io_tensors["input"], json.loads((MODELS / f"{name}.json").read_text()))
    # Models the explorer reads only as ONNX: their operators in whole networks.
    for name, seed, ctor, input_chw, ts_opsets in ONNX_ONLY:
        torch.manual_seed(seed)
        manifest[name], model, io_tensors = write_model(name, "onnx", ctor(), input_chw, 10, native=False)
        summarize_io(name, io_tensors)
        card = json.loads((MODELS / f"{name}.json").read_text())
        (MODELS / f"{name}.json").unlink()
        manifest[name]["onnx"] = write_onnx(name, model, io_tensors["input"], card, ts_opsets)
        # Every convolution and linear layer of the PyTorch model, which each export must
        # offer as a filterable layer under the same name.
        manifest[name]["layers"] = [
            n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.MultiheadAttention))
        ]
    (MODELS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return seq_cnn


# Whole networks of the families the explorer reads only as ONNX, at tiny sizes: torchvision's
# ViT (patch embedding, attention, LayerNorm, GELU), MobileNetV3 (HardSwish, HardSigmoid,
# squeeze-and-excitation), EfficientNet (MBConv with SiLU, squeeze-and-excitation and
# stochastic depth) and ConvNeXt (7x7 depthwise convolutions, LayerNorm on channels-last
# tensors, linear layers on rank-4 tensors, layer scale), and the opset probe. Each with the
# TorchScript exporter's opsets to write: attention exports from opset 14 on; ConvNeXt at 17
# has LayerNormalization nodes; the probe at every opset of 13 to 20.
def _efficientnet_tiny():
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    setting = [MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(4, 3, 2, 8, 16, 2), MBConvConfig(4, 5, 2, 16, 24, 1)]
    return EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=10, last_channel=48)


def _convnext_tiny():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    blocks = [CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)]
    return ConvNeXt(blocks, stochastic_depth_prob=0.1, layer_scale=0.5, num_classes=10)


ONNX_ONLY = [
    (
        "vit_tiny", 19,
        lambda: torchvision.models.VisionTransformer(
            image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
        ),
        [3, 16, 16], [14],
    ),
    ("mobilenet_v3_small", 20, lambda: torchvision.models.mobilenet_v3_small(width_mult=0.1, num_classes=10), [3, 32, 32], [14]),
    ("efficientnet_tiny", 21, _efficientnet_tiny, [3, 16, 16], [13]),
    ("convnext_tiny", 22, _convnext_tiny, [3, 16, 16], [17]),
    ("opset_probe", 23, lambda: OpsetProbe(10), [3, 8, 8], list(range(13, 21))),
]


# The fixtures also written as ONNX, by both of PyTorch's exporters: together they run every
# kind of node the architectures export to (convolutions grouped and depthwise, batch norm kept
# and folded, ReLU6 as Clip, SiLU, asymmetric Pad, channel shuffles, pools, Flatten and Reshape).
ONNX_EXPORTS = ["seq_cnn", "resnet18_cifar", "shufflenet_v2", "dm_wide_resnet", "vgg13_cifar", "mobilenet_v2"]


def write_onnx(name, model, x, card, ts_opsets=(13,)):
    """NAME.ts.onnx: the TorchScript exporter, opset 13 (or the one of `ts_opsets`; with several,
    NAME.tsN.onnx for each opset N), batch norm kept apart (do_constant_folding=False), so its
    parameters are the model's own. NAME.dynamo.onnx: the dynamo exporter, opset 18, optimised
    (batch norm folded into the convolutions). All with a free batch dimension; each with a card
    beside it that leaves `architecture` out."""
    import onnx

    model.eval()
    files = []
    exports = [("ts" if len(ts_opsets) == 1 else f"ts{op}", op) for op in ts_opsets] + [("dynamo", 18)]
    for kind, opset in exports:
        path = MODELS / f"{name}.{kind}.onnx"
        if kind.startswith("ts"):
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, do_constant_folding=False, opset_version=opset,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            program = torch.onnx.export(
                model, (x,), dynamo=True, opset_version=opset, dynamic_shapes=({0: batch},), verbose=False
            )
            program.save(str(path))
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        found = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        assert found == opset, f"{path.name}: opset {found}, not {opset}"
        ops = sorted({n.op_type for n in proto.graph.node})
        print(f"  onnx {path.name:<28} opset {opset}  {len(proto.graph.node)} nodes: {' '.join(ops)}")
        beside = {k: v for k, v in card.items() if k in ("input", "normalize", "stem")}
        beside.pop("stem", None)
        (MODELS / f"{name}.{kind}.json").write_text(json.dumps(beside, indent=2) + "\n")
        files.append(path.name)
    return files


# --------------------------------------------------------------------------------------------------
# B. Checkpoint formats (all seq_cnn)
# --------------------------------------------------------------------------------------------------


def pickle_globals(path):
    """The GLOBAL / STACK_GLOBAL names referenced by the pickle inside a zip checkpoint."""
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        data = zf.read(pkl)
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
    return names


def write_checkpoints(seq_cnn):
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(100)
    sd = seq_cnn.state_dict()
    sd = {k: v.detach().clone() for k, v in sd.items()}

    torch.save(sd, CHECKPOINTS / "plain.pth")

    # Adam state after one step, on a copy so that sd stays the seq_cnn weights.
    m = copy.deepcopy(seq_cnn)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 12, 12)
    F.cross_entropy(m(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    torch.save(
        {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "loss": 0.5},
        CHECKPOINTS / "nested.pth",
    )
    torch.save({"state_dict": sd}, CHECKPOINTS / "nested_state_dict.pth")
    torch.save({"model": sd}, CHECKPOINTS / "nested_model.pth")
    torch.save({f"module.{k}": v for k, v in sd.items()}, CHECKPOINTS / "dataparallel.pth")
    # A zoo-style file: the state_dict of a model kept as a wrapper's `model` attribute.
    dm = load_file(str(MODELS / "dm_wide_resnet.safetensors"))
    torch.save({"state_dict": {f"model.{k}": v for k, v in dm.items()}, "epoch": 5}, CHECKPOINTS / "wrapped.pt")

    # Pruned: weight_orig + weight_mask; the expected effective weights after prune.remove.
    m = copy.deepcopy(seq_cnn)
    prune.l1_unstructured(m.features[0], name="weight", amount=0.5)
    prune.l1_unstructured(m.classifier[3], name="weight", amount=0.5)
    pruned_sd = m.state_dict()
    assert "features.0.weight_orig" in pruned_sd and "classifier.3.weight_mask" in pruned_sd
    torch.save(pruned_sd, CHECKPOINTS / "pruned.pth")
    prune.remove(m.features[0], "weight")
    prune.remove(m.classifier[3], "weight")
    expected = contiguous_state_dict(m)
    assert set(expected) == set(sd)
    assert (expected["features.0.weight"] == 0).sum().item() == expected["features.0.weight"].numel() // 2
    save_file(expected, str(CHECKPOINTS / "pruned_expected.safetensors"), metadata={"format": "pt"})

    torch.save(sd, CHECKPOINTS / "legacy.pth", _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(CHECKPOINTS / "legacy.pth")

    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, CHECKPOINTS / "evil.pth")
    globs = pickle_globals(CHECKPOINTS / "evil.pth")
    assert "argparse.Namespace" in globs, globs

    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, CHECKPOINTS / "fp16.pth")

    nc = dict(sd)
    w = sd["classifier.3.weight"]
    nc["classifier.3.weight"] = w.t().contiguous().t()
    assert not nc["classifier.3.weight"].is_contiguous() and torch.equal(nc["classifier.3.weight"], w)
    torch.save(nc, CHECKPOINTS / "noncontig.pth")

    # Read everything back and compare with the seq_cnn state dict.
    def load(f):
        return torch.load(CHECKPOINTS / f"{f}.pth", weights_only=True)

    def same(a, b):
        return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)

    assert same(load("plain"), sd)
    assert same(load("legacy"), sd)
    assert same(load("noncontig"), sd)
    assert same({k[len("module."):]: v for k, v in load("dataparallel").items()}, sd)
    assert same(load("fp16"), {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()})
    loaded = load("noncontig")["classifier.3.weight"]
    assert not loaded.is_contiguous() and loaded.stride() == (1, 10), loaded.stride()
    for f, key in [("nested", "model_state_dict"), ("nested_state_dict", "state_dict"), ("nested_model", "model")]:
        assert same(load(f)[key], sd)
    assert "state" in load("nested")["optimizer_state_dict"]
    pruned_loaded = load("pruned")
    for k in ("features.0.weight", "classifier.3.weight"):
        eff = pruned_loaded[k + "_orig"] * pruned_loaded[k + "_mask"]
        assert torch.equal(eff, expected[k])
    try:
        torch.load(CHECKPOINTS / "evil.pth", weights_only=True)
        raise AssertionError("evil.pth loaded with weights_only=True")
    except Exception as e:  # noqa: BLE001  (UnpicklingError is expected)
        if isinstance(e, AssertionError):
            raise
    with zipfile.ZipFile(CHECKPOINTS / "plain.pth") as zf:
        assert all(n.startswith("plain/") for n in zf.namelist()), zf.namelist()
    print(f"Checkpoints: evil.pth pickle globals = {sorted(globs)}")


# --------------------------------------------------------------------------------------------------


def report_sizes():
    total = 0
    print("Files:")
    for p in sorted(FIXTURES.rglob("*")):
        if p.is_file():
            size = p.stat().st_size
            total += size
            print(f"  {size:>9}  {p.relative_to(ROOT)}")
    print(f"Total: {total} bytes ({total / 1024:.1f} KiB)")
    assert total < MAX_SIZE_BYTES, "fixtures too large"


def main():
    torch.set_default_dtype(torch.float32)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {np.__version__}")
    check_torchvision_parity()
    seq_cnn = write_models()
    write_checkpoints(seq_cnn)
    report_sizes()


if __name__ == "__main__":
    main()
