"""The robustness-research architectures of scripts/make_fixtures.py, with their reference names.

- ZooWideResNet: the robust-model zoo's WideResNet (RobustBench `wide_resnet.py`, from
  xternalz/WideResNet-pytorch): `block1.layer.0.bn1`, `convShortcut`, `bn1`, `fc`; optionally the
  `sub_block1` that some zoo models build but never call.
- DMWideResNet: DeepMind's WideResNet (RobustBench `dm_wide_resnet.py`): SiLU, CIFAR-10 statistics
  applied inside the model, bottom/right padding before stride-2 convolutions.
- PreActResNet18: Rice et al.'s PreActResNet-18 (`layer1.0.bn1`, `shortcut.0`, `bn`, `linear`), with a
  width and a CIFAR (3x3/1) or ImageNet (7x7/2 and a 3x3/2 max-pool) stem.
- Vgg: torchvision's VGG (configurations A, B, D, E; with or without batch norm; the 7x7 pool and
  three linear layers) with channels divided by `div` and a `hidden` width, or the common CIFAR head
  (one linear layer on the 1x1 features, kuangliu/pytorch-cifar).
- MobileNetV2: torchvision's MobileNetV2, built from torchvision's own blocks, with a last width of
  choice (torchvision fixes 1280) and a CIFAR stem (first convolution and the 24-channel group at
  stride 1).

`base` (16 in the references) narrows the WideResNets for the fixtures; the names stay the same.
The reference definitions pool with `avg_pool2d(out, 8)` (WideResNets) or `avg_pool2d(out, 4)`
(PreActResNet), which is global pooling at 32x32 inputs; these pool globally so that the fixtures can
use 16x16 inputs.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.mobilenetv2 import InvertedResidual, _make_divisible
from torchvision.ops.misc import Conv2dNormActivation

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


def global_pool(x):
    return F.avg_pool2d(x, x.shape[-1]).flatten(1)


class ZooWideBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, act):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = act()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = act()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
            out = x
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class ZooNetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride, act):
        super().__init__()
        self.layer = nn.Sequential(
            *[ZooWideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, act) for i in range(n)]
        )

    def forward(self, x):
        return self.layer(x)


class ZooWideResNet(nn.Module):
    def __init__(self, depth=28, widen_factor=10, num_classes=10, sub_block1=False, in_channels=3, act=nn.ReLU, base=16):
        super().__init__()
        ch = [base, base * widen_factor, 2 * base * widen_factor, 4 * base * widen_factor]
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = ZooNetworkBlock(n, ch[0], ch[1], 1, act)
        if sub_block1:
            self.sub_block1 = ZooNetworkBlock(n, ch[0], ch[1], 1, act)
        self.block2 = ZooNetworkBlock(n, ch[1], ch[2], 2, act)
        self.block3 = ZooNetworkBlock(n, ch[2], ch[3], 2, act)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = act()
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(global_pool(self.relu(self.bn1(out))))


class DMBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, act):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=0.01)
        self.relu_0 = act()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes, momentum=0.01)
        self.relu_1 = act()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.has_shortcut = in_planes != out_planes
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) if self.has_shortcut else None
        self._stride = stride

    def forward(self, x):
        if self.has_shortcut:
            x = self.relu_0(self.batchnorm_0(x))
            v = x
        else:
            v = self.relu_0(self.batchnorm_0(x))
        v = F.pad(v, (1, 1, 1, 1)) if self._stride == 1 else F.pad(v, (0, 1, 0, 1))
        out = self.conv_1(self.relu_1(self.batchnorm_1(self.conv_0(v))))
        return torch.add(self.shortcut(x) if self.has_shortcut else x, out)


class DMBlockGroup(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride, act):
        super().__init__()
        self.block = nn.Sequential(
            *[DMBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, act) for i in range(n)]
        )

    def forward(self, x):
        return self.block(x)


class DMWideResNet(nn.Module):
    def __init__(self, num_classes=10, depth=28, width=10, act=nn.SiLU, mean=CIFAR10_MEAN, std=CIFAR10_STD, base=16):
        super().__init__()
        self.mean = torch.tensor(mean).view(3, 1, 1)  # plain attributes: not in the state_dict
        self.std = torch.tensor(std).view(3, 1, 1)
        ch = [base, base * width, 2 * base * width, 4 * base * width]
        n = (depth - 4) // 6
        self.init_conv = nn.Conv2d(3, ch[0], 3, stride=1, padding=1, bias=False)
        self.layer = nn.Sequential(
            DMBlockGroup(n, ch[0], ch[1], 1, act), DMBlockGroup(n, ch[1], ch[2], 2, act), DMBlockGroup(n, ch[2], ch[3], 2, act)
        )
        self.batchnorm = nn.BatchNorm2d(ch[3], momentum=0.01)
        self.relu = act()
        self.logits = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.layer(self.init_conv((x - self.mean) / self.std))
        return self.logits(global_pool(self.relu(self.batchnorm(out))))


class PreActBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


class PreActResNet18(nn.Module):
    def __init__(self, width=64, stem="cifar", in_channels=3, num_classes=10):
        super().__init__()
        self.in_planes = width
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, 2, 1)
        self.layer2 = self._make_layer(width * 2, 2, 2)
        self.layer3 = self._make_layer(width * 4, 2, 2)
        self.layer4 = self._make_layer(width * 8, 2, 2)
        self.bn = nn.BatchNorm2d(width * 8)
        self.linear = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.maxpool(self.conv1(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(global_pool(F.relu(self.bn(out))))


VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class Vgg(nn.Module):
    def __init__(self, cfg, batch_norm, div=1, hidden=4096, head="tv", in_channels=3, num_classes=1000):
        super().__init__()
        layers, c = [], in_channels
        for v in VGG_CFGS[cfg]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            conv = nn.Conv2d(c, v // div, 3, padding=1)
            c = v // div
            layers += [conv, nn.BatchNorm2d(c), nn.ReLU(True)] if batch_norm else [conv, nn.ReLU(True)]
        self.features = nn.Sequential(*layers)
        if head == "tv":
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(c * 49, hidden), nn.ReLU(True), nn.Dropout(),
                nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.avgpool = nn.AvgPool2d(kernel_size=1, stride=1)
            self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class MobileNetV2(nn.Module):
    def __init__(self, width_mult=1.0, last_channel=1280, stem="tv", in_channels=3, num_classes=1000, round_nearest=8):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        if stem == "cifar":
            setting[1][3] = 1
        c = _make_divisible(32 * width_mult, round_nearest)
        bn = nn.BatchNorm2d
        features = [Conv2dNormActivation(in_channels, c, stride=2 if stem == "tv" else 1, norm_layer=bn, activation_layer=nn.ReLU6)]
        for t, ch, n, s in setting:
            out = _make_divisible(ch * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, expand_ratio=t, norm_layer=bn))
                c = out
        features.append(Conv2dNormActivation(c, last_channel, kernel_size=1, norm_layer=bn, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class OpsetProbe(nn.Module):
    """A small classifier of the operators whose ONNX form changes between opsets 13 and 20:
    reflect Pad (its `axes` input, 18), circular padding (slices and concatenations, or a
    `wrap` Pad from the dynamo exporter), `padding="same"` with an even kernel (auto_pad
    SAME_UPPER from the TorchScript exporter), Clip (ReLU6), HardSwish, LayerNormalization (17; a
    decomposition before), Split (`num_outputs`, 18), GELU (a Gelu node from 20; Erf before),
    ReduceMean (`axes` as an input, 18) and Squeeze/Unsqueeze. Exported at every opset from
    13 to 20 by the TorchScript exporter, it shows that each opset loads and computes alike."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect", bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="circular")
        self.norm = nn.LayerNorm(8)
        self.conv3 = nn.Conv2d(8, 8, 2, padding="same")
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv1(x)))
        x = F.hardswish(self.conv2(x))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a * torch.sigmoid(b), b], dim=1)
        x = F.gelu(self.conv3(x))
        x = x.mean(dim=(2, 3), keepdim=True).squeeze(-1).unsqueeze(-1).flatten(1)
        return self.fc(x)
