"""smallstep step-ca as a session fixture (``stepca``), built by tools/build-stepca.sh from Debian's
packages; its ACME provisioner's dns-01 checks ask the ``challtestsrv`` fixture's DNS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.pebble import ChallTestSrv
from devtools.stepca import STEP_CA, StepCA, running_stepca
from tests.servers import unavailable


@pytest.fixture(scope="session")
def stepca(tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv) -> Iterator[StepCA]:
    if not STEP_CA.is_file():
        unavailable("step-ca", f"{STEP_CA} not built (make test builds it as root: tools/build-stepca.sh)")
    with running_stepca(tmp_path_factory.mktemp("stepca"), challtestsrv) as server:
        yield server
