"""When the CA says to renew: ACME Renewal Information (RFC 9773, "ARI") in the due decision.

For a certificate routed to an ACME issuer whose directory offers ``renewalInfo``, the CA suggests a
renewal window. The service renews at one moment inside it, chosen uniformly at random (RFC 9773 §4.2)
but stable: derived from a hash of the certificate's identifier and the window, so every instance, every
sweep and the orchestrator's re-check choose the same moment until the CA moves the window. The policy's
own trigger stays the latest bound: ``renew_at = min(policy trigger, ARI moment)``. A window that has
already ended (what a CA that revokes early publishes) makes the certificate due at once.

Windows are kept (port RenewalWindows: the ``renewalwindows`` table, shared by every instance) until the
answer's Retry-After passes, clamped to [1 h, 24 h] and 6 h when the CA gives none (RFC 9773 §4.3); a CA
that does not know the certificate, or a certificate ARI cannot name (no Authority Key Identifier), is
asked again after a week. A kept window names its version by thumbprint, so the sweep decides from the
listing and the kept rows alone, and reads a certificate only to name it the first time.

Nothing here may stop a sweep or a renewal: an issuer that cannot be built, a CA that fails or times out,
a certificate that cannot be read, a table that cannot be written: each is logged, and the decision falls
back to the last window kept for that version, else to the policy. After a few failures in a row an
issuer is not asked again in the same run (a sweep over thousands of certificates does not wait for
thousands of timeouts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Literal

from ca_clients import CAClient, RenewalInfo, RenewalInfoProvider
from ca_clients.ari import ari_cert_id_of_der
from renewal.config import RenewalConfig
from renewal.flow.due import DueDecision
from renewal.flow.routing import routed_issuer_or_none
from renewal.model import CertificateVersion, RenewalWindow
from renewal.observability import log_event
from renewal.ports import CertificateStore, RenewalWindows

log = logging.getLogger("renewal.flow.ari")

ARI_TRIGGER = "ari"
ARI_ISSUER_TYPES = frozenset({"acme"})
"""Issuer types whose CA may publish renewal information."""
DEFAULT_RECHECK = dt.timedelta(hours=6)
"""When the CA's answer has no usable Retry-After (RFC 9773 §4.3.3)."""
MIN_RECHECK = dt.timedelta(hours=1)
MAX_RECHECK = dt.timedelta(hours=24)
UNNAMED_RECHECK = dt.timedelta(days=7)
"""A CA that does not know the certificate (404), or a certificate ARI cannot name, is asked again this late."""
FAILURES_BEFORE_PAUSE = 3
"""Failures in a row after which an issuer is not asked again in the same run."""

IssuerState = Literal["offers", "none", "unreachable"]


def thumbprint_of(cer: bytes) -> str:
    """SHA-1 of the DER, lower-case hex: the listing's ``x5t``, so a kept window is matched without a read."""
    return hashlib.sha1(cer).hexdigest()  # noqa: S324 - x5t is SHA-1 by definition


def recheck_delay(retry_after: dt.timedelta | None) -> dt.timedelta:
    """How long a window is kept: the CA's Retry-After within [MIN_RECHECK, MAX_RECHECK], else the default."""
    if retry_after is None:
        return DEFAULT_RECHECK
    return min(MAX_RECHECK, max(MIN_RECHECK, retry_after))


def chosen_moment(window: RenewalWindow) -> dt.datetime:
    """A moment uniformly distributed inside the window, the same for the same certificate and window
    everywhere (a hash of the certificate's identifier and the window, not a random draw)."""
    assert window.start is not None and window.end is not None
    seed = f"{window.cert_id}|{window.thumbprint}|{window.start.isoformat()}|{window.end.isoformat()}"
    fraction = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64
    span = (window.end - window.start).total_seconds()
    return window.start + dt.timedelta(seconds=int(span * fraction))


