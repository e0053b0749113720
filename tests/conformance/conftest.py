"""Conformance targets: one registry issuer section per CA protocol, each from its test server fixture.

A target whose server fixture is not in the plugin set (another part of the product not there yet)
or whose client module is missing is skipped with the reason; a fixture that exists but cannot start
its server decides itself (``tests.servers.unavailable``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ca_clients.local import create_ca_files
from tests.conformance.faults import FaultServer, SilentServer

ALL_SAN_KINDS = frozenset({"dns", "ip", "email", "uri"})


@dataclass(frozen=True)
class TargetSpec:
    """What the suite knows of a protocol: where its server comes from and what it can issue."""

    fixture: str | None  # None: built in-process (local)
    client_module: str
    san_kinds: frozenset[str]
    url_field: str | None  # the section field that points at the CA; None: no network
    url_path: str = ""  # appended to a fault server's base URL
    wrong_key_responder: bool = True  # faults.FaultServer speaks this protocol's success answer
    known_gaps: tuple[tuple[str, str], ...] = ()
    """(case id, reason): cases this client is known to fail; run as strict xfail so a fix is noticed."""
    section_factory: str = "issuer_section"
    """The server fixture's method that makes an issuer section."""


TARGETS: dict[str, TargetSpec] = {
    "local": TargetSpec(None, "ca_clients.local", ALL_SAN_KINDS, None),
    "est": TargetSpec("est_server", "ca_clients.est", ALL_SAN_KINDS, "url"),
    "adcs": TargetSpec("adcs_server", "ca_clients.adcs", ALL_SAN_KINDS, "url", "/certsrv"),
    "acme": TargetSpec("pebble", "ca_clients.acme", frozenset({"dns"}), "directory_url", "/dir", False),
    "vault": TargetSpec(
        "openbao",
        "ca_clients.vault",
        ALL_SAN_KINDS,
        "url",
    ),
    "cfssl": TargetSpec(
        "cfssl_server",
        "ca_clients.cfssl",
        frozenset({"dns", "ip", "email"}),
        "url",
    ),
    # smallstep step-ca, natively (JWK provisioner) and through its ACME provisioner.
    "stepca": TargetSpec("stepca", "ca_clients.stepca", ALL_SAN_KINDS, "url", wrong_key_responder=False),
    "stepca-acme": TargetSpec(
        "stepca",
        "ca_clients.acme",
        frozenset({"dns"}),
        "directory_url",
        "/dir",
        False,
        section_factory="acme_section",
    ),
}


@dataclass
class Target:
    name: str
    spec: TargetSpec
    make_section: Callable[[str], dict[str, Any]]
    trust_anchor_pem: str | None
    san_kinds: frozenset[str]

    def section(self, issuer: str | None = None) -> dict[str, Any]:
        return self.make_section(issuer or f"conformance-{self.name}")

    def expect_gap(self, request: pytest.FixtureRequest, case: str) -> None:
        for gap_case, reason in self.spec.known_gaps:
            if gap_case == case:
                request.applymarker(pytest.mark.xfail(strict=True, reason=f"{self.name}: {reason}"))


@pytest.fixture(scope="session")
def local_ca_section(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    paths = create_ca_files(tmp_path_factory.mktemp("conformance-local"))

    def section(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "local",
            "ca_certificate": str(paths["ca_certificate"]),
            "ca_key": {"file": str(paths["ca_key"])},
            "chain": str(paths["chain"]),
        }

    section.trust_anchor_pem = paths["root"].read_text()  # type: ignore[attr-defined]
    return section


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    name = request.param
    spec = TARGETS[name]
    if importlib.util.find_spec(spec.client_module) is None:
        pytest.skip(f"{name}: client module {spec.client_module} is not in this checkout")
    if spec.fixture is None:
        server: Any = request.getfixturevalue("local_ca_section")
        make = server
    else:
        try:
            server = request.getfixturevalue(spec.fixture)
        except pytest.FixtureLookupError:
            pytest.skip(f"{name}: fixture {spec.fixture!r} is not in the plugin set")
        make = getattr(server, spec.section_factory)
    # A server fixture may declare what it issues; otherwise the protocol's default applies.
    kinds = frozenset(getattr(server, "san_kinds", spec.san_kinds))
    return Target(name, spec, make, getattr(server, "trust_anchor_pem", None), kinds)


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[dict[str, Any]]:
    servers: dict[str, Any] = {fault: FaultServer(fault) for fault in ("5xx", "garbage", "wrong-key")}
    servers["timeout"] = SilentServer()
    yield servers
    for server in servers.values():
        server.close()


def not_applicable(target_name: str, test_name: str, fault: str | None) -> bool:
    """Fault cases a target cannot have: no network endpoint, or no fault server speaking its protocol."""
    if not test_name.startswith("test_ca_faults"):
        return False
    spec = TARGETS[target_name]
    return spec.url_field is None or (fault == "wrong-key" and not spec.wrong_key_responder)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Deselect (rather than skip) combinations that cannot exist, so every skip in a run means a missing server.
    keep, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "target" in params and not_applicable(params["target"], item.name, params.get("fault")):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
