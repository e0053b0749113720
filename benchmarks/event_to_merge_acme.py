"""Event-to-merge latency through ACME against pebble, compared with pebble's own issuance time.

Set-up: the emulator as a separate process (service limits enforced, 20 ms per request), Azurite, pebble with
real dns-01 validation through pebble-challtestsrv (``devtools/pebble.py``), the service's default issuer
being pebble. For each sample a certificate 10 days from expiry gets a ``CertificateNearExpiry`` event
delivered to the real ``on_certificate_event`` function; its job is pumped through ``renewal_worker`` by
``devtools.pump.QueuePump`` until the queue is idle (the new version merged). Latency = event delivery to
pump idle.

Reference, same run: the same ACME client (the service's own, same account) signing a CSR of the same key type
(EC P-256, one DNS name) with nothing else around it. Medians of ``--samples`` each; target <= 1.5 x.

Usage: ``python benchmarks/event_to_merge_acme.py [--samples 7]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DAY, Stopwatch, limited_emulator, local_issuers, policy_wire, renewal_service, verdict

NAME = "event_to_merge_acme"


def ec_csr(host: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(Encoding.DER)


def near_expiry_event(vault_url: str, vault: str, name: str, version: str, index: int):
    """The event as the worker hands it to the function (devtools.host decodes it with azure.functions)."""
    from devtools.host import event_grid_event

    return event_grid_event(
        {
            "id": f"bench-event-{index}",
            "topic": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
            f"Microsoft.KeyVault/vaults/{vault}",
            "subject": name,
            "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
            "eventTime": dt.datetime.now(dt.UTC).isoformat(),
            "data": {
                "Id": f"{vault_url.rstrip('/')}/certificates/{name}/{version}",
                "VaultName": vault,
                "ObjectType": "Certificate",
                "ObjectName": name,
                "Version": version,
                "NBF": 1,
                "EXP": 2,
            },
            "dataVersion": "1",
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import function_app
    from ca_clients import CertificateIdentity, SignRequest
    from devtools.azurite import running_azurite
    from devtools.pebble import running_pebble
    from devtools.pump import QueuePump
    from renewal import settings
    from renewal.azure.storage import StorageEndpoints

    vault = "kv-acme"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-acme-")))
        kv = stack.enter_context(limited_emulator([vault]))
        azurite = stack.enter_context(running_azurite(workdir / "azurite"))
        pebble = stack.enter_context(running_pebble(workdir / "pebble"))
        storage = StorageEndpoints.from_settings(azurite.env())
        storage.ensure_resources()
        issuers = [*local_issuers(workdir), pebble.issuer_section("pebble-acme")]
        service = renewal_service(kv, issuers, default_issuer="pebble-acme", storage_env=azurite.env(), storage=storage)
        function_app._service = service
        pump = QueuePump(storage, settings.JOBS_QUEUE, function_app.renewal_worker, poll_interval=0.01)
        acme = service.issuer("pebble-acme")
        now = int(kv.admin.now())
        names = [f"web-{i}" for i in range(args.samples + 1)]
        for name in names:
            kv.admin.seed(
                vault,
                certificates=[{"name": name}],
                not_before=now - 80 * DAY,
                expires=now + 10 * DAY,
                policy=policy_wire(f"{name}.example.test", trigger={"days_before_expiry": 30}),
            )
        client = kv.certificate_client(vault)
        versions = {name: client.get_certificate(name).properties.version for name in names}

        def renew_by_event(index: int, name: str) -> float:
            watch = Stopwatch()
            function_app.on_certificate_event(
                near_expiry_event(kv.vault_urls[vault], vault, name, versions[name], index)
            )
            stats = pump.run_until_idle(timeout=120, wait_for_delayed=True)
            elapsed = watch.elapsed
            if stats.processed != 1 or stats.failed:
                raise RuntimeError(f"{name}: pump {stats}")
            if client.get_certificate(name).properties.version == versions[name]:
                raise RuntimeError(f"{name}: not renewed")
            return elapsed

        def acme_alone(index: int) -> float:
            request = SignRequest(
                csr_der=ec_csr(f"alone-{index}.example.test"),
                identity=CertificateIdentity(vault, f"alone-{index}", f"bench-{index}"),
            )
            watch = Stopwatch()
            acme.sign(request)
            return watch.elapsed

        acme_alone(-1)  # account registration and connections are not part of either figure
        renew_by_event(-1, names[0])
        flow, alone = [], []
        for i in range(args.samples):  # interleaved, so both see the same machine
            alone.append(acme_alone(i))
            flow.append(renew_by_event(i, names[i + 1]))

    flow_s, alone_s = statistics.median(flow), statistics.median(alone)
    print(f"event -> merge: median {flow_s:.3f}s of {[round(x, 3) for x in flow]}")
    print(f"ACME client alone (EC P-256 CSR): median {alone_s:.3f}s of {[round(x, 3) for x in alone]}")
    verdict(NAME, f"{flow_s:.3f}s vs {alone_s:.3f}s ACME alone = {flow_s / alone_s:.2f} x", flow_s / alone_s, 1.5,
            "<= 1.5 x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
