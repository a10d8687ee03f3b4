"""edgesal: gradient saliency appended to ONNX graphs as ordinary inference operators."""

import os

# Before anything imports OpenCV (it reads this once, when it loads): an image file declaring
# more pixels than this is refused before its buffer is allocated. OpenCV's own default, 2**30
# pixels, lets a 3 MB PNG of 30000 x 30000 zeros decode into 2.7 GB.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))

__version__ = "0.1.0"
