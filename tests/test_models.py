import pytest
import torch
from torch import nn

from thesislab.errors import UserError
from thesislab.train import models

MODELS = tuple(models.REGISTRY)


def test_an_unknown_model_is_one_line_saying_where_names_are():
    with pytest.raises(UserError, match=r"^params.yaml: model: 'resnet5O' is neither one of this project's nets "
                                         r"\(signnet, vgg16, simple_v3, lenet, mlp\) nor a torchvision classification "
                                         r"model \(see docs/models.md"):
        models.build("resnet5O", 10, 32, 0.5)


def test_torchvision_models_by_name_and_the_thesis_vgg16_keeps_its_name():
    ours = models.build("vgg16", 10, 32, 0.5)
    theirs = models.build("torchvision.vgg16", 10, 32, 0.5)
    assert [m.out_channels for m in ours.modules() if isinstance(m, nn.Conv2d)][:2] == [32, 32]
    assert [m.out_channels for m in theirs.modules() if isinstance(m, nn.Conv2d)][:2] == [64, 64]
    small = models.build("mobilenet_v3_small", 7, 32, 0.5)
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 7) and models.head_name(small) == "classifier.3"
    assert models.head_name(models.build("resnet18", 7, 32, 0.5)) == "fc"


def test_a_torchvision_model_too_big_for_image_size_is_one_line():
    with pytest.raises(UserError, match=r"^params.yaml: image_size: vit_b_16 cannot take 32x32 images \(Wrong image "
                                         r"height! Expected 224 but got 32!\); set image_size"):
        models.build("vit_b_16", 10, 32, 0.5)


def test_a_model_that_cannot_run_at_image_size_says_so():
    with pytest.raises(UserError, match=r"^params.yaml: image_size: lenet needs image_size >= 12"):
        models.build("lenet", 10, 8, 0.5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch, classes, size", [(1, 2, 32), (8, 11, 32), (3, 10, 48), (5, 7, 20)])
def test_any_batch_classes_and_size(name, batch, classes, size):
    model = models.build(name, classes, size, 0.5)
    model.train(batch > 1)  # BatchNorm needs more than one value per channel to train
    out = model(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, classes)


def test_vgg16_is_the_thesis_net():
    model = models.build("vgg16", 10, 32, 0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 5 and all(d.p == 0.5 for d in drops)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(512, 10)]
    # Hand count: conv weights (no bias, BN follows) + BN (2 per channel) + Linear
    chans = [3, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    expected = sum(9 * a * b + 2 * b for a, b in zip(chans, chans[1:])) + 512 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == expected


def test_vgg16_flops_are_counted_from_the_model():
    model = models.build("vgg16", 10, 32, 0.5)
    chans = [3, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    sizes = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    conv_flops = sum(2 * 9 * a * b * s * s for a, b, s in zip(chans, chans[1:], sizes))
    assert models.count_flops(model, 32) == conv_flops + 2 * 512 * 10
    # 0.19 GFLOP forward, 0.57 per training image. (The often-quoted 1.88 is the standard VGG16's, whose
    # blocks are twice as wide: 64-64 / 128-128 / 256x3 / 512x3 / 512x3.)
    assert 3 * models.count_flops(model, 32) / 1e9 == pytest.approx(0.5716, rel=1e-3)


def linear_shapes(model):
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def test_tutorial_nets_have_their_published_shapes():
    lenet = models.build("lenet", 10, 32, 0.5)
    assert [m.out_features for m in lenet.modules() if isinstance(m, nn.Linear)] == [120, 84, 10]
    assert lenet.classifier[0].in_features == 16 * 5 * 5
    simple = models.build("simple_v3", 10, 32, 0.5)
    assert linear_shapes(simple) == [(2048, 64), (64, 10)]
    assert [m.p for m in simple.features if isinstance(m, nn.Dropout)] == [0.4, 0.4, 0.4]
    mlp = models.build("mlp", 10, 32, 0.5)
    assert linear_shapes(mlp) == [(3072, 256), (256, 10)]


def test_dropout_only_while_training():
    torch.manual_seed(0)
    model = models.build("vgg16", 10, 32, 0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))
