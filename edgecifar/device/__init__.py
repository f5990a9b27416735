"""Stage 6 — device: what runs on the Raspberry Pi. Imports numpy, OpenCV and a runtime; never TensorFlow.

    metadata.py    the artifact contract (class names, input, quantization) read from sidecar/ONNX
    preprocess.py  camera frame → model input, identical to training and export
    runtime.py     Classifier: one interface over LiteRT, tflite-runtime, onnxruntime
"""
