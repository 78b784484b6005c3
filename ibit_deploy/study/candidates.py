"""The candidates a study can compare, all at the same transformer dims, and the LIB-KD teachers.

A candidate is a model name plus the kwargs that give it the study's dims; the input size, channels and classes come
from the data at training time (``ibit_deploy.train.build.model_kwargs_for``). The ResNet-style CNN is both a
candidate (the CNN reference) and, run for run, the first LIB-KD teacher; the involution network is trained only as
the second teacher, once per fraction and seed, and its cost is reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IBIT_VARIANT = "ibit_tiny_patch4_28"  # patch 4; img_size/in_chans are overridden from the data
VIT_VARIANT = "vit_tiny_patch16_224"  # timm ViT == DeiT architecture; patch_size overridden to 4
CONVIT_VARIANT = "convit_tiny"
PATCH = 4


@dataclass(frozen=True)
class Candidate:
    """One model family in a study. ``dims`` True: the study's embed_dim/depth/num_heads are applied."""

    name: str
    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    dims: bool = True
    distilled: bool = False  # LIB-KD student: needs the teachers of its fraction and seed
    description: str = ""


CANDIDATES: dict[str, Candidate] = {c.name: c for c in (
    Candidate("ibit", IBIT_VARIANT, {"attn_mode": "mask"}, description="IBiT, learned low-rank attention masks"),
    Candidate("vit", VIT_VARIANT, {"patch_size": PATCH}, description="timm ViT/DeiT, same dims"),
    Candidate("convit", CONVIT_VARIANT, {"patch_size": PATCH},
              description="timm ConViT, GPSA in every block but the last"),
    Candidate("resnet", "resnet_small", {"stem_stride": 2}, dims=False,
              description="ResNet-style CNN (the CNN reference and LIB-KD teacher 1)"),
    Candidate("ibit_kd", IBIT_VARIANT, {"attn_mode": "mask"}, distilled=True,
              description="IBiT student, LIB-KD (hard) from resnet + rednet of the same fraction and seed"),
    Candidate("ibit_bias", IBIT_VARIANT, {"attn_mode": "bias"}, description="IBiT, additive mask (bias) + softmax"),
    Candidate("ibit_impulse", IBIT_VARIANT, {"attn_mode": "mask", "init": "impulse"},
              description="IBiT with impulse initialization of Q/K"),
)}

# LIB-KD teachers (METHODS.md section 6). The resnet teacher *is* the resnet candidate's run.
TEACHERS: dict[str, Candidate] = {
    "resnet": CANDIDATES["resnet"],
    "rednet": Candidate("rednet", "rednet_small", {"stem_stride": 2, "kernel_size": 5}, dims=False,
                        description="RedNet-style involution network (LIB-KD teacher 2 only)"),
}
KD_TEACHERS = ("resnet", "rednet")
KD_WEIGHTS = (0.5, 0.5)
KD_ALPHA, KD_TAU, KD_KIND = 0.5, 1.0, "hard"


def parse_candidates(text: str | list[str]) -> list[str]:
    """Candidate names from ``"ibit,vit"`` (or a list), checked against :data:`CANDIDATES`; order kept, no repeats."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise ValueError(f"unknown candidate(s) {', '.join(map(repr, unknown))}; known candidates: "
                         f"{', '.join(CANDIDATES)}")
    if not names:
        raise ValueError(f"no candidates given; known candidates: {', '.join(CANDIDATES)}")
    return list(dict.fromkeys(names))


def model_spec(candidate: Candidate, embed_dim: int, depth: int, num_heads: int) -> tuple[str, dict[str, Any]]:
    """(model name, kwargs) of ``candidate`` at the study's transformer dims."""
    kwargs = dict(candidate.kwargs)
    if candidate.dims:
        kwargs.update(embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    if candidate.model == CONVIT_VARIANT:
        kwargs["local_up_to_layer"] = max(1, depth - 1)
    return candidate.model, kwargs
