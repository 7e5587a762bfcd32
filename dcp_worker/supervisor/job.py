"""What a sandbox is assigned: a work function, its arguments and its modules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.json_dump import dump_json

# What a sandbox here runs: JavaScript work functions, as DCP's map-basic worktime does.
WORKTIMES = ({"name": "map-basic", "version": "1.0.0"},)


@dataclass(frozen=True)
class Module:
    source: str
    filename: str


@dataclass(frozen=True)
class JobSpec:
    """A job as a sandbox runs it. ``arguments`` are in tagged JSON (see ``dcp_worker.tagged_json``)."""

    work_function: str
    filename: str = "work-function.js"
    arguments: Sequence[Any] = ()
    modules: Mapping[str, Module] = field(default_factory=dict)
    public: Mapping[str, str] = field(default_factory=dict)
    # DCP compiles work functions in strict mode only for jobs that ask (useStrict); in strict
    # mode the function's `this` is null, in sloppy mode the global object.
    strict: bool = True

    def assign_message(self) -> bytes:
        return dump_json(
            {
                "op": "assign",
                "job": {
                    "workFunction": self.work_function,
                    "strict": self.strict,
                    "filename": self.filename,
                    "modules": {
                        name: {"source": module.source, "filename": module.filename}
                        for name, module in self.modules.items()
                    },
                    "config": {"arguments": list(self.arguments), "public": dict(self.public)},
                },
            }
        )
