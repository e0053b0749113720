"""Helpers shared by the storage adapter tests."""

from __future__ import annotations

import base64
import datetime as dt

from renewal.model import RenewalJob


def job(name: str = "web", vault: str = "kv-one", **kwargs: object) -> RenewalJob:
    return RenewalJob(vault=vault, name=name, reason="event", trigger_id=f"evt-{name}", **kwargs)  # type: ignore[arg-type]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def at(minutes: int = 0) -> dt.datetime:
    return dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
