"""Issuer failover: an issuer section may name ``fallbacks``, tried in order when a CA is unavailable.

Only :class:`TransientCAError` moves on to the next issuer: a refusal (:class:`PermanentCAError`)
would be refused again elsewhere or is a policy answer worth stopping on, and a pending answer means
one CA now holds the request. The pending ticket records which issuer that is, so the resume goes
back there instead of submitting the CSR to another CA.

Fallbacks chain transitively (A -> B -> C tries A, B, C; each issuer once); cycles are refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509

from .base import (
    CAClient,
    ClientContext,
    IssuancePending,
    IssuedChain,
    PermanentCAError,
    RenewalInfo,
    RenewalInfoProvider,
    SignRequest,
    TransientCAError,
)
from .registry import ConfigProblem, IssuerConfigError, build_client, validate_section

TICKET_ISSUER = "issuer"
TICKET_INNER = "ticket"


class FailoverClient:
    """Tries ``primary`` then each fallback on transient failures; resumes pending work at its issuer."""

    def __init__(self, primary: CAClient, fallbacks: Sequence[CAClient]) -> None:
        self.name = primary.name
        self.members: tuple[CAClient, ...] = (primary, *fallbacks)

    def __repr__(self) -> str:
        return f"FailoverClient({' -> '.join(m.name for m in self.members)})"

    def sign(self, request: SignRequest) -> IssuedChain:
        ticket = request.ticket
        if ticket and TICKET_ISSUER in ticket:
            return self._resume(request, str(ticket[TICKET_ISSUER]), ticket.get(TICKET_INNER))
        failures: list[TransientCAError] = []
        for member in self.members:
            # A ticket without an issuer predates failover; only the primary can own it. The certificate being
            # replaced is the primary CA's: another CA does not know it.
            attempt = request if member is self.members[0] else dataclasses.replace(request, ticket=None, replaces=None)
            try:
                return self._named(member.sign(attempt), member)
            except IssuancePending as pending:
                raise self._tagged(pending, member) from None
            except TransientCAError as exc:
                failures.append(exc)
        raise self._exhausted(failures)

    def offers_renewal_info(self) -> bool:
        """Renewal information is the primary's (the CA the certificate is routed to)."""
        primary = self.members[0]
        return isinstance(primary, RenewalInfoProvider) and primary.offers_renewal_info()

    def renewal_info(self, certificate: x509.Certificate | str) -> RenewalInfo | None:
        primary = self.members[0]
        return primary.renewal_info(certificate) if isinstance(primary, RenewalInfoProvider) else None

    def _resume(self, request: SignRequest, issuer: str, inner: Any) -> IssuedChain:
        member = next((m for m in self.members if m.name == issuer), None)
        if member is None:
            raise PermanentCAError(
                f"the pending request belongs to issuer {issuer!r}, which is no longer among "
                f"{[m.name for m in self.members]}",
                issuer=self.name,
            )
        try:
            # No failover here: the request is pending at this CA; a transient error retries it later.
            replaces = request.replaces if member is self.members[0] else None
            return self._named(member.sign(dataclasses.replace(request, ticket=inner, replaces=replaces)), member)
        except IssuancePending as pending:
            raise self._tagged(pending, member) from None

    @staticmethod
    def _named(chain: IssuedChain, member: CAClient) -> IssuedChain:
        return chain if chain.issuer_name else IssuedChain(chain.certificates, issuer_name=member.name)

    @staticmethod
    def _tagged(pending: IssuancePending, member: CAClient) -> IssuancePending:
        return IssuancePending(
            {TICKET_ISSUER: member.name, TICKET_INNER: pending.ticket}, pending.retry_after, str(pending)
        )

    def _exhausted(self, failures: list[TransientCAError]) -> TransientCAError:
        detail = "; ".join(f"{f.issuer or m.name}: {f.message}" for f, m in zip(failures, self.members, strict=False))
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        return TransientCAError(
            f"every issuer failed ({detail})", issuer=self.name, retry_after=min(waits) if waits else None
        )


def _fallback_problems(sections: Sequence[Mapping[str, Any]]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    index: dict[str, int] = {}
    for i, section in enumerate(sections):
        name = section.get("name")
        if not isinstance(name, str) or not name:
            problems.append(ConfigProblem(f"issuers[{i}].name", "every issuer needs a non-empty name"))
        elif name in index:
            problems.append(ConfigProblem(f"issuers[{i}].name", f"duplicate issuer name {name!r}"))
        else:
            index[name] = i
    for i, section in enumerate(sections):
        fallbacks = section.get("fallbacks", [])
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            problems.append(ConfigProblem(f"issuers[{i}].fallbacks", "must be a list of issuer names"))
            continue
        for j, target in enumerate(fallbacks):
            if target not in index:
                problems.append(ConfigProblem(f"issuers[{i}].fallbacks[{j}]", f"unknown issuer {target!r}"))
            elif target == section.get("name"):
                problems.append(ConfigProblem(f"issuers[{i}].fallbacks[{j}]", "an issuer cannot fall back to itself"))
    if problems:
        return problems
    # Depth-first search for cycles; the edge that closes one is the field named.
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        state[name] = "open"
        i = index[name]
        for j, target in enumerate(sections[i].get("fallbacks", [])):
            if state.get(target) == "open":
                problems.append(
                    ConfigProblem(f"issuers[{i}].fallbacks[{j}]", f"fallback {name!r} -> {target!r} closes a cycle")
                )
            elif target not in state:
                visit(target)
        state[name] = "done"

    for name in index:
        if name not in state:
            visit(name)
    return problems


def failover_order(name: str, sections_by_name: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``name`` then its fallbacks depth first, each issuer once (the graph is acyclic by then)."""
    order: list[str] = []

    def walk(current: str) -> None:
        if current in order:
            return
        order.append(current)
        for target in sections_by_name[current].get("fallbacks", []):
            walk(target)

    walk(name)
    return order


def build_issuers(sections: Sequence[Mapping[str, Any]], context: ClientContext) -> dict[str, CAClient]:
    """Builds every issuer (via the registry, so each is leaf-checked) and wires its fallbacks.

    Every problem across all sections is reported at once, each naming its field
    (``issuers[i].url``, ``issuers[i].fallbacks[j]``, ...).
    """
    problems = _fallback_problems(sections)
    for i, section in enumerate(sections):
        problems += validate_section(section, path=f"issuers[{i}]")
    if problems:
        raise IssuerConfigError(problems)
    plain = {
        str(section["name"]): build_client(section, context, path=f"issuers[{i}]") for i, section in enumerate(sections)
    }
    by_name = {str(s["name"]): s for s in sections}
    issuers: dict[str, CAClient] = {}
    for name, client in plain.items():
        order = failover_order(name, by_name)
        issuers[name] = FailoverClient(client, [plain[n] for n in order[1:]]) if len(order) > 1 else client
    return issuers
