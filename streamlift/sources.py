"""What the package's own sources say of a dataclass's fields (default, metadata) and of its
module-level constants, read with `ast` without importing the module: the CLI builds its flags
from the option dataclasses this way, so that `streamlift --help` imports no torch."""

from __future__ import annotations

import ast
import functools
from pathlib import Path


@functools.cache
def _source(module: str) -> ast.Module:
    path = Path(__file__).resolve().parent.joinpath(*module.split(".")[1:])
    return ast.parse((path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
                     .read_text())


def _value(node: ast.expr, module: str):
    """An expression of a module's source, with the module-level constants it names."""
    names = {n.id: constant(f"{module}:{n.id}") for n in ast.walk(node) if isinstance(n, ast.Name)}
    return eval(compile(ast.Expression(node), module, "eval"), {"__builtins__": {}}, names)


def constant(where: str):
    """The value of a module-level constant "module:NAME" (followed through imports)."""
    module, name = where.split(":")
    for st in _source(module).body:
        if isinstance(st, ast.Assign) and name in [getattr(t, "id", "") for t in st.targets]:
            return _value(st.value, module)
        for a in st.names if isinstance(st, ast.ImportFrom) else ():
            if (a.asname or a.name) == name:
                return constant(f"{st.module}:{a.name}")
    raise LookupError(f"{name} is not a constant of {module}")


def dataclass_node(where: str) -> ast.ClassDef:
    module, cls = where.split(":")
    return next(n for n in _source(module).body if getattr(n, "name", "") == cls)


@functools.cache
def fields(where: str) -> dict[str, tuple[object, dict]]:
    """name -> (default, metadata) of the fields of dataclass "module:Class" that have metadata."""
    module, body = where.split(":")[0], dataclass_node(where).body
    calls = [(n.target.id, {k.arg: k.value for k in n.value.keywords}) for n in body
             if isinstance(n, ast.AnnAssign) and isinstance(n.value, ast.Call)]
    return {name: (_value(kw["default"], module), _value(kw["metadata"], module))
            for name, kw in calls if "metadata" in kw}
