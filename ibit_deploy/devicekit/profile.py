"""The manifest's ``input`` block, parsed once: :class:`InputSpec` (what a runner accepts) and :class:`EngineProfile`
(what a TensorRT engine is built for). Every stage and the device kit read the input block through
:meth:`InputSpec.from_input_block`; nothing else parses it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def check_batch_range(min_batch: int, opt_batch: int, max_batch: int) -> None:
    """Raise ValueError unless 1 <= min <= opt <= max (the optimization profile TensorRT accepts)."""
    values = {"min": min_batch, "opt": opt_batch, "max": max_batch}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} batch must be an integer, got {value!r}")
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got min={min_batch}, opt={opt_batch}, "
                         f"max={max_batch}")


@dataclasses.dataclass(frozen=True)
class EngineProfile:
    """An engine's input and optimization profile: what travels together into trtexec, the builder and the runner."""

    input_name: str
    chw: tuple[int, int, int]
    min_batch: int
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        check_batch_range(self.min_batch, self.opt_batch, self.max_batch)
        if len(self.chw) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.chw):
            raise ValueError(f"engine input (C, H, W) must be three positive integers, got {self.chw!r}")

    @property
    def batch_range(self) -> list[int]:
        return [self.min_batch, self.max_batch]

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, *self.chw)

    @classmethod
    def from_input_block(cls, inp: Any) -> EngineProfile:
        """The profile a bundle manifest's ``input`` block describes (name, shape, batch_range, opt_batch)."""
        return InputSpec.from_input_block(inp).profile()


# Pixel channel order -> channel count; ``input.channel_order`` is one of these.
CHANNEL_ORDERS = {"L": 1, "RGB": 3, "BGR": 3}


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"manifest {what} should be an integer, got {value!r}")
    return int(value)


def _floats(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                   for v in value):
        raise ValueError(f"manifest {what} should be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _channel_order(value: Any, channels: int) -> str:
    """The recorded channel order, checked against the channel count ("" when the manifest records none)."""
    if value is None or value == "":
        return ""
    if value not in CHANNEL_ORDERS:
        raise ValueError(f"manifest input.channel_order should be one of {sorted(CHANNEL_ORDERS)}, got {value!r}")
    if CHANNEL_ORDERS[value] != channels:
        raise ValueError(f"manifest input.channel_order {value!r} has {CHANNEL_ORDERS[value]} channel(s) but "
                         f"input.shape has {channels}")
    return value


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a runner accepts: channels, height, width, the batch range (max_batch None = unbounded) and the
    preprocessing the manifest records (mean, std, channel order)."""

    name: str
    channels: int
    height: int
    width: int
    min_batch: int = 1
    max_batch: int | None = None
    opt_batch: int | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channel_order: str = ""

    @classmethod
    def from_input_block(cls, inp: Any) -> InputSpec:
        """The spec of a manifest's ``input`` block; ValueError naming the field that is malformed."""
        if not isinstance(inp, dict):
            raise ValueError(f"manifest has no 'input' block, got {inp!r}")
        shape = inp.get("shape") or []
        if not isinstance(shape, (list, tuple)) or len(shape) != 4:
            raise ValueError(f"manifest input.shape should be [batch, C, H, W], got {shape!r}")
        c, h, w = (_int(d, "input.shape") for d in shape[1:])
        batch = inp.get("batch_range") or [1, None]
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise ValueError(f"manifest input.batch_range should be [min, max], got {batch!r}")
        opt = inp.get("opt_batch")
        name = inp.get("name", "images")
        if not isinstance(name, str) or not name:
            raise ValueError(f"manifest input.name should be a tensor name, got {name!r}")
        return cls(name=name, channels=c, height=h, width=w, min_batch=_int(batch[0], "input.batch_range"),
                   max_batch=None if batch[1] is None else _int(batch[1], "input.batch_range"),
                   opt_batch=None if opt is None else _int(opt, "input.opt_batch"),
                   mean=_floats(inp.get("mean", ()), "input.mean"), std=_floats(inp.get("std", ()), "input.std"),
                   channel_order=_channel_order(inp.get("channel_order"), c))

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> InputSpec:
        """The spec of ``manifest['input']``."""
        return cls.from_input_block(manifest.get("input") if isinstance(manifest, dict) else None)

    @property
    def order(self) -> str:
        """The pixel channel order ("L", "RGB", "BGR"): the recorded one (every manifest since v1 records it)."""
        return self.channel_order or ("L" if self.channels == 1 else "RGB")

    @property
    def chw(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    @property
    def image_size(self) -> tuple[int, int]:
        return self.height, self.width

    def profile(self, engine: dict[str, Any] | None = None) -> EngineProfile:
        """The TensorRT optimization profile of this input (needs a finite max batch); with an engine's manifest
        ``engine`` entry, the batch range that engine was built with."""
        lo, opt, hi = self.min_batch, self.opt_batch, self.max_batch
        if engine is not None and engine.get("batch_range") is not None:
            rng = engine["batch_range"]
            if not isinstance(rng, (list, tuple)) or len(rng) != 2:
                raise ValueError(f"engine {engine.get('path')!r}: batch_range should be [min, max], got {rng!r}")
            lo, hi = _int(rng[0], "engine batch_range"), _int(rng[1], "engine batch_range")
            opt = _int(engine.get("opt_batch", lo), "engine opt_batch")
        if hi is None:
            raise ValueError(f"manifest input.batch_range should be [min, max] with a finite max for a TensorRT "
                             f"optimization profile, got [{lo}, None]")
        return EngineProfile(self.name, self.chw, lo, opt if opt is not None else lo, hi)

    def check(self, images: Any) -> Any:
        """Return ``images`` as contiguous float32 after checking rank, shape and batch size."""
        import numpy as np

        if not isinstance(images, np.ndarray):
            raise TypeError(f"input {self.name!r}: expected a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.chw:
            raise ValueError(f"input {self.name!r}: expected shape (batch, {self.channels}, {self.height}, "
                             f"{self.width}) NCHW, got {tuple(images.shape)}")
        batch = images.shape[0]
        if batch < self.min_batch or (self.max_batch is not None and batch > self.max_batch):
            raise ValueError(f"input {self.name!r}: batch {batch} is outside the artifact's range "
                             f"[{self.min_batch}, {self.max_batch if self.max_batch is not None else 'inf'}]")
        if images.dtype != np.float32:
            images = images.astype(np.float32)
        return np.ascontiguousarray(images)
