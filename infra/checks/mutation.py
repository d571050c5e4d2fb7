"""The mutation score of shared/'s pure modules (``make mutation``), per module, against a floor.

Reads what ``mutmut run`` left in ``mutants/`` for the modules ``[tool.mutmut] only_mutate`` names, leaves
out the equivalent mutants listed in :data:`EQUIVALENTS` (each with its change and why no test can tell
it from the original), prints the kill rate of every module and the survivors, and exits 1 when a
module is below :data:`FLOOR`, or when an exclusion no longer matches its mutant.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

FLOOR = 0.90
EQUIVALENTS = Path("tests/unit/mutation_equivalents.toml")
# A timeout is a mutant the tests noticed (it looped); "caught by type check" is off in our config.
DETECTED = frozenset({"killed", "timeout", "caught by type check"})


@dataclass
class Module:
    path: str
    killed: int = 0
    excluded: int = 0
    missed: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut's status

    @property
    def counted(self) -> int:
        return self.killed + len(self.missed)

    @property
    def rate(self) -> float:
        return self.killed / self.counted if self.counted else 1.0


def changed_lines(mutant: str, path: str) -> list[str]:
    """The mutant's lines as mutmut wrote them (the ``+`` side of its diff), stripped."""
    diff = get_diff_for_mutant(mutant, path=Path(path)).splitlines()
    return [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]


def _row(module: Module) -> str:
    return f"{module.path:<26} {module.killed:>7} {len(module.missed):>7} {module.excluded:>11} {module.rate:>7.1%}"


def main() -> int:
    modules = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    equivalents = {entry["mutant"]: entry for entry in tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])}
    problems: list[str] = []
    results: list[Module] = []
    seen: set[str] = set()
    for path in modules:
        meta = Path("mutants") / f"{path}.meta"
        if not meta.exists():
            problems.append(f"{path}: no results in {meta}; run mutmut first")
            continue
        module = Module(path)
        for mutant, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = status_by_exit_code[exit_code]
            if mutant in equivalents:
                seen.add(mutant)
                entry = equivalents[mutant]
                if entry["change"] not in changed_lines(mutant, path):
                    problems.append(
                        f"{EQUIVALENTS}: {mutant} no longer changes {entry['change']!r} (the code moved): "
                        f"look at it again with `mutmut show {mutant}`"
                    )
                elif status in DETECTED:
                    problems.append(f"{EQUIVALENTS}: {mutant} is killed now: it was not equivalent, remove it")
                module.excluded += 1
            elif status in DETECTED:
                module.killed += 1
            else:
                module.missed[mutant] = status
        results.append(module)
    problems += [f"{EQUIVALENTS}: {mutant} is not a mutant of these modules" for mutant in equivalents.keys() - seen]

    print(f"{'module':<26} {'killed':>7} {'missed':>7} {'equivalent':>11} {'rate':>7}")
    total = Module("all")
    for module in results:
        print(_row(module))
        if module.rate < FLOOR:
            problems.append(f"{module.path}: {module.rate:.1%} of its mutants killed, below the floor of {FLOOR:.0%}")
        total.killed += module.killed
        total.excluded += module.excluded
        total.missed.update(module.missed)
    print(_row(total))
    for module in results:
        for mutant, status in module.missed.items():
            print(f"  {status}: {mutant}: {' / '.join(changed_lines(mutant, module.path))}")
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
