"""ONNX -> TFLite with builtin operators only, written straight from the TFLite schema."""
