"""Shared fixtures: a tiny checkpoint on disk, built once per session; torch kept to the cores CI has."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ibit_deploy.devicekit.manifest import artifact_entry, set_artifact, write_manifest

torch.set_num_threads(min(2, torch.get_num_threads()))


def exit_code(main: Callable[[list[str]], Any], argv: list[str]) -> int:
    """The exit code of ``main(argv)`` as a shell sees it: argparse's usage errors end in SystemExit(2) (raised
    when a bad value is parsed), the rest return their code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def make_checkpoint(directory: Path, name: str = "ibit_test_patch4_28", spec: str = "mnist5k", **model_kwargs) -> Path:
    """Save an (untrained) model as a checkpoint directory with the config fields ibit-train writes.

    The weights are seeded (0) in a forked RNG: the same on every run whatever ran before, and the global stream of
    the tests around it untouched.
    """
    from ibit_deploy.checkpoint import checkpoint_config, save_checkpoint
    from ibit_deploy.data import data_info
    from ibit_deploy.models import create_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(name, **model_kwargs)
    save_checkpoint(directory, model, checkpoint_config(model, data_info(spec)))
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ibit_test_patch4_28 checkpoint on mnist5k."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def checkpoint_factory():
    """The function that writes checkpoints, for tests that need another model than the tiny one."""
    return make_checkpoint


@pytest.fixture(scope="session")
def png_claiming() -> Callable[[int, int], bytes]:
    """A function writing a small PNG whose header claims ``width`` x ``height`` pixels (its data is an 8x8 image's):
    what a decompression bomb or a huge upload looks like to a reader that checks the header."""
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    def write(width: int, height: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="PNG")
        data = bytearray(buffer.getvalue())
        start = 8 + 8  # the signature, then the IHDR chunk's length and type
        data[start:start + 8] = struct.pack(">II", width, height)
        data[start + 13:start + 17] = struct.pack(">I", zlib.crc32(bytes(data[start - 4:start + 13])))
        return bytes(data)

    return write


TRAIN_STEPS = 400


def train_tiny(directory: Path, steps: int = TRAIN_STEPS, seed: int = 0, **model_kwargs) -> Path:
    """Train ibit_test_patch4_28 (with ``model_kwargs``) on mnist5k's training split and save it as a checkpoint.

    An untrained model scores ~10%, so agreement and accuracy checks would be meaningless on it; 400 AdamW steps on
    one thread take ~20 s here and reach 55-85% top-1 by seed (~65% at seed 0).
    """
    from ibit_deploy.checkpoint import checkpoint_config, save_checkpoint
    from ibit_deploy.data import build_dataset
    from ibit_deploy.models import create_model
    from ibit_deploy.train.quick import train_steps

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is several times faster than two fighting
    try:
        with torch.random.fork_rng():  # seeded, and the global stream of the tests around it left as it was
            torch.manual_seed(seed)
            model = create_model("ibit_test_patch4_28", **model_kwargs)
            dataset, info = build_dataset("mnist5k", "train")
            images = torch.stack([dataset[i][0] for i in range(len(dataset))])
            labels = torch.as_tensor(dataset.labels)
            train_steps(model, images, labels, steps, lr=3e-3, seed=seed)
    finally:
        torch.set_num_threads(threads)
    save_checkpoint(directory, model, checkpoint_config(model, info))
    return directory


@pytest.fixture(scope="session")
def train_tiny_factory():
    """The function that trains a tiny checkpoint, for tests that need a trained model other than the shared one."""
    return train_tiny


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny IBiT trained for a few seconds on mnist5k (shared by the quantization, package and example tests)."""
    return train_tiny(tmp_path_factory.mktemp("quant") / "trained")


@pytest.fixture(scope="session")
def trained_bundle(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(bundle dir, manifest) of the trained model exported at fp32. Tests must not modify it (copy it first)."""
    from ibit_deploy.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("quant") / "bundle_fp32"
    return out, export_checkpoint(trained_checkpoint, out)


# --------------------------------------------------------------------------- TensorRT build and device-kit fixtures
# A small bundle on disk and a fake ``tensorrt`` module that records what the build code asks of TensorRT's Python
# API (network flags, builder flags, pool limits, profile shapes, timing cache), so the build logic runs on a CPU-only
# machine where TensorRT cannot be installed. Its method names follow the TensorRT 10.3/11.x Python bindings.
# Shared by tests/trt (the kit and build) and tests/export (the device scripts, the tensorrt target).

