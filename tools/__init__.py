"""Tools that make the package's files and the tests' fixtures, apart from training: the hand landmark
models converted to ONNX (`convert_hand_models`), MediaPipe's own landmarks as a test reference
(`hands_reference`) and as training's wrist and face files (`wrist_landmarks`, in a venv with
mediapipe==0.10.21), and pseudo-labels for unlabelled gesture frames (`pseudo_labels`). Each runs as
`python tools/NAME.py` or `python -m tools.NAME`."""
