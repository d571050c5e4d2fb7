"""Bounded metric labels: the tenant label is one value unless an installation switches it on."""

from __future__ import annotations

import pytest

from shared.config import HeraldSettings
from shared.observability import metrics

pytestmark = pytest.mark.unit


def test_the_tenant_label_is_all_by_default() -> None:
    assert HeraldSettings.model_fields["metrics_tenant_labels"].default is False
    assert metrics.tenant_label("acme") == metrics.tenant_label("globex") == "all"


@pytest.mark.usefixtures("tenant_labels")
def test_switched_on_the_tenant_label_is_the_tenants_id() -> None:
    assert metrics.tenant_label("acme") == "acme"
