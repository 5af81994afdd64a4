"""Make handseg's hand landmark models (handseg/hands/models/) from MediaPipe's own files.

    # a virtual environment of its own, for this command only (none of it is a dependency of handseg):
    pip install tf2onnx==1.17.0 tensorflow-cpu onnx onnxruntime
    pip download mediapipe==0.10.21 --no-deps -d wheels/
    python tools/convert_hand_models.py --wheel wheels/mediapipe-0.10.21-*.whl --out handseg/hands/models

From the wheel's `mediapipe/modules/palm_detection/palm_detection_lite.tflite` and
`mediapipe/modules/hand_landmark/hand_landmark_lite.tflite` (Apache-2.0), for each:
1. `python -m tf2onnx.convert --tflite X.tflite --output X.onnx --opset 17`;
2. every PRelu rewritten as Relu(x) + slope * Min(x, 0): the same numbers to the bit, but onnxruntime runs
   these ops about twice as fast as its PRelu (the palm detector: 8.9 -> 5.1 ms on one thread);
3. float32 weights stored as float16 with a Cast back (the TFLite weights are float16, so this is exact):
   half the file, the same outputs (onnxruntime folds the Cast away when it loads the file).
4. names given by position (tf2onnx's differ from run to run), so the same wheel gives the same bytes.
The result's outputs are checked against tf2onnx's on random inputs, and the file's sha256 printed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MODELS = {
    "palm_detection_lite": ("mediapipe/modules/palm_detection/palm_detection_lite.tflite", 192),
    "hand_landmark_lite": ("mediapipe/modules/hand_landmark/hand_landmark_lite.tflite", 224),
}


def prelu_as_relu_and_min(model):
    """PRelu(x, s) -> Relu(x) + Min(x, 0) * s, in place."""
    from onnx import helper, numpy_helper

    graph, nodes = model.graph, []
    zero = "handseg_zero"
    if any(node.op_type == "PRelu" for node in graph.node):
        graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope), (y,), name = node.input, node.output, node.output[0]
        nodes += [
            helper.make_node("Relu", [x], [f"{name}_positive"]),
            helper.make_node("Min", [x, zero], [f"{name}_negative"]),
            helper.make_node("Mul", [f"{name}_negative", slope], [f"{name}_scaled"]),
            helper.make_node("Add", [f"{name}_positive", f"{name}_scaled"], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def float16_storage(model):
    """Float32 weights that are float16 values stored as float16, each with a Cast back to float32."""
    from onnx import TensorProto, helper, numpy_helper

    graph, casts = model.graph, []
    for initializer in list(graph.initializer):
        values = numpy_helper.to_array(initializer)
        if values.dtype != np.float32 or values.size < 16 or not np.array_equal(values.astype(np.float16), values):
            continue
        stored = numpy_helper.from_array(values.astype(np.float16), f"{initializer.name}_float16")
        graph.initializer.remove(initializer)
        graph.initializer.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [initializer.name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def canonical_names(model):
    """Names by position (tf2onnx names folded constants differently from run to run), weights in order of
    first use: the same tflite file gives the same bytes."""
    graph = model.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    renamed: dict[str, str] = {}
    initializers = {i.name: i for i in graph.initializer}
    order: list[str] = []
    for node in graph.node:
        for name in node.input:
            if name in initializers and name not in renamed:
                renamed[name] = f"w{len(order)}"
                order.append(name)
        for name in node.output:
            if name not in keep and name not in renamed:
                renamed[name] = f"t{len(renamed)}"
    for node in graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    kept = [initializers[name] for name in order]
    for initializer in kept:
        initializer.name = renamed[initializer.name]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    graph.doc_string = ""  # tf2onnx writes the path of its temporary file here
    return model


def outputs(path: Path, size: int) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = np.random.default_rng(0).random((4, 1, size, size, 3), dtype=np.float32)
    return [o for x in inputs for o in session.run(None, {session.get_inputs()[0].name: x})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the mediapipe==0.10.21 wheel (pip download)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import onnx

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(args.wheel) as wheel:
        for name, (member, size) in MODELS.items():
            tflite = Path(wheel.extract(member, tmp))
            converted = Path(tmp) / f"{name}.tf2onnx.onnx"
            command = [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(converted)]
            subprocess.run([*command, "--opset", "17"], check=True, capture_output=True)
            reference = outputs(converted, size)
            target = args.out / f"{name}.onnx"
            model = float16_storage(canonical_names(prelu_as_relu_and_min(onnx.load(str(converted)))))
            onnx.save(model, str(target))
            for got, want in zip(outputs(target, size), reference):
                if not np.array_equal(got, want):
                    raise SystemExit(f"{target}: outputs differ from tf2onnx's by {np.abs(got - want).max()}")
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            print(f"{member} -> {target} ({target.stat().st_size / 1e6:.1f} MB, sha256 {digest}; outputs identical)")


if __name__ == "__main__":
    main()
