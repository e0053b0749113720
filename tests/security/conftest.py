"""The security suite runs against the same wiring as the flow tests: the emulator, Azurite, a local CA."""

from tests.flow.conftest import Flow, flow, hook, make_config  # noqa: F401 - fixtures
