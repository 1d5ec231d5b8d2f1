"""Deployment of exports: ONNX graphs, dynamic INT8 quantization and ONNX Runtime evaluation and
timing (needs the ``deploy`` extra; the training path imports it only from the export stage)."""
