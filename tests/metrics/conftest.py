from tests.flow.conftest import flow, hook

__all__ = ["flow", "hook"]
