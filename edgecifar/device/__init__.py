"""Stage 6 — device: what runs on the Raspberry Pi. Imports numpy, OpenCV and a runtime; never TensorFlow.

    metadata.py    the artifact contract (class names, input, quantization, output kind) from sidecar/ONNX
    preprocess.py  camera frame → model input, identical to training and export
    runtime.py     Classifier: one interface over LiteRT, tflite-runtime, onnxruntime
    sources.py     cameras, picamera2, videos, images, folders, URLs, GStreamer pipelines
    frame_loop.py  the frame loop: capture → preprocess → infer → postprocess, smoothing, save, show
    stats.py       per-stage latency and end-to-end FPS
    overlay.py     label / confidence / FPS drawn on frames
    serve.py       live view in a browser (--serve): page, MJPEG stream, /stats.json
    cli.py         `edgecifar run`
"""
