"""PyTorch ``nn.Module`` -> ONNX with ``torch.onnx.export`` (extra ``torch``).

The TorchScript exporter is used (static shapes from ``example_input``, BatchNorm folded by its
constant folding): unlike the torch.export-based one it needs no onnxscript.
"""

from __future__ import annotations

import io
import warnings

import onnx

from edgesal.converters.errors import ConversionError


def from_torch(
    module,
    example_input,
    opset: int = 17,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
) -> onnx.ModelProto:
    """``module`` in eval mode traced on ``example_input`` (a tensor or a tuple of tensors)."""
    try:
        import torch
    except ImportError as exc:
        raise ConversionError("from_torch needs PyTorch: pip install 'edgesal[torch]'") from exc
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    n_out = _count_outputs(module, args, torch)
    input_names = input_names or (
        ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    )
    output_names = output_names or (
        ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    )
    module = module.eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                buffer,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:
        raise ConversionError(
            f"torch.onnx.export failed on {type(module).__name__}: {exc}"
        ) from exc
    return onnx.load_from_string(buffer.getvalue())


def _count_outputs(module, args, torch) -> int:
    with torch.no_grad():
        out = module.eval()(*args)
    return len(out) if isinstance(out, tuple | list) else 1
