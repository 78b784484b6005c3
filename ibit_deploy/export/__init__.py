"""Export: folded ONNX, precision variants, TensorRT engines or on-device build kits, torch-tensorrt programs."""
