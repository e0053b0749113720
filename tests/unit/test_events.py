import pytest

from renewal.errors import EventRejected
from renewal.flow.events import EXPIRED, NEAR_EXPIRY, CertificateEvent, EventIgnored, parse_event

VAULTS = {"kv-alpha": "https://kv-alpha.vault.azure.net/"}
TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-alpha"


def grid_event(**data_overrides):
    data = {
        "Id": "https://kv-alpha.vault.azure.net/certificates/web/abc123",
        "VaultName": "kv-alpha",
        "ObjectType": "Certificate",
        "ObjectName": "web",
        "Version": "abc123",
        "NBF": 1700000000,
        "EXP": "1800000000",
    }
    data.update(data_overrides)
    return {
        "id": "e1",
        "topic": TOPIC,
        "subject": "web",
        "eventType": NEAR_EXPIRY,
        "eventTime": "2026-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def test_event_grid_schema_with_numeric_and_string_timestamps():
    parsed = parse_event(grid_event(), configured_vaults=VAULTS)
    assert isinstance(parsed, CertificateEvent)
    assert (parsed.vault, parsed.name, parsed.version) == ("kv-alpha", "web", "abc123")
    assert parsed.not_before.year == 2023 and parsed.expires_on.year == 2027
    job = parsed.to_job()
    assert job.reason == "event" and job.version == "abc123" and job.trigger_id == "e1"


def test_cloudevents_schema():
    event = {
        "specversion": "1.0",
        "id": "c1",
        "source": TOPIC,
        "subject": "web",
        "type": EXPIRED,
        "time": "2026-01-01T00:00:00Z",
        "data": grid_event()["data"],
    }
    parsed = parse_event(event, configured_vaults=VAULTS)
    assert isinstance(parsed, CertificateEvent) and parsed.event_type == EXPIRED


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("eventType"), "eventType"),
        (lambda e: e.pop("id"), "id"),
        (lambda e: e.__setitem__("data", "x"), "data"),
        (lambda e: e["data"].pop("VaultName"), "data.VaultName"),
        (lambda e: e["data"].__setitem__("VaultName", "kv-other"), "data.VaultName"),
        (lambda e: e["data"].__setitem__("ObjectName", "bad name/../x"), "data.ObjectName"),
        (lambda e: e["data"].__setitem__("EXP", "soon"), "data.EXP"),
        (lambda e: e["data"].__setitem__("NBF", True), "data.NBF"),
        (lambda e: e["data"].__setitem__("Version", {"x": 1}), "data.Version"),
        (lambda e: e.__setitem__("topic", "/subscriptions/s/providers/Microsoft.KeyVault/vaults/evil"), "topic"),
    ],
)
def test_malformed_events_name_the_field(mutate, field):
    event = grid_event()
    mutate(event)
    with pytest.raises(EventRejected) as info:
        parse_event(event, configured_vaults=VAULTS)
    assert info.value.field == field
    assert field in str(info.value)


def test_unconfigured_vault_is_rejected_by_name():
    with pytest.raises(EventRejected, match=r"kv-unknown.*not configured"):
        parse_event(grid_event(VaultName="kv-unknown"), configured_vaults=VAULTS)


def test_other_object_types_and_event_types_are_ignored():
    secret = parse_event(grid_event(ObjectType="Secret"), configured_vaults=VAULTS)
    assert isinstance(secret, EventIgnored) and "Secret" in secret.reason
    other = grid_event()
    other["eventType"] = "Microsoft.KeyVault.CertificateNewVersionCreated"
    assert isinstance(parse_event(other, configured_vaults=VAULTS), EventIgnored)


def test_non_object_is_rejected():
    with pytest.raises(EventRejected, match="event"):
        parse_event([1, 2], configured_vaults=VAULTS)


@pytest.mark.parametrize(
    "object_id",
    [
        "https://evil.example.net/certificates/web/abc123",  # another host
        "https://kv-alpha.vault.azure.net.evil.example/certificates/web/abc123",
        "https://kv-alpha.vault.azure.net:8443/certificates/web/abc123",  # another port
        "http://kv-alpha.vault.azure.net/certificates/web/abc123",  # another scheme
        "https://x@kv-alpha.vault.azure.net/certificates/web/abc123",  # user info
        "https://kv-zulu.vault.azure.net/certificates/web/abc123",  # another vault
        "https://kv-alpha.vault.azure.net/certificates/api/abc123",  # another certificate
        "https://kv-alpha.vault.azure.net/certificates/web/other",  # another version
        "https://kv-alpha.vault.azure.net/secrets/web/abc123",  # another object kind
        "https://kv-alpha.vault.azure.net/certificates/web/abc123/../../api",
        "https://kv-alpha.vault.azure.net/certificates/web/abc123?x=1",
        "https://kv-alpha.vault.azure.net:notaport/certificates/web/abc123",
        "",
    ],
)
def test_an_id_outside_the_configured_vault_or_naming_another_object_is_rejected(object_id):
    with pytest.raises(EventRejected) as err:
        parse_event(grid_event(Id=object_id), configured_vaults=VAULTS)
    assert err.value.field == "data.Id"


def test_the_id_may_name_the_certificate_without_a_version_and_in_any_case():
    for object_id in (
        "https://KV-ALPHA.vault.azure.net/certificates/WEB",
        "https://kv-alpha.vault.azure.net:443/certificates/web/ABC123",
    ):
        parsed = parse_event(grid_event(Id=object_id), configured_vaults=VAULTS)
        assert isinstance(parsed, CertificateEvent)


def test_names_with_a_trailing_newline_are_not_names():
    with pytest.raises(EventRejected, match=r"data\.VaultName"):
        parse_event(grid_event(VaultName="kv-alpha\n"), configured_vaults=VAULTS)
    with pytest.raises(EventRejected, match=r"data\.ObjectName"):
        parse_event(grid_event(ObjectName="web\n"), configured_vaults=VAULTS)
