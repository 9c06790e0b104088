"""The house rules of the layout (docs/architecture.md), checked on the source itself:
imports point down the stages of the data flow, functions stay short, the CLI stays thin, and
`streamlift --help` does not pay for torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "streamlift"

# Each package's level in the data flow; a module may import its own package or a lower level.
LEVELS = {
    "streamlift.errors": 0,
    "streamlift.kernels": 1, "streamlift.skeleton": 1, "streamlift.paths": 1,
    "streamlift.geometry": 1, "streamlift.device": 1, "streamlift.progress": 1,
    "streamlift.sources": 1,
    "streamlift.windows": 2, "streamlift.metrics": 2, "streamlift.virtual_camera": 2,
    "streamlift.smoothing": 2,
    "streamlift.checkpoint": 2, "streamlift.data": 2, "streamlift.rig": 2,
    "streamlift.lifter": 3, "streamlift.prior": 3,
    "streamlift.train": 4, "streamlift.eval": 4, "streamlift.serve": 4, "streamlift.viz": 4,
    "streamlift.export": 4,
    "streamlift.cli": 5,
}
MAX_FUNCTION_LINES = 60
MAX_CLI_LINES = 570  # ~25 lines a command (22 commands): parser wiring from dataclasses, thin handlers
MAX_HANDLER_LINES = 20  # a cmd_* function: check what only the CLI knows, call the library


def unit(module: str) -> str:
    """The package (or top-level module) of LEVELS a module belongs to."""
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in LEVELS:
            return name
    raise KeyError(module)


def modules():
    """(module name, path) of every module of the package, kernels included."""
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path
    for path in sorted((ROOT / "kernels").glob("*.py")):
        name = "streamlift.kernels" + ("" if path.stem == "__init__" else "." + path.stem)
        yield name, path


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every streamlift import in a file, also those inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(n, m) for n, m in out if m == "streamlift" or m.startswith("streamlift.")]


def test_imports_point_down_the_data_flow():
    upward = []
    for name, path in modules():
        if name in ("streamlift", "streamlift.__main__"):
            continue
        here = unit(name)
        for line, target in imports(path):
            if target == "streamlift":
                continue
            there = unit(target)
            if there != here and LEVELS[there] >= LEVELS[here]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} "
                              f"(level {LEVELS[there]} from level {LEVELS[here]})")
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import():
    assert LEVELS[unit("streamlift.serve.server")] > LEVELS[unit("streamlift.lifter.model")]
    assert unit("streamlift.cli.serve") == "streamlift.cli"
    with pytest.raises(KeyError):
        unit("streamlift.nowhere")


def long_functions(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            n = node.end_lineno - start + 1
            triton = any("triton.jit" in ast.unparse(d) for d in node.decorator_list)
            if n > MAX_FUNCTION_LINES and not triton:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_60_lines():
    files = [p for _, p in modules()] + sorted((ROOT / "benchmarks").glob("*.py")) + \
        sorted((ROOT / "scripts").glob("*.py"))
    found = [f for p in files for f in long_functions(p)]
    assert not found, "functions over 60 lines:\n" + "\n".join(found)


def test_the_cli_is_thin():
    lines = sum(len(p.read_text().splitlines()) for p in (PKG / "cli").glob("*.py"))
    assert lines <= MAX_CLI_LINES, f"streamlift/cli has {lines} lines"
    long = [f"{p.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in (PKG / "cli").glob("*.py") for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, ast.FunctionDef) and n.name.startswith("cmd_")
            and n.end_lineno - n.lineno + 1 > MAX_HANDLER_LINES]
    assert not long, f"handlers doing the library's work: {long}"


def test_help_does_not_import_torch():
    code = ("import sys\nfrom streamlift.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules, 'zmq' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False False"
