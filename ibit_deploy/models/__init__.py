"""Models: IBiT (learned low-rank attention masks) and the timm baselines it is compared with."""

from . import registry  # noqa: F401  (registers the ibit_* variants with timm)
from .attention import ATTENTION_MODES, IBiTAttention
from .factory import available_models, create_model, data_config, is_ibit, matching_baseline_kwargs
from .ibit import DistilledIBiT, IBiT, ibit_attentions
from .impulse import impulse_init_, impulse_shift

__all__ = [
    "ATTENTION_MODES",
    "DistilledIBiT",
    "IBiT",
    "IBiTAttention",
    "available_models",
    "create_model",
    "data_config",
    "ibit_attentions",
    "impulse_init_",
    "impulse_shift",
    "is_ibit",
    "matching_baseline_kwargs",
]