def _at(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z"


def apply_window(decision: DueDecision, window: RenewalWindow | None, now: dt.datetime) -> DueDecision:
    """The policy's decision with the CA's window taken into account: ARI decides when its moment comes
    before the policy's trigger; an expired certificate or one without dates stays as decided."""
    if window is None or window.start is None or window.end is None or decision.trigger in ("expired", "unknown"):
        return decision
    moment = chosen_moment(window)
    if decision.renew_at is not None and decision.renew_at <= moment:
        return decision
    reason = f"ARI window {_at(window.start)}..{_at(window.end)}: renew at {_at(moment)}"
    if window.end <= now:
        reason += " (the window has passed: renew now)"
    elif moment <= now:
        reason += " (reached)"
    if window.explanation_url:
        reason += f"; see {window.explanation_url}"
    return DueDecision(moment <= now, reason, moment, ARI_TRIGGER)


class RenewalTiming:
    """The ARI part of due decisions for one sweep run or one renewal job: which issuer to ask, the windows
    kept for it, and asking the CA when a version has none or its Retry-After has passed.

    ``bulk`` (the sweep, the inventory) loads each vault's kept windows in one query on first use; otherwise
    (a job) one row is read per certificate. Without ``issuers`` (views that show, never ask) only kept
    windows count and no CA is contacted. Thread-safe: the sweep's listing threads and pool share one."""

    def __init__(
        self,
        *,
        config: RenewalConfig,
        issuers: Callable[[str], CAClient] | None,
        windows: RenewalWindows | None,
        now: dt.datetime,
        bulk: bool = False,
    ) -> None:
        self.config = config
        self.issuers = issuers
        self.windows = windows
        self.now = now
        self.bulk = bulk
        self.checks = 0
        """Times the CA was asked."""
        self.reads = 0
        """Certificates read to name them (the listing carries no certificate)."""
        self.failures = 0
        self._lock = threading.Lock()
        self._issuer_lock = threading.Lock()
        self._issuers: dict[str, IssuerState] = {}
        self._failures_in_a_row: dict[str, int] = {}
        self._loaded: dict[str, dict[str, RenewalWindow]] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._unavailable: set[str | None] = set()
        """Vaults whose kept windows could not be loaded in this (bulk) run."""
        self._asked: dict[tuple[str, str, str], RenewalWindow | None] = {}

    # -- which issuer -------------------------------------------------------------------------------------
    def ari_issuer(self, vault: str, name: str, tags: Mapping[str, str] | None) -> str | None:
        """The issuer the certificate is routed to, when its CA publishes renewal information (or did, and
        cannot be reached now: its kept windows still count); None otherwise."""
        issuer = routed_issuer_or_none(self.config, vault, name, tags)
        if issuer is None:
            return None
        section = next((s for s in self.config.issuers if s.get("name") == issuer), None)
        if section is None or section.get("type") not in ARI_ISSUER_TYPES:
            return None
        return issuer if self._state(issuer) != "none" else None

    def _state(self, issuer: str) -> IssuerState:
        with self._issuer_lock:  # one directory fetch per issuer and run, whichever thread asks first
            if issuer not in self._issuers:
                self._issuers[issuer] = self._issuer_state(issuer)
            return self._issuers[issuer]

    def _issuer_state(self, issuer: str) -> IssuerState:
        if self.issuers is None:
            return "unreachable"  # a view: kept windows only
        try:
            client = self.issuers(issuer)
            offers = isinstance(client, RenewalInfoProvider) and client.offers_renewal_info()
        except Exception as exc:  # noqa: BLE001 - an unreachable CA leaves the decision to kept windows and policy
            log_event(log, "ari.issuer_unreachable", level=logging.WARNING, issuer=issuer, error=_text(exc))
            return "unreachable"
        return "offers" if offers else "none"

    def _may_ask(self, issuer: str) -> bool:
        if self._state(issuer) != "offers":
            return False
        with self._lock:
            return self._failures_in_a_row.get(issuer, 0) < FAILURES_BEFORE_PAUSE

    # -- kept windows -------------------------------------------------------------------------------------
    def kept(self, vault: str, name: str, issuer: str, thumbprint: str) -> RenewalWindow | None:
        """The window kept for this version at this issuer (fresh or not), or None."""
        row = self._kept_row(vault, name)
        if row is None or row.thumbprint != thumbprint or row.issuer != issuer:
            return None
        return row

    def _kept_row(self, vault: str, name: str) -> RenewalWindow | None:
        if self.windows is None:
            return None
        try:
            if not self.bulk:
                return self.windows.get(vault, name)
            with self._lock:
                loading = self._loading.setdefault(vault, threading.Lock())
            with loading:  # one query per vault, whichever thread needs it first
                with self._lock:
                    loaded = self._loaded.get(vault)
                if loaded is None:
                    loaded = self.windows.load(vault)
                    with self._lock:
                        loaded = self._loaded.setdefault(vault, loaded)
            return loaded.get(name)
        except Exception as exc:  # noqa: BLE001 - without kept windows the policy decides (a job asks the CA)
            log_event(log, "ari.windows_unavailable", level=logging.WARNING, vault=vault, error=_text(exc))
            if self.bulk:
                with self._lock:
                    self._loaded.setdefault(vault, {})
                    self._unavailable.add(vault)
            return None

    def fresh(self, window: RenewalWindow | None) -> bool:
        return window is not None and window.recheck_at > self.now

    def needs_asking(self, issuer: str, kept: RenewalWindow | None, vault: str | None = None) -> bool:
        """Whether the CA should be asked now: nothing fresh is kept, and the issuer may be asked. Not in a
        sweep whose kept windows of the vault could not be loaded: it would read every certificate."""
        if self.fresh(kept):
            return False
        with self._lock:
            if vault in self._unavailable:
                return False
        return self._may_ask(issuer)

    # -- asking the CA ------------------------------------------------------------------------------------
    def window_for(self, current: CertificateVersion, issuer: str) -> RenewalWindow | None:
        """The window of a version already read (the orchestrator's step 1): kept and fresh, else asked."""
        thumbprint = thumbprint_of(current.cer)
        key = (current.vault, current.name, thumbprint)
        with self._lock:
            if key in self._asked:
                return self._asked[key]
        kept = self.kept(current.vault, current.name, issuer, thumbprint)
        window = kept
        if self.needs_asking(issuer, kept):
            window = self.ask(current.vault, current.name, issuer, kept=kept, current=current)
        with self._lock:
            self._asked[key] = window
        return window

    def ask(
        self,
        vault: str,
        name: str,
        issuer: str,
        *,
        kept: RenewalWindow | None = None,
        current: CertificateVersion | None = None,
        store: CertificateStore | None = None,
    ) -> RenewalWindow | None:
        """Ask the CA for the certificate's window and keep the answer. The certificate is read (from
        ``store``) only when neither ``kept`` nor ``current`` names it. Any failure is logged and answers
        ``kept`` (the last window of this version, possibly stale) or None: the policy decides then."""
        if current is None and kept is not None and kept.cert_id:
            cert_id, thumbprint = kept.cert_id, kept.thumbprint  # named before: no read
        else:
            if current is None:
                current = self._read(store, issuer, vault, name)
                if current is None:
                    return kept
            thumbprint = thumbprint_of(current.cer)
            if kept is not None and kept.thumbprint == thumbprint and kept.cert_id:
                cert_id = kept.cert_id
            else:
                try:
                    cert_id = ari_cert_id_of_der(current.cer)
                except ValueError:  # no Authority Key Identifier: ARI cannot name it; the policy decides
                    return self._keep(self._window(vault, name, issuer, thumbprint, "", None))
        if self.issuers is None:
            return kept
        try:
            client = self.issuers(issuer)
            if not isinstance(client, RenewalInfoProvider):
                return kept
            with self._lock:
                self.checks += 1
            info = client.renewal_info(cert_id)
        except Exception as exc:  # noqa: BLE001 - a CA without an answer leaves the decision to the policy
            self._failed(issuer, vault, name, "check", exc)
            return kept
        with self._lock:
            self._failures_in_a_row[issuer] = 0
        window = self._window(vault, name, issuer, thumbprint, cert_id, info)
        log_event(
            log,
            "ari.checked",
            vault=vault,
            certificate=name,
            issuer=issuer,
            cert_id=cert_id,
            start=window.start,
            end=window.end,
            recheck_at=window.recheck_at,
            explanation_url=window.explanation_url,
        )
        return self._keep(window)

    def _read(self, store: CertificateStore | None, issuer: str, vault: str, name: str) -> CertificateVersion | None:
        if store is None:
            return None
        try:
            current = store.get_current(name)
        except Exception as exc:  # noqa: BLE001 - reading for ARI never stops the sweep
            self._failed(issuer, vault, name, "read", exc)
            return None
        with self._lock:
            self.reads += 1
        return current

    def _window(
        self, vault: str, name: str, issuer: str, thumbprint: str, cert_id: str, info: RenewalInfo | None
    ) -> RenewalWindow:
        if info is None:
            return RenewalWindow(vault, name, thumbprint, issuer, cert_id, self.now, self.now + UNNAMED_RECHECK)
        return RenewalWindow(
            vault=vault,
            name=name,
            thumbprint=thumbprint,
            issuer=issuer,
            cert_id=cert_id,
            checked_at=self.now,
            recheck_at=self.now + recheck_delay(info.retry_after),
            start=info.start,
            end=info.end,
            explanation_url=info.explanation_url,
        )

    def _keep(self, window: RenewalWindow) -> RenewalWindow:
        if self.bulk:
            with self._lock:
                self._loaded.setdefault(window.vault, {})[window.name] = window
        if self.windows is not None:
            try:
                self.windows.keep(window)
            except Exception as exc:  # noqa: BLE001 - the decision stands; only the next run asks again
                log_event(
                    log,
                    "ari.window_not_kept",
                    level=logging.WARNING,
                    vault=window.vault,
                    certificate=window.name,
                    error=_text(exc),
                )
        return window

    def _failed(self, issuer: str, vault: str, name: str, step: str, exc: BaseException) -> None:
        """A failed read ("read") or CA answer ("check"); only the CA's failures count towards its pause."""
        with self._lock:
            self.failures += 1
            count = self._failures_in_a_row.get(issuer, 0) + (step == "check")
            self._failures_in_a_row[issuer] = count
        log_event(
            log,
            "ari.check_failed",
            level=logging.WARNING,
            vault=vault,
            certificate=name,
            issuer=issuer,
            step=step,
            error=_text(exc),
            paused=count >= FAILURES_BEFORE_PAUSE or None,
        )

    def with_kept_window(
        self,
        decision: DueDecision,
        *,
        vault: str,
        name: str,
        tags: Mapping[str, str] | None,
        thumbprint: str | None,
    ) -> DueDecision:
        """``decision`` with the window kept for this version, if any; never asks the CA (for views)."""
        if not thumbprint or decision.trigger in ("expired", "unknown"):
            return decision
        issuer = self.ari_issuer(vault, name, tags)
        if issuer is None:
            return decision
        return apply_window(decision, self.kept(vault, name, issuer, thumbprint), self.now)

    # -- what the orchestrator sends --------------------------------------------------------------------
    def replaces(self, current: CertificateVersion | None, issuer: str) -> str | None:
        """The identifier of the certificate a new order replaces (RFC 9773 §5): the current version, when
        the issuer's CA knows it (it suggested a window for it); None otherwise."""
        if current is None or current.expires_on is None or current.expires_on <= self.now:
            return None
        if self.ari_issuer(current.vault, current.name, current.tags) != issuer:
            return None
        window = self.window_for(current, issuer)
        return window.cert_id if window is not None and window.suggested and window.cert_id else None


def _text(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"
