"""Pictures people would rather see than read: attention masks as image grids."""

from .masks import mask_maps, plot_masks

__all__ = ["mask_maps", "plot_masks"]
