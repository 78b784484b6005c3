"""Packages for the applications that run classifiers: DeepStream (Gst-nvinfer), Triton, jetson-inference.

    from ibit_deploy.package import package_bundle, PackageOptions
    package_bundle("bundle/", "deepstream", "ds_package/", PackageOptions(precision="fp16"))

Each target gets the files it consumes as they are, with its own preprocessing made exact (folded into the model's
first layer where the target's keys cannot express the bundle's normalisation) and a ``package.json`` recording
every file's sha256, the preprocessing and the fold.
"""

from .core import package_bundle
from .model_variant import PackageCheckFailed
from .options import PACKAGE_MANIFEST, TARGETS, PackageOptions
from .source import BundleView, PackageError, read_bundle

__all__ = ["PACKAGE_MANIFEST", "TARGETS", "BundleView", "PackageCheckFailed", "PackageError", "PackageOptions",
           "package_bundle", "read_bundle"]
