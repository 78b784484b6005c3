"""Fold learned low-rank masks into static attention constants: the deployable form of a trained IBiT."""

from .fold import fold_masks, max_fold_error

__all__ = ["fold_masks", "max_fold_error"]
