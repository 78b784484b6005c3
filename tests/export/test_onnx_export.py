"""ONNX export of folded models: opset, dynamic batch, masks as single initializers, ORT equal to PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.data import data_info, eval_arrays
from ibit_deploy.export.onnx_export import export_onnx, onnx_opset
from ibit_deploy.fold import fold_masks


@pytest.fixture(scope="module")
def mnist_images() -> np.ndarray:
    info = data_info("mnist5k")
    images, _ = eval_arrays("mnist5k", "val", (28, 28), info.mean, info.std, limit=32)
    return images


def mask_initializers(model: onnx.ModelProto, tokens: int) -> list[onnx.TensorProto]:
    return [i for i in model.graph.initializer if len(i.dims) >= 2 and tuple(i.dims[-2:]) == (tokens, tokens)]


@pytest.mark.parametrize("mode", ["mask", "bias"])
def test_ibit_onnx_matches_pytorch_on_real_images(tmp_path, mnist_images, mode):
    torch.manual_seed(0)
    model = models.create_model("ibit_test_patch4_28", attn_mode=mode).eval()
    folded = fold_masks(model)
    path = export_onnx(folded, tmp_path / "m.onnx", (1, 28, 28), metadata={"ibit_deploy.model": "ibit_test"})
    proto = onnx.load(str(path))
    assert onnx_opset(path) >= 17
    assert any(n.op_type == "LayerNormalization" for n in proto.graph.node)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "images" and dims[0].dim_param == "batch"
    assert proto.graph.output[0].name == "logits"
    assert {p.key: p.value for p in proto.metadata_props}["ibit_deploy.model"] == "ibit_test"

    # one (heads, T, T) constant per layer, and nothing left of the factors (heads, r, T) or their gather
    depth, heads, tokens, rank = 2, 2, 50, 3
    assert len(mask_initializers(proto, tokens)) == depth
    assert not [i for i in proto.graph.initializer if tuple(i.dims[-3:]) == (heads, rank, tokens)]
    assert not [n for n in proto.graph.node if n.op_type in ("Gather", "GatherElements") and
                any("mask" in x for x in n.input)]

    if mode == "mask":  # S / (||S||_F + 1e-8): the eps survives export (the optimizer drops it; we restore it)
        divs = [n for n in proto.graph.node if n.op_type == "Div" and n.input[1].endswith("_plus_eps")]
        assert len(divs) == depth
        eps = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}["ibit_frobenius_eps"]
        assert float(eps) == pytest.approx(1e-8)
        # the norm is one ReduceL2 per layer over the (T, T) map; TensorRT's parser needs its axes as an initializer
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
        norms = [n for n in proto.graph.node if n.op_type == "ReduceL2"]
        assert len(norms) == depth
        assert all(sorted(inits[n.input[1]].tolist()) in ([-2, -1], [2, 3]) for n in norms)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 7, 32):
        ours = session.run(None, {"images": mnist_images[:batch]})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(mnist_images[:batch])).numpy()
        assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("baseline", ["vit_tiny_patch16_224", "convit_tiny"])
def test_baselines_export_through_the_same_path(tmp_path, mnist_images, baseline):
    model = models.create_model(baseline, **models.matching_baseline_kwargs("ibit_test_patch4_28")).eval()
    path = export_onnx(fold_masks(model), tmp_path / "b.onnx", (1, 28, 28))
    ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": mnist_images})[0]
    with torch.no_grad():
        assert np.abs(ours - model(torch.from_numpy(mnist_images)).numpy()).max() <= 1e-4


def test_low_opset_refused(tmp_path):
    model = models.create_model("ibit_test_patch4_28").eval()
    with pytest.raises(ValueError, match=r"opset must be in \[17, \d+\] \(>= 17: LayerNormalization"):
        export_onnx(model, tmp_path / "x.onnx", (1, 28, 28), opset=13)
    with pytest.raises(ValueError, match=r"opset must be in \[17, \d+\] .*what the exporter here supports.*got 99"):
        export_onnx(model, tmp_path / "x.onnx", (1, 28, 28), opset=99)
    assert not (tmp_path / "x.onnx").exists()


class _RowNormalised(torch.nn.Module):
    """Not IBiT: L2-normalised embeddings, ``f / ||f||`` per row, the way retrieval heads do it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fc(x.flatten(1))
        return f / f.norm(dim=-1, keepdim=True)


def test_eps_is_restored_only_for_ibit_normalisation(tmp_path):
    path = export_onnx(_RowNormalised().eval(), tmp_path / "row.onnx", (1, 4, 4))
    proto = onnx.load(str(path))
    assert "ibit_frobenius_eps" not in {i.name for i in proto.graph.initializer}
    assert not [n for n in proto.graph.node if n.name.endswith("_plus_eps")]
