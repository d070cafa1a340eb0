"""Wheels to install DVC offline on the GPU machine (CPython 3.12, manylinux x86_64, no network).

    python3 tools/dvc_wheels.py pins            # dvc's dependency closure as installed here, as
                                                  # NAME==VERSION lines, minus the machine's packages
    python3 tools/dvc_wheels.py check .whl      # every Requires-Dist of every wheel in .whl is met
                                                  # by another wheel or by a machine package

`pins` reads the installed distributions' metadata (importlib.metadata); `check` reads each
wheel's METADATA. Requirements are evaluated for the target (CPython 3.12 on Linux x86_64) with
no extras. The machine's own packages (MACHINE) are trusted by name: their versions there are not
known here. tools/gpu_dvc_repro.sh runs `check` before it installs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # pip vendors packaging; the GPU machine has pip
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
    from pip._vendor.packaging.version import Version

#: on the GPU machine already: named by the task, or installed with torch (its Requires-Dist)
MACHINE = {
    "torch",
    "numpy",
    "h5py",
    "pyyaml",
    "tqdm",
    "imageio",
    "pillow",
    "filelock",
    "networkx",
    "setuptools",
    "sympy",
    "mpmath",
    "jinja2",
    "markupsafe",
    "triton",
}

TARGET = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}


def _applies(req: Requirement) -> bool:
    """Whether a requirement holds on the target without extras."""
    return req.marker is None or req.marker.evaluate({**default_environment(), **TARGET})


def closure(root: str = "dvc") -> dict[str, str]:
    """{canonical name: installed version} of ``root`` and everything it needs here, recursively."""
    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        dist = importlib.metadata.distribution(name)
        found[name] = dist.version
        todo.extend(r.name for r in map(Requirement, dist.requires or []) if _applies(r))
    return found


def _wheel_metadata(path: Path) -> tuple[str, Version, list[Requirement]]:
    name, version, _, _ = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(meta).decode("utf-8"))
    return canonicalize_name(name), version, [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def check(folder: Path) -> list[str]:
    """Problems of a wheel folder: a requirement no wheel or machine package meets, a package with
    two versions. Empty when the set is complete."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        return [f"{folder} holds no wheels"]
    versions: dict[str, list[Version]] = {}
    needs: list[tuple[str, Requirement]] = []
    for path in wheels:
        name, version, reqs = _wheel_metadata(path)
        versions.setdefault(name, []).append(version)
        needs += [(path.name, r) for r in reqs if _applies(r)]
    problems = [f"{name}: several versions {sorted(map(str, v))}" for name, v in versions.items() if len(v) > 1]
    for wheel, req in needs:
        name = canonicalize_name(req.name)
        if name in versions:
            if not any(req.specifier.contains(v, prereleases=True) for v in versions[name]):
                problems.append(f"{wheel} needs {req}, the set has {name} {versions[name][0]}")
        elif name not in MACHINE:
            problems.append(f"{wheel} needs {req}: no wheel, not a machine package")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pins", help="NAME==VERSION of dvc's closure installed here, minus the machine's packages")
    p_check = sub.add_parser("check", help="check that a wheel folder's requirements are complete")
    p_check.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "pins":
        for name, version in sorted(closure().items()):
            if name not in MACHINE:
                print(f"{name}=={version}")
        return 0
    problems = check(args.folder)
    for line in problems:
        print(line, file=sys.stderr)
    n = len(list(args.folder.glob("*.whl")))
    print(f"{args.folder}: {n} wheels, " + (f"{len(problems)} problem(s)" if problems else "requirements complete"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
