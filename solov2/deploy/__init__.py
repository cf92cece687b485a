"""Deployment: the exported graph's contract (``contract``), export to ONNX / TorchScript / OpenVINO IR
(``export``, ``dcn_onnx``, ``openvino``), running exported files (``runtime``) and int8 quantization
(``quantize``). docs/deployment.md describes the contract for programs in any language.

Nothing is imported here: each runtime is an optional extra."""
