"""LIB-KD teachers: the involution layer (shapes, per-pixel kernels, gradients) and the two teacher networks."""

from __future__ import annotations

import pytest
import torch

from ibit_deploy.models.teachers import Involution, create_teacher, is_teacher


@pytest.mark.parametrize(("size", "stride", "expected"), [((8, 8), 1, (8, 8)), ((8, 9), 2, (4, 5)), ((7, 7), 2, (4, 4))])
def test_involution_shapes(size, stride, expected):
    layer = Involution(32, kernel_size=3, stride=stride, group_channels=8)
    assert layer(torch.randn(2, 32, *size)).shape == (2, 32, *expected)


def test_involution_gradient_reaches_every_parameter_and_the_input():
    layer = Involution(16, kernel_size=5, group_channels=4)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_involution_matches_a_direct_per_pixel_computation():
    torch.manual_seed(0)
    layer = Involution(4, kernel_size=3, group_channels=2).eval()
    x = torch.randn(1, 4, 5, 5)
    out = layer(x)
    kernel = layer.span(layer.reduce(x)).view(1, 2, 9, 5, 5)  # (B, groups, K*K, H, W)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    r, c, ch = 2, 3, 3  # one output pixel of channel 3 (group 1)
    window = padded[0, ch, r : r + 3, c : c + 3].reshape(9)
    assert torch.allclose(out[0, ch, r, c], (kernel[0, 1, :, r, c] * window).sum(), atol=1e-5)


def test_involution_kernel_is_spatially_specific():
    """Unlike a convolution's, the kernel differs from position to position: it is generated from each pixel."""
    layer = Involution(4, kernel_size=3, group_channels=4).eval()
    kernel = layer.span(layer.reduce(torch.randn(1, 4, 6, 6)))
    assert not torch.allclose(kernel[..., 0, 0], kernel[..., 3, 3])


def test_involution_argument_errors():
    with pytest.raises(ValueError, match="odd"):
        Involution(16, kernel_size=4)
    with pytest.raises(ValueError, match="divisible by group_channels"):
        Involution(12, group_channels=8)


@pytest.mark.parametrize("name", ["resnet_small", "rednet_small"])
def test_teachers_forward_backward(name):
    model = create_teacher(name, in_chans=1, num_classes=7, stem_stride=2)
    assert is_teacher(name) and model.build_spec == {"name": name, "kwargs": {"in_chans": 1, "num_classes": 7,
                                                                              "stem_stride": 2}}
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert create_teacher(name, in_chans=3, num_classes=10)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_unknown_teacher():
    with pytest.raises(ValueError, match="unknown teacher 'vgg'; available: resnet_small, rednet_small"):
        create_teacher("vgg")
