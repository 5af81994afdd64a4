"""The package's structure: layers that only look down, no import circle, the model apart from the
runtime, `import handseg` quick, and handseg importing nothing of the app, training or benchmarks."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

import handseg
from tests.conftest import REPO_ROOT

#: Each module's layer, lowest first: a module imports from its own layer or below, never above.
LAYERS = [
    # foundations: files, the machine, pictures, names
    {"hardware", "image", "metrics", "crf", "pretrained", "registry", "hands.warp", "hands.topology"},
    # the landmark pipeline in MediaPipe's stages, then the package that gathers them
    {"hands.regions", "hands.channels", "hands.labels", "hands.handedness"},
    {"hands.detector", "hands.landmark_model", "hands.confirm"},
    {"hands.landmarker"},
    {"hands.tracking"},
    {"hands", "visualize"},
    # between a photo and the network, what a result is, what a model folder holds
    {"processing", "results", "packaging"},
    # the model: architecture and hub loading, no runtime
    {
        "hub",
        "model",
        "networks",
        "networks.blocks",
        "networks.encoders",
        "networks.lite_unet",
        "networks.original_unet",
        "convert",
    },  # fmt: skip
    # what runs it, and build-time exports
    {"backends", "export", "loading"},
    {"segmenter"},
    # front ends
    {"jobs", "engines", "video"},
    {"cli", "cli.flags", "cli.options", "cli.segment", "cli.ray", "cli.tools", "cli.parser", "ray", "__main__"},
]
MODEL_LAYER = {"model", "networks", "networks.blocks", "networks.encoders", "networks.lite_unet",
               "networks.original_unet", "registry", "hub", "packaging"}  # fmt: skip


def handseg_modules() -> dict[str, Path]:
    """'handseg.x.y' -> its file."""
    modules = {}
    for path in sorted((REPO_ROOT / "handseg").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function (a lazy import is still a
    dependency), leaving out what is imported for type checkers only."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_every_module_has_a_layer_and_imports_only_from_its_own_or_lower():
    modules = {name: path for name, path in handseg_modules().items() if name != "handseg"}
    layer_of = {f"handseg.{name}": i for i, names in enumerate(LAYERS) for name in names}
    assert set(modules) - {"handseg.pretrained"} <= set(layer_of), set(modules) - set(layer_of)
    for name, path in modules.items():
        for imported in imports_of(path):
            if imported in layer_of and imported != name:
                assert layer_of[imported] <= layer_of[name], f"{name} (layer {layer_of[name]}) imports {imported}"


def test_the_model_layer_imports_no_runtime():
    """Networks, HandUNet, the registry, hub loading and packaging know nothing of onnxruntime, the
    runners or the Segmenter: saving a model with its int8 file needs neither."""
    runtime = {"onnxruntime", "onnx", "handseg.backends", "handseg.segmenter", "handseg.export", "gradio", "ray"}
    for name, path in handseg_modules().items():
        if name.removeprefix("handseg.") in MODEL_LAYER:
            imported = {i for i in imports_of(path) if i.split(".")[0] in {"onnxruntime", "onnx", "gradio", "ray"}}
            imported |= imports_of(path) & runtime
            assert not imported, f"{name} imports {sorted(imported)}"


def test_handseg_imports_nothing_of_the_app_training_or_benchmarks():
    for name, path in handseg_modules().items():
        outside = {i for i in imports_of(path) if i.split(".")[0] in ("train", "demo", "benchmarks", "app", "tests")}
        assert not outside, f"{name} imports {sorted(outside)}"


def test_no_import_circle():
    modules = handseg_modules()
    graph = {
        name: {i for i in imports_of(path) if i in modules and i not in ("handseg", name)}
        for name, path in modules.items()
        if name != "handseg"  # the package's names load lazily, by name (PEP 562)
    }

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for nxt in graph.get(path[-1], ()):
            if nxt == start:
                return [*path, start]
            if nxt not in path:
                found = cycle_from(start, [*path, nxt])
                if found:
                    return found
        return None

    for name in graph:
        assert cycle_from(name, [name]) is None, " -> ".join(cycle_from(name, [name]))


def test_the_names_type_checkers_see_are_the_names_the_package_loads():
    """handseg/__init__.py lists its public names twice: for loading on first use, and imported under
    TYPE_CHECKING for IDEs; the two must agree, name for name and module for module."""
    tree = ast.parse((REPO_ROOT / "handseg" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
    seen: dict[str, str] = {}
    for node in block.body:
        if isinstance(node, ast.ImportFrom) and node.module == "handseg":
            seen.update({alias.name: "" for alias in node.names})
        elif isinstance(node, ast.ImportFrom):
            seen.update({alias.name: node.module.removeprefix("handseg.") for alias in node.names})
    loaded = {name: module for module, names in handseg._NAMES.items() for name in names}
    assert {k: v for k, v in seen.items() if v} == loaded
    assert {k for k, v in seen.items() if not v} == set(handseg._NAMESPACES)
    for name in handseg.__all__:
        assert getattr(handseg, name) is not None, name


def test_importing_handseg_is_quick_and_loads_neither_torch_nor_onnx():
    """`import handseg` loads names on first use: a command can be interrupted while torch loads, and
    onnx (build time: export, quantization) never loads at run time."""
    code = (
        "import sys, handseg; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules)); "
        "handseg.Segmenter; print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "['torch']"]


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_process_in_any_order():
    names = [n for n in handseg_modules() if n not in ("handseg", "handseg.__main__", "handseg.ray")]
    for seed in range(3):
        order = random.Random(seed).sample(names, len(names))
        code = f"import importlib\nfor name in {order!r}:\n    importlib.import_module(name)\n"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
