"""onnxruntime backend: TensorRT, CUDA or CPU execution provider, chosen with fallback and logged.

``device="auto"`` tries TensorRT, then CUDA, then CPU among the providers this onnxruntime build
offers; a provider that fails to initialise (missing CUDA libraries, unsupported op) falls back to
the next one and the fallback is logged with its reason.
"""

from __future__ import annotations

import logging
import platform
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgesal.runtimes.backends.base import BackendOptions
from edgesal.runtimes.backends.onnx_masks import nchwc_masks, portable_masks
from edgesal.runtimes.backends.onnx_prune import prune
from edgesal.runtimes.errors import BackendError, ModelError

log = logging.getLogger("edgesal.runtimes.backend")

PREFERENCE = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
PREFERENCE["auto"] = PREFERENCE["tensorrt"]
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
}


def _provider_options(name: str, options: BackendOptions) -> dict:
    if name == "TensorrtExecutionProvider" and options.trt_cache:
        Path(options.trt_cache).mkdir(parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": options.trt_cache,
            "trt_fp16_enable": True,
        }
    return {}


def _session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A memory pattern reserves one block sized for the whole run per run in flight; allocating
    # tensors as they live keeps 15-30 MB less resident for MobileNetV2 saliency at 1-3% latency.
    so.enable_mem_pattern = False
    so.log_severity_level = 3
    return so


def open_session(
    model: bytes, options: BackendOptions, label: str
) -> tuple[ort.InferenceSession, str]:
    """A session on the most preferred available provider; returns it and the provider used."""
    if options.device not in PREFERENCE:
        raise BackendError(f"--device {options.device}: choose auto, cpu, cuda or tensorrt")
    available = set(ort.get_available_providers())
    wanted = [p for p in PREFERENCE[options.device] if p in available]
    if options.device != "auto" and wanted[0] != PREFERENCE[options.device][0]:
        log.warning(
            "%s: %s not in this onnxruntime build (%s); falling back to %s",
            label,
            PREFERENCE[options.device][0],
            sorted(available),
            wanted[0],
        )
    last_error: Exception | None = None
    for i, provider in enumerate(wanted):
        chain = wanted[i:]
        try:
            session = ort.InferenceSession(
                for_providers(model, chain),
                _session_options(options.threads),
                providers=[(p, _provider_options(p, options)) for p in chain],
            )
        except Exception as exc:  # onnxruntime raises several private types
            if provider == "CPUExecutionProvider":
                raise ModelError(f"{label}: onnxruntime cannot load the model: {exc}") from exc
            log.warning("%s: %s failed (%s); trying the next provider", label, provider, exc)
            last_error = exc
            continue
        used = session.get_providers()[0]
        if used != wanted[0]:
            log.warning("%s: %s unavailable at run time; using %s", label, wanted[0], used)
        return session, used
    raise BackendError(f"{label}: no execution provider could load the model: {last_error}")


def for_providers(model: bytes, chain: list[str]) -> bytes:
    """The model as ``chain`` runs it fastest and right: on the float32 CPU provider alone of an
    x86 build, gradient masks as HardSigmoids onnxruntime keeps in its blocked layout (15-20%
    faster saliency, bit-identical maps; see :mod:`edgesal.runtimes.backends.onnx_masks`). GPU
    providers may run float16, where that form is undefined, so a file exported in it (``--for
    onnxruntime-cpu``) gets its portable masks back; ARM builds have no blocked layout and run
    either form exactly in float32, so they get the file as is."""
    if chain != ["CPUExecutionProvider"]:
        return portable_masks(model)
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return model
    return nchwc_masks(model)


class OnnxRuntimeBackend:
    """One onnxruntime session (safe to run from several threads at once); :meth:`subset` builds
    pruned sessions for partial runs."""

    def __init__(self, path: Path, raw: bytes, options: BackendOptions, outputs: list[str] | None):
        self.path = str(path)
        self._options = options
        model = raw if outputs is None else prune(raw, outputs)
        self.pruned = model is not None and outputs is not None
        self.session, provider = open_session(model or raw, options, self.path)
        self.name = f"onnxruntime/{provider}"
        try:  # a name or metadata value that is not UTF-8 fails in the conversion to str
            self.inputs = {
                i.name: (tuple(d if isinstance(d, int) else -1 for d in i.shape), _dtype(i.type))
                for i in self.session.get_inputs()
            }
            self.outputs = [o.name for o in self.session.get_outputs()]
            self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError as exc:
            raise ModelError(f"{path}: a tensor name or metadata value is not UTF-8") from exc
        self._subsets: dict[tuple[str, ...], OnnxRuntimeBackend] = {}
        self._subsets_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, options: BackendOptions) -> OnnxRuntimeBackend:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc}") from exc
        backend = cls(path, raw, options, None)
        log.info("%s: %s, %d threads", path, backend.name, options.threads)
        return backend

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {k: v for k, v in feeds.items() if k in self.inputs}
        return self.session.run(outputs, feeds)

    def subset(self, outputs: list[str]) -> OnnxRuntimeBackend:
        key = tuple(outputs)
        if key == tuple(self.outputs):
            return self
        with self._subsets_lock:
            if key not in self._subsets:
                path = Path(self.path)
                raw = path.read_bytes()
                self._subsets[key] = OnnxRuntimeBackend(path, raw, self._options, outputs)
            return self._subsets[key]

    def release_subsets(self, keep: list[list[str]]) -> None:
        """Drop pruned sessions other than ``keep`` (frees memory under pressure)."""
        wanted = {tuple(k) for k in keep}
        with self._subsets_lock:
            self._subsets = {k: v for k, v in self._subsets.items() if k in wanted}


def _dtype(onnx_type: str) -> str:
    return _DTYPES.get(onnx_type, onnx_type)
