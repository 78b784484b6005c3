"""Data: image sources behind one spec string, seeded stratified splits, and the preprocessing every stage shares."""

from .datasets import (
    DEFAULT_SPEC,
    DataInfo,
    ImageDataset,
    build_dataset,
    data_info,
    eval_arrays,
    load_source,
    parse_spec,
    split_arrays,
    stratified_split,
    stratified_subset,
)
from .transforms import AugmentConfig, eval_transform, preprocess_images, train_transform

__all__ = [
    "DEFAULT_SPEC", "AugmentConfig", "DataInfo", "ImageDataset", "build_dataset", "data_info", "eval_arrays",
    "eval_transform", "load_source", "parse_spec", "preprocess_images", "split_arrays", "stratified_split",
    "stratified_subset", "train_transform",
]
