"""The model registry: the thesis's VGG16, a small net for the speed signs, the tutorials' nets, and every
torchvision classification model by its torchvision name.

This project's names come first: `vgg16` is the thesis's net; torchvision's VGG16 is `torchvision.vgg16`
(any torchvision model may be written with that prefix). Every builder takes (num_classes, image_size,
dropout); this project's nets work for any of them and any batch size (sizes after the convolutions are
worked out at build time, never hard-coded in forward()). Each lists its layers in the order forward() runs them
(layers()), which is what lets several runs of it train as one batched computation (array.py). A torchvision model is built untrained with
num_classes outputs, its own dropout, and checked once at image_size: one that cannot take images that
small is refused in one line before training starts.
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

    def layers(self):
        return [*self.features, self.pool, nn.Flatten(), self.classifier]


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

    def layers(self):
        return [*self.features, *self.head]


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

    def layers(self):
        return [*self.features, nn.Flatten(), *self.classifier]


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

    def layers(self):
        return [*self.features, nn.Flatten(), *self.classifier]


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

    def layers(self):
        return [*self.net]


# The registry: `model` in params.yaml is one of these names, or a torchvision model's. Adding a net is one
# entry here (and its test).
REGISTRY = {"signnet": SignNet, "vgg16": VGG16, "simple_v3": SimpleV3, "lenet": LeNet, "mlp": MLP}
TORCHVISION = "torchvision."  # the prefix that names torchvision's model when this project has one of that name
# torchvision builders that return extra outputs while training unless told not to.
TORCHVISION_OPTIONS = {"googlenet": {"aux_logits": False, "init_weights": True},
                       "inception_v3": {"aux_logits": False, "init_weights": True}}


def torchvision_name(name):
    """The torchvision model `name` means, or None if it is one of this project's nets."""
    if name in REGISTRY:
        return None
    import torchvision  # only runs that use a torchvision model pay for importing it

    plain = name.removeprefix(TORCHVISION)
    if plain in torchvision.models.list_models(module=torchvision.models):
        return plain
    raise UserError(f"params.yaml: model: {name!r} is neither one of this project's nets ({', '.join(REGISTRY)}) nor a "
                    "torchvision classification model (see docs/models.md, for the command that lists "
                    "them)")


def check_name(name):
    torchvision_name(name)


def build(name, num_classes, image_size, dropout) -> nn.Module:
    tv = torchvision_name(name)
    if tv is None:
        try:
            return REGISTRY[name](num_classes, image_size, dropout)
        except ValueError as err:  # a net that cannot run at this image_size says why
            raise UserError(f"params.yaml: image_size: {err}") from None
    import torchvision

    model = torchvision.models.get_model(tv, weights=None, num_classes=num_classes, **TORCHVISION_OPTIONS.get(tv, {}))
    _check_input_size(model, name, image_size)
    return model


def _check_input_size(model, name, image_size):
    """One forward pass of two blank images: a model whose stem or patching cannot take this size says so now."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, image_size, image_size))
    except (RuntimeError, ValueError, AssertionError) as err:
        first = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:160]
        raise UserError(f"params.yaml: image_size: {name} cannot take {image_size}x{image_size} images ({first}); "
                        "set image_size to a size it accepts (torchvision's ImageNet models expect 224)") from None
    finally:
        model.train()


def head_name(model) -> str:
    """The classifier head: the last Linear layer, which a new class count replaces."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else ""


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
