"""Checkov's findings against the waiver file: unwaived findings, reasonless and stale waivers fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.checks import checkov_waivers
from infra.checks.checkov_waivers import Finding, Waiver

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REASON = "the services read their settings from the environment"


def report(*failed: tuple[str, str]) -> dict[str, object]:
    checks = [{"check_id": c, "check_name": f"{c} title", "resource": r, "file_path": "/x.yaml"} for c, r in failed]
    return {"check_type": "kubernetes", "results": {"failed_checks": checks}}


def test_findings_reads_one_report_or_a_list_of_them() -> None:
    one = report(("CKV_K8S_35", "Deployment.default.herald-gateway"))
    assert checkov_waivers.findings(one) == [
        Finding("CKV_K8S_35", "CKV_K8S_35 title", "Deployment.default.herald-gateway", "/x.yaml")
    ]
    assert len(checkov_waivers.findings([one, one])) == 2
    # Checkov's report of a framework that found nothing to scan.
    assert checkov_waivers.findings({"passed": 0, "failed": 0}) == []


def test_a_file_checkov_could_not_parse_is_a_problem() -> None:
    broken = {"check_type": "kubernetes", "results": {"failed_checks": [], "parsing_errors": ["/x.yaml"]}}
    assert checkov_waivers.parsing_errors([broken, report()]) == ["checkov could not parse /x.yaml"]


def test_a_waived_finding_passes_with_its_reason_and_an_unwaived_one_fails() -> None:
    found = checkov_waivers.findings(report(("CKV_K8S_35", "Deployment.default.a"), ("CKV_K8S_43", "Job.default.b")))
    waived, problems = checkov_waivers.judge(found, [Waiver("CKV_K8S_35", REASON)])
    assert len(waived) == 1
    assert REASON in waived[0]
    assert problems == ["not waived: CKV_K8S_43 Job.default.b (/x.yaml): CKV_K8S_43 title"]


def test_resources_narrow_a_waiver() -> None:
    found = checkov_waivers.findings(
        report(("CKV2_K8S_6", "Pod.default.herald-migrate.x"), ("CKV2_K8S_6", "Pod.default.y"))
    )
    _, problems = checkov_waivers.judge(found, [Waiver("CKV2_K8S_6", REASON, ("Pod.*.herald-migrate.*",))])
    assert problems == ["not waived: CKV2_K8S_6 Pod.default.y (/x.yaml): CKV2_K8S_6 title"]


def test_a_waiver_covering_nothing_fails() -> None:
    _, problems = checkov_waivers.judge([], [Waiver("CKV_DOCKER_2", REASON, ("Dockerfile.",))])
    assert problems == ["waiver of CKV_DOCKER_2 on Dockerfile. covers no finding: remove it"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"check": "CKV_K8S_35"}, "waiver 1 (CKV_K8S_35): a waiver needs a `reason` (at least 20 characters)"),
        (
            {"check": "CKV_K8S_35", "reason": "accepted"},
            "waiver 1 (CKV_K8S_35): a waiver needs a `reason` (at least 20 characters)",
        ),
        ({"reason": REASON}, "waiver 1: no `check`"),
        (
            {"check": "CKV_K8S_35", "reason": REASON, "resources": "Pod.*"},
            "waiver 1 (CKV_K8S_35): `resources` must be a list of patterns",
        ),
    ],
)
def test_a_waiver_without_check_or_reason_is_refused(entry: dict[str, object], problem: str) -> None:
    assert checkov_waivers.load_waivers({"waivers": [entry]}) == ([], [problem])


def test_the_repository_waivers_all_have_reasons() -> None:
    document = yaml.safe_load((ROOT / checkov_waivers.WAIVERS).read_text())
    waivers, problems = checkov_waivers.load_waivers(document)
    assert problems == []
    assert waivers
