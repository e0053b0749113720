"""Certificate backup and restore through the real SDK, with Key Vault's rules: every version comes back
with the same ids, only into a vault of the same subscription and geography, never over a name in use."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import CertificatePolicy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator.testing import EmulatorHandle, running_emulator
from tests.emulator.support import TestCA, receiver

TWIN, EUROPE, FOREIGN = "kv-restore", "kv-restore-eu", "kv-restore-foreign"
OTHER_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def vaults(kv: EmulatorHandle) -> EmulatorHandle:
    """kv-alpha plus three vaults (added once to the session's emulator, emptied by each reset): one like
    kv-alpha, one in another geography, one in another subscription."""
    kv.admin.add_vault(TWIN)
    kv.admin.add_vault(EUROPE, geography="Europe")
    kv.admin.add_vault(FOREIGN, subscription=OTHER_SUBSCRIPTION)
    return kv


def policy_fields(policy: CertificatePolicy) -> dict[str, str]:
    return {k: repr(v) for k, v in vars(policy).items()}


def secret_material(kv: EmulatorHandle, vault: str, name: str, version: str) -> tuple[bytes, list[bytes]]:
    """The private key (PKCS#8 DER) and the chain (DER, leaf first) of a version's managed secret."""
    pfx = kv.secret_client(vault).get_secret(name, version).value
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(pfx), None)
    assert key is not None and leaf is not None
    der = serialization.Encoding.DER
    key_der = key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_der, [c.public_bytes(der) for c in [leaf, *extra]]


def versions(client: Any, name: str) -> dict[str, Any]:
    return {p.version: p for p in client.list_properties_of_certificate_versions(name)}


def assert_refused(call: Any, status: int, code: str, *words: str) -> None:
    with pytest.raises(HttpResponseError) as exc:
        call()
    assert exc.value.status_code == status and exc.value.error.code == code
    for word in words:
        assert word in exc.value.message


def merged_version(client: Any, name: str, ca: TestCA) -> str:
    op = client.begin_create_certificate(name, CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}")).result()
    return client.merge_certificate(name, [ca.sign(op.csr), ca.der]).properties.version


def test_restore_brings_back_every_version_with_its_key_policy_and_tags(vaults: EmulatorHandle) -> None:
    alpha, twin = vaults.certificate_client("kv-alpha"), vaults.certificate_client(TWIN)
    first = alpha.begin_create_certificate("web", CertificatePolicy.get_default(), tags={"v": "1"}).result()
    merged_version(alpha, "web", TestCA())  # a chain of two, and a new policy
    alpha.update_certificate_properties("web", first.properties.version, enabled=False, tags={"v": "old"})
    original = alpha.get_certificate("web")

    backup = alpha.backup_certificate("web")
    assert isinstance(backup, bytes) and bytes(original.cer) not in backup  # opaque
    restored = twin.restore_certificate_backup(backup)

    latest = original.properties.version
    assert restored.name == "web" and restored.id == f"{vaults.vault_url(TWIN)}certificates/web/{latest}"
    assert restored.cer == original.cer and restored.properties.x509_thumbprint == original.properties.x509_thumbprint
    assert policy_fields(restored.policy) == policy_fields(original.policy)
    assert policy_fields(twin.get_certificate_policy("web")) == policy_fields(alpha.get_certificate_policy("web"))
    before, after = versions(alpha, "web"), versions(twin, "web")
    assert set(after) == set(before) and len(after) == 2
    for version, props in before.items():
        again = after[version]
        assert again.x509_thumbprint == props.x509_thumbprint and again.tags == props.tags
        assert (again.enabled, again.created_on, again.expires_on) == (
            props.enabled,
            props.created_on,
            props.expires_on,
        )
        assert twin.get_certificate_version("web", version).cer == alpha.get_certificate_version("web", version).cer
    material = secret_material(vaults, TWIN, "web", latest)
    assert material == secret_material(vaults, "kv-alpha", "web", latest) and len(material[1]) == 2  # key, chain
    assert alpha.get_certificate("web").properties.version == latest  # the source is untouched


def test_restore_is_refused_into_another_geography_or_subscription(vaults: EmulatorHandle) -> None:
    alpha = vaults.certificate_client("kv-alpha")
    alpha.begin_create_certificate("web", CertificatePolicy.get_default()).result()
    backup = alpha.backup_certificate("web")
    europe, foreign = vaults.certificate_client(EUROPE), vaults.certificate_client(FOREIGN)
    assert_refused(lambda: europe.restore_certificate_backup(backup), 400, "BadParameter", "geography", "Europe")
    assert_refused(lambda: foreign.restore_certificate_backup(backup), 400, "BadParameter", "subscription")
    for client in (europe, foreign):
        with pytest.raises(ResourceNotFoundError):
            client.get_certificate("web")
    # Back in its own geography and subscription, the same blob restores.
    assert vaults.certificate_client(TWIN).restore_certificate_backup(backup).name == "web"


def test_restore_never_overwrites_a_certificate_of_the_same_name(vaults: EmulatorHandle) -> None:
    alpha, twin = vaults.certificate_client("kv-alpha"), vaults.certificate_client(TWIN)
    alpha.begin_create_certificate("web", CertificatePolicy.get_default()).result()
    backup = alpha.backup_certificate("web")
    with pytest.raises(ResourceExistsError):
        alpha.restore_certificate_backup(backup)
    mine = twin.begin_create_certificate("web", CertificatePolicy.get_default()).result()
    with pytest.raises(ResourceExistsError, match="already exists"):
        twin.restore_certificate_backup(backup)
    assert twin.get_certificate("web").cer == mine.cer and list(versions(twin, "web")) == [mine.properties.version]


def test_a_soft_deleted_name_conflicts_until_it_is_purged(vaults: EmulatorHandle) -> None:
    alpha = vaults.certificate_client("kv-alpha")
    cert = alpha.begin_create_certificate("web", CertificatePolicy.get_default()).result()
    backup = alpha.backup_certificate("web")
    alpha.begin_delete_certificate("web").wait()
    with pytest.raises(ResourceExistsError, match="deleted but recoverable"):
        alpha.restore_certificate_backup(backup)
    with pytest.raises(ResourceNotFoundError):  # a deleted certificate is not backed up either
        alpha.backup_certificate("web")
    alpha.purge_deleted_certificate("web")
    restored = alpha.restore_certificate_backup(backup)
    assert restored.properties.version == cert.properties.version and restored.cer == cert.cer
    assert not list(alpha.list_deleted_certificates())


def test_backup_of_a_missing_or_still_pending_certificate_is_not_found(vaults: EmulatorHandle) -> None:
    alpha = vaults.certificate_client("kv-alpha")
    with pytest.raises(ResourceNotFoundError):
        alpha.backup_certificate("nothing-here")
    alpha.begin_create_certificate("half", CertificatePolicy(issuer_name="Unknown", subject="CN=half")).result()
    with pytest.raises(ResourceNotFoundError):  # no version yet: nothing a restore could bring back
        alpha.backup_certificate("half")


def test_tampered_truncated_and_foreign_blobs_are_refused_and_create_nothing(vaults: EmulatorHandle) -> None:
    alpha, twin = vaults.certificate_client("kv-alpha"), vaults.certificate_client(TWIN)
    alpha.begin_create_certificate("web", CertificatePolicy.get_default()).result()
    backup = alpha.backup_certificate("web")
    flipped = bytearray(backup)
    flipped[len(flipped) // 2] ^= 0x01
    with running_emulator(["kv-elsewhere"]) as other:  # another emulator: its own key, like another service
        other_client = other.certificate_client("kv-elsewhere")
        other_client.begin_create_certificate("web", CertificatePolicy.get_default()).result()
        foreign = other_client.backup_certificate("web")
    for blob in (bytes(flipped), backup[:-1], backup[:10], b"not a backup at all", foreign):
        assert_refused(lambda b=blob: twin.restore_certificate_backup(b), 400, "BadParameter", "backup")
    assert not list(twin.list_properties_of_certificates(include_pending=True))
    assert not list(twin.list_deleted_certificates())


def test_a_restored_certificate_is_renewed_by_create_and_merge(vaults: EmulatorHandle) -> None:
    alpha, twin = vaults.certificate_client("kv-alpha"), vaults.certificate_client(TWIN)
    ca = TestCA()
    old = merged_version(alpha, "api", ca)
    twin.restore_certificate_backup(alpha.backup_certificate("api"))
    new = merged_version(twin, "api", ca)
    assert new != old and twin.get_certificate("api").properties.version == new
    assert set(versions(twin, "api")) == {old, new}
    assert set(versions(alpha, "api")) == {old}  # the vaults are independent after the restore


def test_a_bulk_seeded_certificate_round_trips(vaults: EmulatorHandle) -> None:
    now = int(vaults.admin.now())
    vaults.admin.seed("kv-alpha", count=1, prefix="bulk", expires=now + 90 * 86400, tags={"env": "bench"})
    vaults.admin.seed("kv-alpha", count=1, prefix="bulk", expires=now + 400 * 86400)  # a second version
    alpha, twin = vaults.certificate_client("kv-alpha"), vaults.certificate_client(TWIN)
    backup = alpha.backup_certificate("bulk-0")  # before any read: the DER is built lazily
    restored = twin.restore_certificate_backup(backup)
    original = alpha.get_certificate("bulk-0")
    assert restored.cer == original.cer and restored.properties.version == original.properties.version
    assert set(versions(twin, "bulk-0")) == set(versions(alpha, "bulk-0"))
    for version, props in versions(alpha, "bulk-0").items():
        assert (
            twin.get_certificate_version("bulk-0", version).cer == alpha.get_certificate_version("bulk-0", version).cer
        )
        assert versions(twin, "bulk-0")[version].tags == props.tags
    version = original.properties.version
    assert secret_material(vaults, TWIN, "bulk-0", version) == secret_material(vaults, "kv-alpha", "bulk-0", version)


def test_backup_and_restore_are_counted_as_other_requests_not_creates(vaults: EmulatorHandle) -> None:
    alpha, twin = vaults.certificate_client("kv-alpha"), vaults.certificate_client(TWIN)
    alpha.begin_create_certificate("web", CertificatePolicy.get_default()).result()
    vaults.admin.set_knobs(create_limit=0)  # every create is throttled now; backup and restore are not creates
    twin.restore_certificate_backup(alpha.backup_certificate("web"))
    assert vaults.admin.counters("kv-alpha")["backup"] == 1 and vaults.admin.counters(TWIN)["restore"] == 1
    vaults.admin.set_knobs(other_limit=0)
    with pytest.raises(HttpResponseError) as exc:
        vaults.certificate_client("kv-alpha", retry_total=0).backup_certificate("web")
    assert exc.value.status_code == 429


def test_a_vaults_subscription_is_in_its_event_topic(vaults: EmulatorHandle) -> None:
    with receiver() as hook:
        vaults.admin.subscribe(FOREIGN, "renewal", hook.url)
        vaults.certificate_client(FOREIGN).begin_create_certificate("ev", CertificatePolicy.get_default()).result()
        assert vaults.admin.flush_events(10)
        [event] = hook.events("Microsoft.KeyVault.CertificateNewVersionCreated")
    assert event["topic"].startswith(f"/subscriptions/{OTHER_SUBSCRIPTION}/") and event["topic"].endswith(FOREIGN)


def test_backups_and_vault_locations_survive_a_restart_with_the_same_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with running_emulator(["kv-one", "kv-two"], state=state) as kv:
        kv.admin.add_vault("kv-eu", geography="Europe", subscription=OTHER_SUBSCRIPTION)
        client = kv.certificate_client("kv-one")
        cert = client.begin_create_certificate("keep", CertificatePolicy.get_default()).result()
        backup = client.backup_certificate("keep")
    with running_emulator(["kv-one", "kv-two"], state=state) as kv:
        assert kv.admin.vault_locations()["kv-eu"] == {"subscription": OTHER_SUBSCRIPTION, "geography": "Europe"}
        restored = kv.certificate_client("kv-two").restore_certificate_backup(backup)
        assert restored.cer == cert.cer and restored.properties.version == cert.properties.version
    with running_emulator(["kv-two"]) as kv:  # a new instance without the state has another key
        with pytest.raises(HttpResponseError) as exc:
            kv.certificate_client("kv-two").restore_certificate_backup(backup)
        assert exc.value.status_code == 400
