"""Both KVIN codecs, the compiled one and its pure-Python twin, for tests to run against."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from dcp_worker import kvin

PURE = "dcp_worker.sandbox_ext.kvin_codec"
COMPILED = "dcp_worker.sandbox_ext._kvin_codec"


def extensions_off() -> bool:
    return bool(os.environ.get(kvin.NO_EXTENSIONS_VARIABLE))


def implementations() -> list[str]:
    """The codec modules under test: both, unless extensions are turned off."""
    return [PURE] if extensions_off() else [PURE, COMPILED]


def codec_modules() -> list[pytest.ParameterSet]:
    skip = [pytest.mark.skip("extensions off")] if extensions_off() else []
    return [pytest.param(PURE, id="pure"), pytest.param(COMPILED, id="compiled", marks=skip)]


@pytest.fixture(params=codec_modules())
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``dcp_worker.kvin`` running on one implementation. The compiled one must exist: a build
    that silently fell back to pure Python would otherwise pass for both."""
    module = importlib.import_module(request.param)
    monkeypatch.setattr(kvin, "_codec", module)
    yield module
