"""Tests of the NNW-TEC §6.1 reference models and of nnw.layers."""

from __future__ import annotations

import importlib
import importlib.abc
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnw.layers import check_width, num_weights, resolve_layers, scale_channels, weight_layers
from nnw.models import MODELS, build_model, count_parameters
from nnw.models.pix2pix import PatchGANDiscriminator, Pix2pixGenerator
from nnw.models.rdn import RDN
from nnw.models.resnet8 import Conv2dSame, ResNet8
from nnw.models.vgg16 import VGG16


def _bn_buffers(model: nn.Module) -> int:
    return sum(m.running_mean.numel() + m.running_var.numel()
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))


# ---------------------------------------------------------------- parameter counts (full size)

def test_resnet8_count_matches_keras_summary() -> None:
    m = ResNet8()
    # Keras summary of MLPerf Tiny resnet_v1_eembc: 78,186 trainable, 78,666 total
    # (total adds BN moving mean/variance, buffers in PyTorch).
    assert count_parameters(m) == 78_186
    assert count_parameters(m) + _bn_buffers(m) == 78_666


def test_vgg16_count() -> None:
    assert count_parameters(VGG16()) == 14_728_266


def _rdn_count(D: int, C: int, G: int, G0: int, r: int, n_colors: int = 3) -> int:
    """Closed-form parameter count of RDN (Zhang et al. 2018), independent of the module code."""
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    sfe = conv(n_colors, G0, 3) + conv(G0, G0, 3)
    rdb = sum(conv(G0 + c * G, G, 3) for c in range(C)) + conv(G0 + C * G, G0, 1)
    gff = conv(D * G0, G0, 1) + conv(G0, G0, 3)
    if r in (2, 3):
        up = conv(G0, G * r * r, 3) + conv(G, n_colors, 3)
    else:
        up = conv(G0, G * 4, 3) + conv(G, G * 4, 3) + conv(G, n_colors, 3)
    return sfe + D * rdb + gff + up


def test_rdn_count() -> None:
    m = RDN(scale=2)
    assert count_parameters(m) == 22_123_395 == _rdn_count(16, 8, 64, 64, 2)
    small = RDN(scale=4, num_blocks=3, num_layers=2, growth=8, num_features=12)
    assert count_parameters(small) == _rdn_count(3, 2, 8, 12, 4)


def test_pix2pix_counts() -> None:
    g = Pix2pixGenerator()
    assert count_parameters(g) == 54_413_955  # reference prints 54.414 M
    assert sum(isinstance(x, nn.Dropout) for x in g.modules()) == 3  # num_downs - 5
    d = PatchGANDiscriminator()
    assert count_parameters(d) == 2_768_705  # reference prints 2.769 M


@pytest.mark.parametrize(
    ("backbone", "expected", "tv_builder"),
    [
        ("mobilenet_v3_large", 11_024_963, "deeplabv3_mobilenet_v3_large"),
        ("resnet50", 39_638_355, "deeplabv3_resnet50"),
    ],
)
def test_deeplabv3_full_size_is_torchvision(backbone: str, expected: int, tv_builder: str) -> None:
    import torchvision.models.segmentation as seg

    m = build_model("DeepLabV3", backbone=backbone, num_classes=19)
    ref = getattr(seg, tv_builder)(weights=None, weights_backbone=None, num_classes=19, aux_loss=False)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert count_parameters(m) == count_parameters(ref) == expected


# ---------------------------------------------------------------- forward shapes

@pytest.mark.parametrize("cls", [ResNet8, VGG16])
def test_classifier_forward(cls: type[nn.Module]) -> None:
    m = cls().eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_rdn_forward_x2() -> None:
    m = RDN(scale=2, width=0.25).eval()  # full D=16, C=8 topology, narrow (fast on CPU)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 24, 24)).shape == (1, 3, 48, 48)


@pytest.mark.parametrize("scale", [3, 4])
def test_rdn_other_scales_small(scale: int) -> None:
    m = RDN(scale=scale, num_blocks=2, num_layers=2, width=0.25).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 10, 12)).shape == (1, 3, 10 * scale, 12 * scale)


def test_pix2pix_generator_256_and_64() -> None:
    g = Pix2pixGenerator(ngf=8, num_downs=8).eval()  # unet_256 topology, narrow
    with torch.no_grad():
        y = g(torch.randn(1, 3, 256, 256))
    assert y.shape == (1, 3, 256, 256)
    assert y.abs().max() <= 1.0  # tanh output
    small = Pix2pixGenerator(num_downs=6, width=0.25).eval()
    with torch.no_grad():
        assert small(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_patchgan_70x70_output_grid() -> None:
    d = PatchGANDiscriminator().eval()
    with torch.no_grad():
        assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "resnet50"])
