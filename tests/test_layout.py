"""The layout rules (scripts/check_layout.py) hold for the package and scripts/, and the
checker finds what it is for: import cycles (lazy ones and ones through a package's
__init__), long modules and long functions (the package's and the scripts')."""
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def layout():
    spec = importlib.util.spec_from_file_location("check_layout", ROOT / "scripts" / "check_layout.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_layout"] = module
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_cycle_and_no_long_module_or_function(layout):
    assert layout.violations() == []


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "rledit_ray" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_lazy_import_cycle_is_found(layout, tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "a.py": "from rledit_ray import b\n",
                               "b.py": "def f():\n    from rledit_ray.a import x\n"})
    assert layout.cycles(layout.import_graph(root)) == [["rledit_ray.a", "rledit_ray.b"]]


def test_a_cycle_through_a_package_init_is_found_and_sibling_imports_are_not_one(layout, tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "p/__init__.py": "from rledit_ray.p.x import f\nNAME = 1\n",
                               "p/x.py": "from rledit_ray.p.y import g\ndef f(): pass\n", "p/y.py": "def g(): pass\n"})
    assert layout.cycles(layout.import_graph(root)) == []
    (root / "rledit_ray" / "p" / "y.py").write_text("from rledit_ray.p import NAME\ndef g(): pass\n")
    assert layout.cycles(layout.import_graph(root)) == [["rledit_ray.p", "rledit_ray.p.x", "rledit_ray.p.y"]]


def test_long_modules_and_functions_are_named(layout, tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(layout.MAX_FUNCTION_LINES))
    root = _package(tmp_path, {"__init__.py": "", "long.py": f"def f():\n{body}\n" + "#\n" * 400})
    found = layout.long_modules(root) + layout.long_functions(root)
    assert len(found) == 2 and "long.py" in found[0] and "f: 61 lines" in found[1]


def test_scripts_are_held_to_the_size_rules_and_named_from_the_root(layout, tmp_path, monkeypatch):
    body = "\n".join(f"    x{i} = {i}" for i in range(layout.MAX_FUNCTION_LINES))
    most, longest = layout.MAX_MODULE_LINES, layout.MAX_FUNCTION_LINES
    root = _package(tmp_path, {"__init__.py": ""})
    for name, text in {"top.py": f"def f():\n{body}\n", "tool/__init__.py": "", "tool/deep.py": "#\n" * (most + 1)}.items():
        path = root / "scripts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert layout.long_modules(root) == [f"scripts/tool/deep.py: {most + 1} lines (max {most})"]
    assert layout.long_functions(root) == [f"scripts/top.py:1 f: {longest + 1} lines (max {longest})"]
    monkeypatch.setattr(layout, "DECLARATIVE", {"scripts.top.f"})
    assert layout.long_functions(root) == []
    assert set(layout.import_graph(root)) == {"rledit_ray"}  # the cycle check covers the package only
