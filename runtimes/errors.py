"""Errors the device runtime raises on bad input; each names the file, flag, source or port.

The runtime does not import :mod:`edgesal` (which pulls in the ONNX builder), so it keeps its own
small hierarchy rooted at :class:`DeviceError`.
"""


class DeviceError(Exception):
    """Base class: every error the runtime raises on bad input is one of these."""


class ModelError(DeviceError):
    """A model file is missing, unreadable, of unknown format, or breaks the saliency contract."""


class BackendError(DeviceError):
    """No inference backend can load this model (none installed, or it refused the file)."""


class SourceError(DeviceError):
    """A frame source cannot be opened (unknown spec, missing file, camera absent)."""


class OutputError(DeviceError):
    """An output cannot be opened: video writer, records file, HTTP port already in use."""


class RecordsError(DeviceError):
    """A ``.salrec`` file is not a records file, or is of a newer major version."""
