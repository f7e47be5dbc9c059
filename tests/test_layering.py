"""The package's floors (DESIGN.md, sections 2 and 8): the backend at the bottom, then ops and the
optimizers, then layers, then models. Every import of a lamina module -- at the top of a file or
inside a function, absolute or relative -- goes down or sideways, never up. Read from the source
(ast), so a lazy import inside a function counts as much as one at the top."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# what each of these parts may import from the rest of lamina (besides itself)
FLOORS = {
    "backend": set(),
    "ops": {"backend"},
    "optimizers": {"backend", "saving"},  # saving: the object registry (its own imports of layers are lazy)
    "tree": set(),
    "_bounding_boxes": {"backend", "ops"},
    "layers": {"backend", "ops", "activations", "constraints", "initializers", "regularizers", "dtype_policies",
               "metrics", "saving", "_traceback",   # _traceback imports nothing from lamina
               "_bounding_boxes", "tree"},          # box formats for the image layers' dict inputs; keras.tree
}


def _module_parts(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path, source=None):
    """(line, top-level part of lamina) for every import of a lamina module in the file (or in
    `source`, read as if it were that file)."""
    parts = _module_parts(path)
    package = parts if path.endswith("__init__.py") else parts[:-1]
    if source is None:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    tree = ast.parse(source, filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # `from .. import x`: x is a top-level part
                    for alias in node.names:
                        yield node.lineno, alias.name
                    continue
                yield node.lineno, target[0]
            elif node.module and (node.module == "lamina" or node.module.startswith("lamina.")):
                target = node.module.split(".")[1:]
                if target:
                    yield node.lineno, target[0]
                else:
                    for alias in node.names:
                        yield node.lineno, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lamina."):
                    yield node.lineno, alias.name.split(".")[1]


def _files(part):
    top = os.path.join(ROOT, part)
    if os.path.isfile(top + ".py"):
        yield top + ".py"
        return
    for d, _, names in os.walk(top):
        for n in sorted(names):
            if n.endswith(".py"):
                yield os.path.join(d, n)


@pytest.mark.parametrize("part", sorted(FLOORS))
def test_imports_go_down(part):
    files = list(_files(part))
    assert files, f"no Python files under {part}/"
    upward = []
    for path in files:
        for line, target in _imports(path):
            if target != part and target not in FLOORS[part]:
                upward.append(f"{os.path.relpath(path, ROOT)}:{line} imports lamina.{target}")
    assert not upward, f"{part}/ may import only {sorted(FLOORS[part])} from lamina; found:\n" + "\n".join(upward)


def test_the_check_sees_lazy_and_absolute_imports():
    """The scanner finds upward imports made inside a function, relative or absolute."""
    src = ("def f():\n    from ..models.model import Model\n    return Model\n"
           "def g():\n    import lamina.callbacks\n    from lamina import applications\n    from .. import models\n")
    found = list(_imports(os.path.join(ROOT, "layers", "probe.py"), src))
    assert found == [(2, "models"), (5, "callbacks"), (6, "applications"), (7, "models")]
    assert list(_imports(os.path.join(ROOT, "layers", "sub", "__init__.py"), "from ... import ops\n")) == [(1, "ops")]
