"""``import ibit_deploy`` is light (no timm, no torch), and the IBiT variants are still in timm's registry afterwards,
whichever of the two is imported first. Each case runs in a fresh interpreter: registration is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ibit_deploy

ROOT = Path(ibit_deploy.__file__).resolve().parent.parent


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_ibit_deploy_imports_neither_timm_nor_torch():
    out = _python("import sys, ibit_deploy, ibit_deploy.cli.launch\n"
                  "print(sorted(m for m in ('timm', 'torch', 'torchvision', 'numpy') if m in sys.modules))")
    assert out == "[]"


@pytest.mark.parametrize("first", ["ibit_deploy", "timm"])
def test_timm_creates_ibit_models_after_import_ibit_deploy(first):
    second = "timm" if first == "ibit_deploy" else "ibit_deploy"
    out = _python(f"import {first}, {second}, sys\n"
                  "from ibit_deploy.timm_plugin import installed\n"
                  "model = timm.create_model('ibit_tiny_patch16_224')\n"
                  "print(type(model).__name__, len(timm.list_models('ibit_*')), installed(),"
                  " type(sys.modules['timm'].__spec__.loader).__name__)")
    # the variants are registered, the hook is gone, and timm's loader is its own (only its one call was wrapped)
    assert out == "IBiT 8 False SourceFileLoader"
