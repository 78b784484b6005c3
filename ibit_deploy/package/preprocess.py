"""Pixel-to-tensor transforms of each target, and the affine map that folds the difference into the model.

Every target turns a uint8 pixel ``p[c]`` (in its colour order) into a tensor value ``t[c] = scale[c] * p[c] +
shift[c]``:

    bundle (training)   t = (p / 255 - mean[c]) / std[c]                    any mean/std, "L" or "RGB"
    nvinfer             t = net-scale-factor * (p - offsets[c])             ONE scale for every channel
    jetson-inference    t = (p / 255 - (0.485, 0.456, 0.406)[c]) / (0.229, 0.224, 0.225)[c], always RGB

When the target's transform differs from the bundle's, the model is given a first layer that maps the target's
tensor back to the bundle's: ``x[k] = sum_c A[k, c] * t[c] + beta[k]`` (:func:`fold_affine`), which
:mod:`.fold` multiplies into the patch-embedding convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# jetson-inference imageNet, ONNX models: c/imageNet.cpp passes these to cudaTensorNormMeanRGB with range (0, 1)
JETSON_MEAN = (0.485, 0.456, 0.406)
JETSON_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma, what PIL's convert("L") (and so Predictor) uses to turn an RGB image into the bundle's grey input
LUMA_RGB = (0.299, 0.587, 0.114)
# tolerance for "the target's keys express the bundle's transform": relative, far below fp32 resolution of the data
EXPRESSIBLE_RTOL = 1e-9


@dataclass(frozen=True)
class PixelTransform:
    """``t[c] = scale[c] * p[c] + shift[c]`` over pixel channels in ``order`` ("L", "RGB" or "BGR")."""

    order: str
    scale: tuple[float, ...]
    shift: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return {"channel_order": self.order, "formula": "t[c] = scale[c] * pixel[c] + shift[c]",
                "scale": list(self.scale), "shift": list(self.shift)}


def bundle_transform(mean: tuple[float, ...], std: tuple[float, ...], order: str) -> PixelTransform:
    """The transform the bundle was trained with: ``(p / 255 - mean) / std`` over pixels in ``order`` (the manifest's
    ``input.channel_order``, read by :class:`~ibit_deploy.devicekit.profile.InputSpec`)."""
    return PixelTransform(order, tuple(1.0 / (255.0 * s) for s in std), tuple(-m / s for m, s in zip(mean, std, strict=True)))


def nvinfer_transform(net_scale_factor: float, offsets: tuple[float, ...], order: str) -> PixelTransform:
    """nvinfer's ``net-scale-factor * (p - offsets[c])``."""
    return PixelTransform(order, tuple(net_scale_factor for _ in offsets),
                          tuple(-net_scale_factor * o for o in offsets))


def jetson_inference_transform() -> PixelTransform:
    """imageNet's hard-coded ImageNet normalisation of RGB pixels / 255."""
    return bundle_transform(JETSON_MEAN, JETSON_STD, "RGB")


def nvinfer_keys_for(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[float, tuple[float, ...]] | None:
    """(net-scale-factor, offsets) that reproduce ``(p / 255 - mean) / std`` exactly, or None when the stds differ."""
    if max(std) - min(std) > EXPRESSIBLE_RTOL * max(std):
        return None
    return 1.0 / (255.0 * std[0]), tuple(255.0 * m for m in mean)


def colour_map(model_order: str, target_order: str) -> np.ndarray:
    """M (model channels x target channels): model pixel ``g[k] = sum_c M[k, c] * p[c]`` of the target's pixels."""
    if model_order == target_order:
        return np.eye(len(model_order))
    if model_order == "L" and target_order in ("RGB", "BGR"):
        luma = LUMA_RGB if target_order == "RGB" else LUMA_RGB[::-1]
        return np.array([luma], dtype=np.float64)
    if {model_order, target_order} == {"RGB", "BGR"}:
        return np.eye(3)[::-1].copy()
    raise ValueError(f"no colour mapping from {target_order} pixels to a {model_order} model")


def fold_affine(model: PixelTransform, target: PixelTransform) -> tuple[np.ndarray, np.ndarray]:
    """(A, beta) with ``x = A @ t + beta``: the model's expected input ``x`` from the target's tensor ``t``.

    From ``p[c] = (t[c] - shift[c]) / scale[c]`` and ``x[k] = mscale[k] * sum_c M[k, c] p[c] + mshift[k]``.
    """
    colours = colour_map(model.order, target.order)
    inv = 1.0 / np.asarray(target.scale, dtype=np.float64)
    mscale = np.asarray(model.scale, dtype=np.float64)[:, None]
    a = mscale * colours * inv[None, :]
    beta = np.asarray(model.shift, dtype=np.float64) - (a * np.asarray(target.shift, dtype=np.float64)[None, :]).sum(1)
    return a, beta


def is_identity(a: np.ndarray, beta: np.ndarray) -> bool:
    """True when the target's tensor already is the model's input (no fold needed)."""
    return a.shape[0] == a.shape[1] and np.allclose(a, np.eye(len(a)), rtol=0, atol=EXPRESSIBLE_RTOL) \
        and np.allclose(beta, 0.0, rtol=0, atol=EXPRESSIBLE_RTOL)


def apply_transform(pixels: np.ndarray, transform: PixelTransform) -> np.ndarray:
    """uint8 pixels (N, H, W, C) in ``transform.order`` -> float32 NCHW tensor (float32 arithmetic, like the targets)."""
    x = pixels.astype(np.float32).transpose(0, 3, 1, 2)
    scale = np.asarray(transform.scale, np.float32)[None, :, None, None]
    shift = np.asarray(transform.shift, np.float32)[None, :, None, None]
    return np.ascontiguousarray(x * scale + shift, dtype=np.float32)
