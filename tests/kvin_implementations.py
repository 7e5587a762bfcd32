"""Both KVIN codecs, the compiled one and its pure-Python twin, for tests to run against."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from dcp_worker import kvin


def codec_modules() -> list[pytest.ParameterSet]:
    compiled = pytest.param("dcp_worker.sandbox_ext._kvin_codec", id="compiled")
    if os.environ.get(kvin.NO_EXTENSIONS_VARIABLE):
        compiled = pytest.param(compiled.values[0], id="compiled", marks=pytest.mark.skip("extensions off"))
    return [pytest.param("dcp_worker.sandbox_ext.kvin_codec", id="pure"), compiled]


@pytest.fixture(params=codec_modules())
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``dcp_worker.kvin`` running on one implementation. The compiled one must exist: a build
    that silently fell back to pure Python would otherwise pass for both."""
    module = importlib.import_module(request.param)
    monkeypatch.setattr(kvin, "_codec", module)
    yield module
