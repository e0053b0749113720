"""A token credential for the emulator: any well-formed bearer token is accepted there."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken


class EmulatorCredential:
    """Stands in for ``DefaultAzureCredential``; accepts the SDK's ``tenant_id``/``enable_cae`` kwargs."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("emulator-token", int(time.time()) + 3600)

    def close(self) -> None:
        pass

    def __enter__(self) -> EmulatorCredential:
        return self

    def __exit__(self, *args: object) -> None:
        pass
