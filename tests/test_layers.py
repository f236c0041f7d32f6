# The rules of the house (../shared/LAYOUT.md), checked by parsing every import; each rule is also shown to fail.
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("station", "drivers", "calib")
MAX_LINES = 400
WINGS = ("station.lab", "station.town")
# Heavy or hardware libraries that `import station`, `station.config` and `station.cli` must not need.
OPTIONAL_LIBS = ("cv2", "paho", "gpiozero", "tinydb")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (a `from X import y` counts as X, and X.y when that is a module)
    line: int
    top: bool  # at module level (runs on import), not inside a function or under TYPE_CHECKING


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(root: Path, path: Path) -> list[Import]:
    """Every import in a file, lazy ones inside functions included, resolved to dotted module names."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            elif isinstance(child, ast.Import):
                found.extend(Import(name, a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append(Import(name, base, child.lineno, top))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    if (root / Path(*sub.split("."))).is_dir() or (root / Path(*sub.split("."))).with_suffix(
                            ".py").is_file():
                        found.append(Import(name, sub, child.lineno, top))
            else:
                visit(child, top)

    visit(tree, True)
    return found


def source_files(root: Path) -> list[Path]:
    return sorted(p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py"))


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Each broken rule as 'rule N: module:line imports target' (or a cycle / size line)."""
    out: list[str] = []
    graph: dict[str, set[str]] = {}
    for path in source_files(root):
        mod = module_name(root, path)
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out.append(f"size: {mod} has {lines} lines (at most {MAX_LINES})")
        for imp in imports_of(root, path):
            t, where = imp.target, f"{mod}:{imp.line} imports {imp.target}"
            ours = any(within(t, p) for p in PACKAGES)
            if imp.top and ours and t != mod:
                graph.setdefault(mod, set()).add(t)
            if within(mod, "drivers") and (within(t, "station") or within(t, "calib")):
                out.append(f"rule 1: {where} (drivers/ stands below everything)")
            if within(mod, "station.protocol") and within(t, "station") and not (
                    within(t, "station.protocol") or t in ("station", "station.errors")):
                out.append(f"rule 2: {where} (protocol/ imports only station.errors)")
            if within(mod, "station.assay") and ours and not (
                    within(t, "station.assay") or t in ("station", "station.striptypes")):
                out.append(f"rule 3: {where} (assay/ imports only station.striptypes)")
            for wing in WINGS:
                if within(t, wing) and not within(mod, "station.lab") and not within(mod, wing):
                    lazy_cli = within(mod, "station.cli") and not imp.top
                    if not lazy_cli:
                        out.append(f"rule 4: {where} (only the lab, the wing itself and lazy CLI registration "
                                   "may import a wing)")
            if within(mod, "station") and within(t, "calib"):
                out.append(f"rule 5: {where} (station never imports calib/)")
            if within(t, "station.workflow") and not (within(mod, "station.workflow") or mod == "station.app"
                                                      or within(mod, "station.lab")):
                out.append(f"rule 7: {where} (only app.py and workflow/ drive the station's state)")
    out += [f"cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among module-level imports (a package's __init__ counts as the package)."""
    found, state = [], {}

    def targets(mod: str) -> set[str]:
        # Importing a.b.c runs a and a.b first: parents are edges too.
        out = set()
        for t in graph.get(mod, ()):
            parts = t.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        return {t for t in out if t != mod and not within(mod, t)}

    def walk(mod: str, stack: list[str]) -> None:
        state[mod] = "open"
        for t in sorted(targets(mod)):
            if state.get(t) == "open":
                found.append([*stack[stack.index(t):], t] if t in stack else [*stack, t])
            elif t not in state:
                walk(t, [*stack, t])
        state[mod] = "done"

    for mod in sorted(graph):
        if mod not in state:
            walk(mod, [mod])
    return found


def test_the_house_keeps_its_rules():
    assert violations(ROOT) == []


def test_the_firmware_imports_without_heavy_libraries():
    """Rule 6: a technician's `station --help` or config check works on a Pi whose OpenCV or paho is broken."""
    blocker = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {OPTIONAL_LIBS!r}:
                    raise ImportError("blocked for the test: " + name)
        sys.meta_path.insert(0, Block())
        import station, station.config, station.cli, station.errors, station.protocol
        station.cli.build_parser()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {OPTIONAL_LIBS!r})
        assert not heavy, heavy
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# ---- each rule fails when it is broken: a small synthetic tree ----------------------------------------------
SYNTHETIC = {
    "drivers/__init__.py": "",
    "drivers/cam.py": "from station.errors import StationError\n",                       # rule 1
    "calib/__init__.py": "",
    "calib/cli.py": "import station.app\n",                                            # allowed
    "station/__init__.py": "",
    "station/errors.py": "",
    "station/striptypes.py": "",
    "station/protocol/__init__.py": "",
    "station/protocol/wire.py": "from station import errors\nfrom station.journal import Journal\n",  # rule 2
    "station/assay/__init__.py": "",
    "station/assay/lines.py": "from station.striptypes import X\nfrom station.decide import verdict\n",  # rule 3
    "station/decide/__init__.py": "",
    "station/decide/verdict.py": "import calib.cli\n",                                   # rule 5
    "station/journal.py": "",
    "station/app.py": "from station.lab import rig\nfrom station.workflow import job\n",  # rule 4; app may drive
    "station/record.py": "from station.workflow.job import Job\n",                       # rule 7
    "station/cli/__init__.py": "def build():\n    from station.town import cli\n",         # lazy: allowed
    "station/cli/run.py": "from station.town import cli\n",                              # rule 4 (at top)
    "station/workflow/__init__.py": "",
    "station/workflow/job.py": "",
    "station/ring_a.py": "import station.ring_b\n",                                      # cycle
    "station/ring_b.py": "from station import ring_a\n",
    "station/lab/__init__.py": "",
    "station/lab/rig.py": "from station.town import store\n",                            # lab may use the town
    "station/town/__init__.py": "",
    "station/town/store.py": "from station.lab import rig\n",                            # rule 4: town -> lab
    "station/town/cli.py": "",
    "station/big.py": "x = 1\n" * (MAX_LINES + 1),                                       # size
}


@pytest.fixture
def synthetic(tmp_path):
    for rel, text in SYNTHETIC.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_each_rule_fails_when_broken(synthetic):
    found = violations(synthetic)
    text = "\n".join(found)
    assert "rule 1: drivers.cam:1 imports station.errors" in text
    assert "rule 2: station.protocol.wire:2 imports station.journal" in text
    assert "station.protocol.wire:1" not in text  # station.errors is allowed
    assert "rule 3: station.assay.lines:2 imports station.decide" in text
    assert "station.assay.lines:1" not in text
    assert "rule 4: station.app:1 imports station.lab" in text
    assert "rule 4: station.cli.run:1 imports station.town" in text
    assert "rule 4: station.town.store:1 imports station.lab" in text
    assert not any(f.startswith(("rule 4: station.cli:", "rule 4: station.lab.rig")) for f in found)  # lazy CLI, lab
    assert "rule 5: station.decide.verdict:1 imports calib" in text
    assert "rule 7: station.record:1 imports station.workflow" in text
    assert not any(f.startswith("rule 7: station.app") for f in found)
    assert not any(f.startswith("rule") and ": calib.cli:" in f for f in found)  # calib may import station
    assert "cycle: station.ring_a -> station.ring_b -> station.ring_a" in text
    assert f"size: station.big has {MAX_LINES + 1} lines" in text
