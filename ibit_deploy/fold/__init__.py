"""Fold learned low-rank masks into static attention constants: the deployable form of a trained IBiT."""

from .flashbias import check_flashbias_applicable, to_flashbias
from .fold import fold_masks, max_fold_error
from .lowrank import BiasFactors, RankPolicy, decompose_bias

__all__ = ["BiasFactors", "RankPolicy", "check_flashbias_applicable", "decompose_bias", "fold_masks", "max_fold_error",
           "to_flashbias"]