def test_deeplabv3_forward_returns_logits(backbone: str) -> None:
    m = build_model("DeepLabV3", backbone=backbone, num_classes=19, width=0.25).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 64, 64))
    assert isinstance(y, torch.Tensor)
    assert y.shape == (2, 19, 64, 64)


# ---------------------------------------------------------------- reduced widths

SMALL = {
    "ResNet8": (dict(width=0.5), (2, 3, 32, 32)),
    "VGG16": (dict(width=0.125), (2, 3, 32, 32)),
    "RDN": (dict(num_blocks=2, num_layers=2, width=0.25), (2, 3, 8, 8)),
    "Pix2pix": (dict(num_downs=5, width=0.125), (2, 3, 32, 32)),
    "PatchGAN": (dict(width=0.125), (2, 6, 32, 32)),
    "DeepLabV3": (dict(width=0.25), (2, 3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reduced_width_trains(name: str) -> None:
    kwargs, shape = SMALL[name]
    m = build_model(name, seed=0, **kwargs).train()
    out = m(torch.randn(*shape))
    out.float().pow(2).mean().backward()
    layers = weight_layers(m)
    assert layers
    assert all(p.grad is not None for p in layers.values()), "every weight layer receives a gradient"


@pytest.mark.parametrize("name", ["ResNet8", "VGG16", "Pix2pix", "PatchGAN"])
def test_width_scales_parameters(name: str) -> None:
    assert count_parameters(build_model(name, width=0.25)) < count_parameters(build_model(name, width=0.5))


def test_scale_channels_and_width_validation() -> None:
    assert scale_channels(64, 0.25) == 16
    assert scale_channels(16, 0.01) == 1
    assert check_width(2) == 2.0
    for bad in (0, -1.0, float("nan"), float("inf"), "wide"):
        with pytest.raises(ValueError, match="width"):
            ResNet8(width=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- architecture details

def test_conv2d_same_is_keras_padding() -> None:
    torch.manual_seed(0)
    conv = Conv2dSame(4, 5, 3, stride=2)
    x = torch.randn(1, 4, 32, 32)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)  # TF: pad 0 before, 1 after
    assert torch.allclose(conv(x), expected, atol=1e-6)
    stride1 = Conv2dSame(4, 5, 3)
    assert torch.allclose(stride1(x), F.conv2d(x, stride1.weight, stride1.bias, padding=1), atol=1e-6)


def test_pix2pix_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="divisible by 64"):
        Pix2pixGenerator(num_downs=6, width=0.125)(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="num_downs >= 5"):
        Pix2pixGenerator(num_downs=4)


def test_rdn_rejects_bad_scale() -> None:
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        RDN(scale=5)


def test_deeplab_rejects_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        build_model("DeepLabV3", backbone="vgg")


# ---------------------------------------------------------------- registry

def test_registry_names_and_unknown() -> None:
    assert set(MODELS) == {"ResNet8", "VGG16", "RDN", "Pix2pix", "PatchGAN", "DeepLabV3"}
    with pytest.raises(ValueError, match=r"unknown model 'ResNet9'.*ResNet8.*VGG16"):
        build_model("ResNet9")


def test_build_model_seed_is_deterministic_and_isolated() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = build_model("ResNet8", seed=7, width=0.5)
    b = build_model("ResNet8", seed=7, width=0.5)
    c = build_model("ResNet8", seed=8, width=0.5)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG untouched"
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_count_parameters_trainable_only() -> None:
    m = ResNet8()
    m.fc.weight.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 78_186 - 640
    assert count_parameters(m) == 78_186


class _BlockTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] == "torchvision":
            raise ImportError(f"torchvision imported while importing nnw.models ({name})")
        return None


def test_import_is_lazy_about_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    import nnw

    saved = {k: v for k, v in sys.modules.items()
             if k.split(".")[0] == "torchvision" or k == "nnw.models" or k.startswith("nnw.models.")}
    monkeypatch.setattr(nnw, "models", sys.modules["nnw.models"])  # restored afterwards
    blocker = _BlockTorchvision()
    for k in saved:
        del sys.modules[k]
    sys.meta_path.insert(0, blocker)
    try:
        fresh = importlib.import_module("nnw.models")
        assert "torchvision" not in sys.modules
        assert set(fresh.MODELS) == set(MODELS)
    finally:
        sys.meta_path.remove(blocker)
        for k in [k for k in sys.modules if k == "nnw.models" or k.startswith("nnw.models.")]:
            del sys.modules[k]
        sys.modules.update(saved)


# ---------------------------------------------------------------- nnw.layers

def test_weight_layers_resnet8() -> None:
    layers = weight_layers(ResNet8())
    assert list(layers) == [
        "conv1.weight",
        "layer1.conv1.weight", "layer1.conv2.weight",
        "layer2.conv1.weight", "layer2.conv2.weight", "layer2.shortcut.weight",
        "layer3.conv1.weight", "layer3.conv2.weight", "layer3.shortcut.weight",
        "fc.weight",
    ]
    assert all(isinstance(p, nn.Parameter) for p in layers.values())
    # all parameters = weight layers + conv/linear biases + BN affine
    assert num_weights(layers) == 78_186 - (16 * 3 + 32 * 3 + 64 * 3 + 10) - 2 * (16 * 3 + 32 * 2 + 64 * 2)


def test_weight_layers_types_order_and_sharing() -> None:
    shared = nn.Linear(4, 4, bias=False)
    m = nn.Sequential(
        nn.Conv1d(2, 3, 3),
        nn.BatchNorm1d(3),
        nn.Conv2d(3, 3, 1),
        nn.ConvTranspose2d(3, 2, 2),
        nn.LayerNorm(4),
        nn.Embedding(5, 4),
        shared,
        shared,
    )
    assert list(weight_layers(m)) == ["0.weight", "2.weight", "3.weight", "6.weight"]
    vgg = weight_layers(VGG16(width=0.125))
    assert len(vgg) == 14 and list(vgg)[-1] == "classifier.weight"
    g = weight_layers(Pix2pixGenerator(num_downs=5, width=0.125))
    assert len(g) == 10  # 5 down-convs + 5 transposed up-convs


def test_weight_layers_rejects_non_module() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        weight_layers(torch.zeros(3))  # type: ignore[arg-type]


def test_resolve_layers() -> None:
    m = ResNet8(width=0.25)
    everything = resolve_layers(m, None)
    assert list(everything) == list(weight_layers(m))
    picked = resolve_layers(m, ["fc.weight", "conv1.weight"])
    assert list(picked) == ["fc.weight", "conv1.weight"]
    assert picked["fc.weight"] is m.fc.weight
    assert list(resolve_layers(m, "fc.weight")) == ["fc.weight"]
    with pytest.raises(ValueError, match=r"\['bn1.weight', 'nope'\].*conv1\.weight"):
        resolve_layers(m, ["conv1.weight", "bn1.weight", "nope"])
    with pytest.raises(ValueError, match="empty"):
        resolve_layers(m, [])


# ---------------------------------------------------------------- embedded-profile options

def test_conv2d_same_stride1_fast_path_equals_explicit_padding() -> None:
    torch.manual_seed(1)
    conv = Conv2dSame(3, 4, 3)
    x = torch.randn(2, 3, 9, 10)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected, atol=1e-6, rtol=1e-5)
    one = Conv2dSame(3, 4, 1)  # 1x1: no padding at all
    torch.testing.assert_close(one(x), F.conv2d(x, one.weight, one.bias))


