"""The package's layers: which part of gan2shape may import which (the one table of it), checked by
parsing every module's imports with ast.

A part is a top-level module (gan2shape/config.py -> "config") or a subpackage (gan2shape/render/
-> "render"); "gan2shape" is the package's own __init__ (the version), free for all. A part always
may import itself. Imports under ``if TYPE_CHECKING:`` are for type hints only and are not counted.

The floors, bottom up (a part imports only from floors below its own, or its own part as listed):
  infrastructure  errors, atomic, progress, config, device, artifacts, shards
  ground floor    imaging (pictures), render (camera, mesh, rasterizer, warps, shading, the shape prior)
  building blocks model (networks, decoding, losses), stylegan2 (the GAN, training, projection)
  data            the synthetic heads, image folders, contact sheets: below the method, which reads them
  evaluate        SIDE / MAD, baselines, tables: never the method (it scores any depth maps); model
                  only for the roughness it reports, the steps' own smoothness term (model.losses)
  export          PNGs, meshes, media of a reconstructed shape: never the method
  peers           training other reconstruction models (baselines to compare with): never the method
  method          the GAN2Shape steps, the stage loop, GAN-refined media (it may use export's media)
  diagnose        measurements of the method's runs
  cli             everything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gan2shape

PACKAGE = Path(gan2shape.__file__).parent

_INFRA = {"errors", "atomic", "progress", "config", "device", "artifacts"}

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "atomic": set(),
    "progress": set(),
    "config": {"errors"},
    "device": {"errors"},
    "artifacts": {"config", "errors"},
    "shards": {"artifacts", "errors"},
    "imaging": {"atomic", "errors"},
    "render": {"errors"},
    "model": {"render", "errors"},
    "stylegan2": {"imaging"} | _INFRA,
    "data": {"imaging", "render"} | _INFRA,
    "evaluate": {"data", "render", "model", "imaging"} | _INFRA,
    "export": {"render", "model", "imaging"} | _INFRA,
    "peers": {"data", "render", "model", "imaging"} | _INFRA,
    "method": {"export", "data", "stylegan2", "model", "render", "imaging"} | _INFRA,
    "diagnose": {"method", "evaluate", "data", "stylegan2", "model", "render", "imaging"} | _INFRA,
    "cli": {"*"},
}


def part_of(module: str) -> str:
    """'gan2shape.render.prior' -> 'render'; 'gan2shape' -> 'gan2shape'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_part(package: Path, name: str) -> bool:
    """Whether ``name`` is a module or subpackage of the package (the folder ``package``)."""
    return (package / f"{name}.py").exists() or (package / name).is_dir()


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Name)
        and test.id == "TYPE_CHECKING"
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every gan2shape import in a file of ``package`` (relative ones
    resolved), at any depth (function-level imports count), except those under ``if TYPE_CHECKING:``."""
    module = _module_name(path, package)
    dotted = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.split(".")[0] == "gan2shape")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = dotted.split(".")[: len(dotted.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != "gan2shape":
                    continue
                if target == "gan2shape":  # from gan2shape import imaging -> that part; __version__ -> the root
                    found.extend(
                        (child.lineno, f"gan2shape.{a.name}" if _is_part(package, a.name) else "gan2shape")
                        for a in child.names
                    )
                else:
                    found.append((child.lineno, target))
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def layer_violations(package: Path = PACKAGE) -> list[str]:
    """Every import that the table does not allow, as 'file:line: part imports other', and every part
    the table does not know."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        part = part_of(_module_name(path, package))
        if part == "gan2shape":
            continue
        if part not in ALLOWED:
            problems.append(
                f"{rel}: the part {part!r} is not in the layer table: add it to ALLOWED in "
                f"tests/test_layers.py with the parts it may import (and its floor in the docstring)"
            )
            continue
        for line, target in imports_of(path, package):
            other = part_of(target)
            known = other in ALLOWED or other == "gan2shape" or _is_part(package, other)
            if other in (part, "gan2shape") or "*" in ALLOWED[part]:
                continue
            if not known:
                problems.append(f"{rel}:{line}: imports {target}, which is not a module of the package")
            elif other not in ALLOWED[part]:
                problems.append(
                    f"{rel}:{line}: {part} imports {target} ({other}); {part} may import only {sorted(ALLOWED[part])}"
                )
    return problems


def test_imports_follow_the_layer_table():
    problems = layer_violations()
    assert not problems, "imports against the layers (tests/test_layers.py):\n" + "\n".join(problems)


def test_the_table_is_acyclic():
    """A part never reaches itself again through the allowed imports (a strict order of floors)."""

    def reach(part: str, seen: frozenset[str]) -> None:
        for other in ALLOWED[part] - {"*"}:
            assert other not in seen, f"layer cycle: {' -> '.join(seen)} -> {other}"
            reach(other, seen | {other})

    for part in ALLOWED:
        reach(part, frozenset({part}))


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "gan2shape"
    for path in PACKAGE.rglob("*.py"):
        dest = root / path.relative_to(PACKAGE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(path.read_text())
    return root


@pytest.mark.parametrize(
    "file, line",
    [
        ("evaluate/metrics.py", "from gan2shape.method.steps import make_context"),
        ("render/camera.py", "from ..model import networks"),
        ("export/mesh.py", "    from gan2shape import method"),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path, file, line):
    root = _copy_package(tmp_path)
    target = root / file
    text = target.read_text()
    if line.startswith("    "):  # inside a function
        text += f"\n\ndef _probe():\n{line}\n"
    else:
        text += f"\n{line}\n"
    target.write_text(text)
    problems = layer_violations(root)
    assert len(problems) == 1 and problems[0].startswith(f"gan2shape/{file}:"), problems


def test_type_checking_imports_are_not_counted(tmp_path):
    root = _copy_package(tmp_path)
    target = root / "render/camera.py"
    target.write_text(
        target.read_text() + "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from gan2shape.method.steps import Context\n"
    )
    assert layer_violations(root) == []


def test_an_unknown_part_asks_to_be_added(tmp_path):
    root = _copy_package(tmp_path)
    (root / "newpart").mkdir()
    (root / "newpart" / "__init__.py").write_text("from gan2shape.render import Camera\n")
    problems = layer_violations(root)
    assert len(problems) == 1 and "'newpart' is not in the layer table" in problems[0], problems
