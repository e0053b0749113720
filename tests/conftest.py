"""Loads every server plugin in tests/servers/ so their fixtures are available everywhere."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.servers.{p.stem}" for p in (Path(__file__).parent / "servers").glob("*.py") if p.stem != "__init__"
)
