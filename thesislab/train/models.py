"""The model registry: the thesis's VGG16, a small net for the speed signs, and the tutorials' nets.

Every builder takes (num_classes, image_size, dropout) and works for any of them and any batch size:
sizes after the convolutions are worked out at build time, never hard-coded in forward().
"""

import torch
from torch import nn

from thesislab.errors import UserError


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _pool_if_room(size):
    """2x2 max-pool while the feature map is at least 2 pixels wide (small images run out of room)."""
    return (nn.MaxPool2d(2), size // 2) if size >= 2 else (nn.Identity(), size)


def _flat_features(features, channels, image_size):
    with torch.no_grad():
        return features(torch.zeros(1, channels, image_size, image_size)).flatten(1).shape[1]


class VGG16(nn.Module):
    """The thesis's net: 13 conv3x3 + BN + ReLU in blocks 32-32 / 64-64 / 128x3 / 256x3 / 512x3, a 2x2
    max-pool after each block, dropout after each pool while training, then one Linear(512, classes)."""

    BLOCKS = ((32, 32), (64, 64), (128, 128, 128), (256, 256, 256), (512, 512, 512))

    def __init__(self, num_classes, image_size, dropout):
        super().__init__()
        layers, cin, size = [], 3, image_size
        for block in self.BLOCKS:
            for cout in block:
                layers += conv_bn_relu(cin, cout)
                cin = cout
            pool, size = _pool_if_room(size)
            layers += [pool, nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        # At 32x32 the map is already 1x1 and this pooling is the identity: exactly the thesis's net.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


class SignNet(nn.Module):
    """A small, fast CNN for the 32x32 speed signs: three conv3x3 + BN + ReLU + max-pool blocks (16, 32,
    64 channels), then dropout and one linear layer on the flattened 4x4 map, which keeps where each
    stroke of a digit is (a global average would throw that away)."""

    def __init__(self, num_classes, image_size, dropout):
        super().__init__()
        layers, cin, size = [], 3, image_size
        for cout in (16, 32, 64):
            layers += conv_bn_relu(cin, cout)
            pool, size = _pool_if_room(size)
            layers.append(pool)
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = _flat_features(self.features, 3, image_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class SimpleV3(nn.Module):
    """The tutorials' "Simple_v3": three blocks of two conv3x3 (32/64/128) with BN and ReLU, a max-pool and
    dropout 0.4 each, then fully connected 2048 (at 32x32) -> 64 -> classes."""

    def __init__(self, num_classes, image_size, dropout):
        super().__init__()
        layers, cin, size = [], 3, image_size
        for cout in (32, 64, 128):
            layers += conv_bn_relu(cin, cout) + conv_bn_relu(cout, cout)
            pool, size = _pool_if_room(size)
            layers += [pool, nn.Dropout(0.4)]
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = _flat_features(self.features, 3, image_size)
        self.classifier = nn.Sequential(nn.Linear(flat, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class LeNet(nn.Module):
    """The PyTorch tutorial's LeNet-style CNN: conv 6 and 16 filters of 5x5, then fully connected 120-84."""

    def __init__(self, num_classes, image_size, dropout):
        super().__init__()
        if image_size < 12:
            raise ValueError("lenet needs image_size >= 12 (two 5x5 convolutions and two pools)")
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        flat = _flat_features(self.features, 3, image_size)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), nn.ReLU(inplace=True), nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    """One hidden layer of 256 units on the flattened pixels."""

    def __init__(self, num_classes, image_size, dropout):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * image_size * image_size, 256), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.net(x)


# The registry: `model` in params.yaml is one of these names. Adding a net is one entry here (and its test).
REGISTRY = {"signnet": SignNet, "vgg16": VGG16, "simple_v3": SimpleV3, "lenet": LeNet, "mlp": MLP}


def check_name(name):
    if name not in REGISTRY:
        raise UserError(f"params.yaml: model: must be one of: {', '.join(REGISTRY)} (got {name!r})")


def build(name, num_classes, image_size, dropout) -> nn.Module:
    check_name(name)
    try:
        return REGISTRY[name](num_classes, image_size, dropout)
    except ValueError as err:  # a net that cannot run at this image_size says why
        raise UserError(f"params.yaml: image_size: {err}") from None


def has_batchnorm(model) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def count_flops(model, image_size, device="cpu") -> int:
    """Forward-pass FLOPs of one image (2 per multiply-add) counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return counter.get_total_flops()
