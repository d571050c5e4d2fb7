"""Checkov's findings against the waivers, each with its reason (``python -m infra.checks.checkov_waivers``).

Checkov runs with ``--soft-fail -o json`` (infra/checks/check_infra.sh); this reads its reports and fails on
every finding that no waiver in ``infra/checks/checkov-waivers.yaml`` covers, on a file Checkov could not parse,
on a waiver without a reason, and on a waiver that covers nothing any more (fixed findings must not leave
blanket waivers behind).

A waiver names a check and the reason it does not apply or is accepted; ``resources`` (shell patterns on
Checkov's resource names, e.g. ``aws_iam_policy_document.kms`` or ``Deployment.herald.*``) narrows it, or it
covers that check everywhere::

    waivers:
      - check: CKV_DOCKER_2
        reason: The port of /health depends on the service; compose and the chart probe each one.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

WAIVERS = Path("infra/checks/checkov-waivers.yaml")
MIN_REASON = 20  # characters: "n/a" or "accepted" is not a reason.


@dataclass(frozen=True)
class Waiver:
    check: str
    reason: str
    resources: tuple[str, ...] = ()

    def covers(self, finding: Finding) -> bool:
        if finding.check != self.check:
            return False
        return not self.resources or any(fnmatchcase(finding.resource, pattern) for pattern in self.resources)


@dataclass(frozen=True)
class Finding:
    check: str
    name: str
    resource: str
    file: str


def load_waivers(document: Any) -> tuple[list[Waiver], list[str]]:
    """The waivers of a parsed waiver file, and what is wrong with it (a waiver without check or reason)."""
    waivers: list[Waiver] = []
    problems: list[str] = []
    entries = document.get("waivers") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return [], ["the waiver file must be a mapping with a `waivers` list"]
    for number, entry in enumerate(entries, 1):
        check = entry.get("check") if isinstance(entry, dict) else None
        reason = entry.get("reason") if isinstance(entry, dict) else None
        resources = entry.get("resources", []) if isinstance(entry, dict) else []
        if not isinstance(check, str) or not check:
            problems.append(f"waiver {number}: no `check`")
        elif not isinstance(reason, str) or len(reason.strip()) < MIN_REASON:
            problems.append(f"waiver {number} ({check}): a waiver needs a `reason` (at least {MIN_REASON} characters)")
        elif not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            problems.append(f"waiver {number} ({check}): `resources` must be a list of patterns")
        else:
            waivers.append(Waiver(check, reason.strip(), tuple(resources)))
    return waivers, problems


def findings(report: Any) -> list[Finding]:
    """The failed checks of Checkov's JSON output: one report, or a list of them (one per framework)."""
    reports = report if isinstance(report, list) else [report]
    return [
        Finding(failed["check_id"], failed["check_name"], failed["resource"], failed["file_path"])
        for one in reports
        for failed in one.get("results", {}).get("failed_checks", [])
    ]


def parsing_errors(report: Any) -> list[str]:
    """Files Checkov could not parse: it checks nothing in them, so they must fail rather than pass silently."""
    reports = report if isinstance(report, list) else [report]
    return [
        f"checkov could not parse {path}"
        for one in reports
        for path in one.get("results", {}).get("parsing_errors", [])
    ]


def judge(all_findings: list[Finding], waivers: list[Waiver]) -> tuple[list[str], list[str]]:
    """(waived findings with their reason, problems): unwaived findings and waivers that cover nothing."""
    waived: list[str] = []
    problems: list[str] = []
    used: set[Waiver] = set()
    for finding in all_findings:
        waiver = next((w for w in waivers if w.covers(finding)), None)
        where = f"{finding.check} {finding.resource} ({finding.file}): {finding.name}"
        if waiver is None:
            problems.append(f"not waived: {where}")
        else:
            used.add(waiver)
            waived.append(f"{where}\n      waived: {waiver.reason}")
    for waiver in waivers:
        if waiver not in used:
            scope = f" on {', '.join(waiver.resources)}" if waiver.resources else ""
            problems.append(f"waiver of {waiver.check}{scope} covers no finding: remove it")
    return waived, problems


def main(reports: list[Path]) -> int:
    waivers, problems = load_waivers(yaml.safe_load(WAIVERS.read_text()))
    parsed = [json.loads(path.read_text() or "[]") for path in reports]
    problems += [error for report in parsed for error in parsing_errors(report)]
    all_findings = [finding for report in parsed for finding in findings(report)]
    waived, unwaived = judge(all_findings, waivers)
    for line in waived:
        print(f"  waived {line}")
    for line in problems + unwaived:
        print(f"  FAIL   {line}")
    return 1 if problems or unwaived else 0


if __name__ == "__main__":
    sys.exit(main([Path(arg) for arg in sys.argv[1:]]))
