"""TorchRunner: eval/inference mode while open, training mode and thread count given back on close."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ibit_deploy.runtime.base import BackendUnavailable, InputSpec
from ibit_deploy.runtime.torch_runner import TorchRunner

SPEC = InputSpec("images", 1, 28, 28)


def test_runs_in_eval_and_restores_state():
    from ibit_deploy.models import create_model

    model = create_model("ibit_test_patch4_28").train()
    threads = torch.get_num_threads()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with TorchRunner(model, SPEC, "torch-ref", threads=1) as runner:
        assert not model.training and torch.get_num_threads() == 1
        logits = runner.infer(x)
        info = runner.describe()
    assert model.training and torch.get_num_threads() == threads
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert info == {"backend": "torch-ref", "torch": torch.__version__, "device": "cpu", "threads": 1}
    with torch.no_grad():
        np.testing.assert_allclose(logits, model.eval()(torch.from_numpy(x)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match=r"expected shape \(batch, 1, 28, 28\)"), TorchRunner(model, SPEC) as r:
        r.infer(np.zeros((1, 3, 28, 28), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_unavailable():
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        TorchRunner(torch.nn.Identity(), SPEC, device="cuda").open()
    with pytest.raises(ValueError, match="device"):
        TorchRunner(torch.nn.Identity(), SPEC, device="tpu")