def test_resnet8_bn_momentum_option() -> None:
    assert {m.momentum for m in ResNet8().modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}  # Keras
    fast = ResNet8(width=0.5, bn_momentum=0.1)
    assert {m.momentum for m in fast.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    assert fast.state_dict().keys() == ResNet8(width=0.5).state_dict().keys()
    with pytest.raises(ValueError, match="bn_momentum"):
        ResNet8(bn_momentum=0.0)


def test_rdn_bicubic_skip_starts_as_bicubic_upsampling() -> None:
    m = RDN(scale=2, num_blocks=2, num_layers=2, growth=8, num_features=16, upsample_skip="bicubic").eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False))
    plain = RDN(scale=2, num_blocks=2, num_layers=2, growth=8, num_features=16)
    assert plain.state_dict().keys() == m.state_dict().keys()  # same parameters: the skip has none
    with pytest.raises(ValueError, match="upsample_skip"):
        RDN(upsample_skip="nearest")


@pytest.mark.parametrize("stride, side", [(4, 16), (8, 8), (16, 4)])
def test_deeplabv3_resnet50_output_stride(stride: int, side: int) -> None:
    m = build_model("DeepLabV3", seed=0, backbone="resnet50", width=0.0625, output_stride=stride).eval()
    with torch.no_grad():
        assert m.backbone(torch.randn(1, 3, 64, 64))["out"].shape[-1] == side
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 19, 64, 64)
    with pytest.raises(ValueError, match="output_stride"):
        build_model("DeepLabV3", backbone="mobilenet_v3_large", width=0.25, output_stride=8)
