"""Key Vault's errors reach the flow as the port's errors (renewal/ports.py), through the real adapter
against the emulator's fault knobs: 5xx is StoreUnavailable and a retry, never a raw SDK exception."""

from __future__ import annotations

import pytest

from renewal.errors import RenewalFailed, StoreUnavailable
from renewal.model import RenewalJob


def test_a_5xx_from_key_vault_is_store_unavailable_and_the_job_is_retried(flow):
    # More failures than the SDK's own retries (3 after the first try): the adapter sees the 503.
    status, failures = 503, 4
    flow.seed("kv-alpha", "web", days_left=5)
    store = flow.service.stores["kv-alpha"]
    flow.kv.admin.set_knobs(fail_next={"get_certificate": failures}, fault_status=status)
    with pytest.raises(StoreUnavailable, match=str(status)):
        store.get_current("web")
    flow.kv.admin.set_knobs(fail_next={"get_certificate": failures}, fault_status=status)
    with pytest.raises(RenewalFailed) as failed:
        flow.service.run_job(RenewalJob(vault="kv-alpha", name="web", reason="operator", force=True))
    assert not failed.value.permanent
    assert flow.service.run_job(RenewalJob(vault="kv-alpha", name="web", reason="operator", force=True)).status == (
        "renewed"
    )
