"""The emulator's state and behaviour without HTTP: vaults, clock, knobs, events, persistence."""

from __future__ import annotations

import threading
from pathlib import Path

from . import store
from .backup import BackupSealer
from .certificates import CertificateService
from .clock import Clock
from .events import EventGrid
from .limits import RequestGate
from .store import Vault


class Emulator:
    def __init__(
        self,
        *,
        state_path: Path | None = None,
        subscription_id: str = store.DEFAULT_SUBSCRIPTION,
        resource_group: str = "emulator-rg",
    ) -> None:
        self.state_path = state_path
        self.subscription_id = subscription_id  # a new vault's subscription unless one is given
        self.vaults: dict[str, Vault] = {}
        offset, backup_key = 0.0, None
        if state_path is not None:
            self.vaults, offset, backup_key = store.load(state_path)
        self.clock = Clock(offset)
        self.gate = RequestGate()
        self.events = EventGrid(self.clock, resource_group=resource_group)
        # The key that seals backups is the instance's: kept in the state file, so blobs outlive a restart.
        self.backups = BackupSealer(backup_key)
        self.service = CertificateService(self.clock, self.events, on_change=self.mark_dirty, backups=self.backups)
        self.base_urls: dict[str, str] = {}
        self._dirty = False
        self._scan_lock = threading.Lock()  # a clock move and its scan are one step for the background tick
        self._stop = threading.Event()
        self._background = threading.Thread(target=self._tick, daemon=True, name="emulator-tick")
        self._background.start()

    def vault(self, name: str) -> Vault:
        vault = self.vaults.get(name)
        return vault if vault is not None else self.vaults.setdefault(name, Vault(name, self.subscription_id))

    def add_vault(self, name: str, *, subscription: str | None = None, geography: str | None = None) -> Vault:
        """The vault, made if new; the subscription and geography given replace the vault's."""
        vault = self.vault(name)
        with vault.lock:
            vault.subscription = subscription or vault.subscription
            vault.geography = geography or vault.geography
        self.mark_dirty()
        return vault

    def mark_dirty(self) -> None:
        self._dirty = True

    def reset(self) -> None:
        """Fresh vaults (same names, URLs, subscriptions and geographies), default knobs, zero counters, clock
        back to real time."""
        self.events.clear()
        for name, old in list(self.vaults.items()):
            self.vaults[name] = Vault(name, old.subscription, old.geography)
        self.gate.reset()
        self.clock.reset()
        self.events.time_scale = 1.0
        self.mark_dirty()

    def scan_expiry(self) -> int:
        with self._scan_lock:
            return self._scan()

    def _scan(self) -> int:
        fired = 0
        for name, vault in list(self.vaults.items()):
            if name in self.base_urls:
                fired += self.events.scan_expiry(vault, self.base_urls[name])
        return fired

    def advance_clock(self, seconds: float) -> int:
        """Move the clock forward and publish the NearExpiry/Expired events that became due."""
        with self._scan_lock:
            self.clock.advance(seconds)
            self.mark_dirty()
            return self._scan()

    def save(self) -> None:
        if self.state_path is not None:
            self._dirty = False
            store.save(self.state_path, self.vaults, self.clock.offset, self.backups.key)

    def _tick(self) -> None:
        # Real time passes too: expiry is checked every second, and state is saved when it changed.
        while not self._stop.wait(1.0):
            self.scan_expiry()
            if self._dirty:
                self.save()

    def close(self) -> None:
        self._stop.set()
        self.events.stop()
        self.save()
