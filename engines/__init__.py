"""Engines: ONNX export and the runtime backends (torch, OpenVINO, TensorRT) behind one interface."""
