"""The image's lock file keeps up with pyproject.toml (``python -m infra.checks.check_lock``).

``requirements.lock`` is compiled by pip-tools from ``[project].dependencies`` and the build backend
(``bash infra/checks/check_infra.sh update-lock``). This check fails when a dependency or a build requirement
has no pin in the lock, when a pin falls outside the range pyproject.toml asks for (someone narrowed a range
and did not recompile), when a pin carries no hash (``pip install --require-hashes`` would refuse the whole
lock) or when the Dockerfile stops installing from the lock.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK = Path("requirements.lock")
PYPROJECT = Path("pyproject.toml")
DOCKERFILE = Path("Dockerfile")
REGENERATE = "bash infra/checks/check_infra.sh update-lock"
# The image runs CPython 3.11 on Linux: markers are evaluated for it, whichever machine runs the check.
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass
class Pin:
    version: Version
    hashes: int = 0


@dataclass
class Lock:
    pins: dict[str, Pin] = field(default_factory=dict)
    # Requirement lines that are not `name==version` (ranges, URLs, editables): a lock must not have them.
    loose: list[str] = field(default_factory=list)


def parse_lock(text: str) -> Lock:
    """Read pip-compile's output: one ``name==version \\`` line per package, its ``--hash`` lines after it."""
    lock = Lock()
    current: Pin | None = None
    # Join backslash continuations: a package and its hashes become one logical line.
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match:
            current = Pin(Version(match.group(2)), len(_HASH.findall(line)))
            lock.pins[canonicalize_name(match.group(1))] = current
        elif line.startswith("--hash=") and current is not None:
            current.hashes += len(_HASH.findall(line))
        elif not line.startswith("--"):
            lock.loose.append(line)
    return lock


def wanted(pyproject: dict[str, Any]) -> list[Requirement]:
    """The image's requirements: the runtime dependencies and the build backend of the project itself."""
    lines = [
        *pyproject.get("project", {}).get("dependencies", []),
        *pyproject.get("build-system", {}).get("requires", []),
    ]
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(IMAGE_ENVIRONMENT)]


def lock_problems(pyproject: dict[str, Any], lock_text: str) -> list[str]:
    """What is wrong between pyproject.toml and the lock; empty when the lock serves it."""
    lock = parse_lock(lock_text)
    problems = [f"not pinned with == in the lock: {line}" for line in lock.loose]
    for requirement in wanted(pyproject):
        pin = lock.pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} does not admit the locked {requirement.name}=={pin.version}")
    problems += [f"{name}=={pin.version} has no --hash" for name, pin in lock.pins.items() if not pin.hashes]
    return problems


def dockerfile_problems(dockerfile_text: str) -> list[str]:
    """The image must install its dependencies from the lock, hashes checked, and the project without deps."""
    text = dockerfile_text.replace("\\\n", " ")
    problems = []
    if not re.search(rf"pip install [^\n]*--require-hashes [^\n]*-r {LOCK}", text):
        problems.append(f"the Dockerfile must `pip install --require-hashes -r {LOCK}`")
    if not re.search(r"pip install [^\n]*--no-deps [^\n]*/app", text):
        problems.append("the Dockerfile must install the project with --no-deps (its dependencies come from the lock)")
    return problems


def main(root: Path) -> int:
    pyproject = tomllib.loads((root / PYPROJECT).read_text())
    problems = lock_problems(pyproject, (root / LOCK).read_text())
    problems += dockerfile_problems((root / DOCKERFILE).read_text())
    for problem in problems:
        print(problem)
    if problems:
        print(f"regenerate the lock with: {REGENERATE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path.cwd()))