CHW = (3, 32, 32)


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A bundle directory with placeholder ONNX files of every precision and a manifest describing them."""
    root = tmp_path / "bundle"
    root.mkdir()
    manifest: dict[str, Any] = {
        "model": {"name": "ibit_test_tiny"},
        "input": {"name": "images", "shape": ["batch", *CHW], "dtype": "float32", "layout": "NCHW",
                  "batch_range": [1, 16], "opt_batch": 4},
        "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
        "artifacts": [],
    }
    for name, precision in [("model.onnx", "fp32"), ("model.fp16.onnx", "fp16"), ("model.int8.onnx", "int8")]:
        (root / name).write_bytes(f"placeholder {precision} onnx".encode())
        set_artifact(manifest, artifact_entry(root, name, "onnx", precision))
    write_manifest(root, manifest)
    return root, manifest


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape = name, shape


class _Network:
    def __init__(self, flags: int, inputs: list[_Tensor]) -> None:
        self.flags = flags
        self._inputs = inputs
        self._outputs = [_Tensor("logits", (-1, 10))]
        self.num_inputs, self.num_outputs = len(inputs), 1

    def get_input(self, i: int) -> _Tensor:
        return self._inputs[i]

    def get_output(self, i: int) -> _Tensor:
        return self._outputs[i]


class _ParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def code(self) -> str:
        return "UNSUPPORTED_NODE"

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return 7

    def node_name(self) -> str:
        return "/blocks.0/attn/Softmax"

    def node_operator(self) -> str:
        return "Softmax"


class _TimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> bytes:
        return b"CACHE:" + self.blob


def make_fake_trt(version: str = "10.3.0.30") -> types.ModuleType:
    """A stand-in ``tensorrt`` module; ``fake.calls`` records the build, ``fake.state`` steers failures."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: dict[str, Any] = {"flags": [], "pools": {}}
    state: dict[str, Any] = {"parser_errors": [], "engine": b"SERIALIZED-ENGINE", "builder_raises": None,
                             "inputs": [_Tensor("images", (-1, *CHW))], "cache_accepts": True}
    trt.calls, trt.state = calls, state

    class ILogger:
        def __init__(self) -> None:
            pass

    class Builder:
        def __init__(self, logger: Any) -> None:
            if state["builder_raises"]:
                raise state["builder_raises"]
            calls["logger"] = logger

        def create_network(self, flags: int = 0) -> _Network:
            calls["network_flags"] = flags
            return _Network(flags, state["inputs"])

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: _Network, config: Config) -> bytes | None:
            calls["built"] = True
            return state["engine"]

    class OnnxParser:
        def __init__(self, network: _Network, logger: Any) -> None:
            self.errors = [_ParserError(d) for d in state["parser_errors"]]
            self.num_errors = len(self.errors)

        def parse_from_file(self, path: str) -> bool:
            calls["parsed"] = path
            return not self.errors

        def get_error(self, i: int) -> _ParserError:
            return self.errors[i]

    class Profile:
        def set_shape(self, name: str, min: tuple, opt: tuple, max: tuple) -> None:  # TensorRT's keyword names
            calls["profile"] = (name, min, opt, max)

    class Config:
        profiling_verbosity = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls["pools"][pool] = size

        def set_flag(self, flag: str) -> None:
            calls["flags"].append(flag)

        def add_optimization_profile(self, profile: Profile) -> int:
            calls["profiles_added"] = calls.get("profiles_added", 0) + 1
            return 0

        def create_timing_cache(self, blob: bytes) -> _TimingCache:
            calls.setdefault("cache_blobs", []).append(blob)
            return _TimingCache(blob)

        def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return state["cache_accepts"] or not cache.blob

        def get_timing_cache(self) -> _TimingCache:
            return self.cache

        def set_tactic_sources(self, mask: int) -> bool:
            calls["tactic_sources"] = mask
            return True

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    # TacticSource's values as in the real bindings (CUBLAS 0 ... JIT_CONVOLUTIONS 4; 11.x keeps the last two)
    trt.TacticSource = types.SimpleNamespace(CUBLAS=0, CUBLAS_LT=1, CUDNN=2, EDGE_MASK_CONVOLUTIONS=3,
                                             JIT_CONVOLUTIONS=4)
    return trt


@pytest.fixture
def fake_trt() -> types.ModuleType:
    return make_fake_trt()


@pytest.fixture
def fake_trt_factory() -> Any:
    """``make_fake_trt`` itself, for tests that need a particular TensorRT version."""
    return make_fake_trt


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ibit_deploy.devicekit.locking import directory_lock
    with directory_lock(sys.argv[1], "test-holder"):
        Path(sys.argv[2]).write_text("locked")
        time.sleep(float(sys.argv[3]))
""")


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[Callable[[Path, float], subprocess.Popen]]:
    """``hold(directory, seconds)``: another process takes ``directory``'s lock and keeps it; killed at teardown."""
    procs: list[subprocess.Popen] = []

    def hold(directory: Path, seconds: float) -> subprocess.Popen:
        flag = tmp_path / f"held-{time.monotonic_ns()}"
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory), str(flag), str(seconds)])
        procs.append(proc)
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the holder process did not take the lock"
            time.sleep(0.02)
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
