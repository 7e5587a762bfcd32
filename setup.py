"""Build script; the project's metadata is in pyproject.toml.

Each module of ``dcp_worker/sandbox_ext`` is compiled with Cython into a twin named with a
leading underscore, when Cython and a C compiler are at hand. Without them, or with the
environment variable ``DCP_WORKER_NO_EXTENSIONS`` set, the package installs as pure Python,
which behaves the same, only slower.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED_TWINS = {"dcp_worker.sandbox_ext._kvin_codec": "dcp_worker/sandbox_ext/kvin_codec.py"}


class OptionalBuildExt(build_ext):
    """Builds the compiled twins, and carries on without them when the build fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # any failure leaves the pure package
            print(f"dcp-worker: compiled extensions not built ({error}); using pure Python", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            print(f"dcp-worker: {ext.name} not built ({error}); using pure Python", file=sys.stderr)


def compiled_twins() -> list[Extension]:
    if os.environ.get("DCP_WORKER_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    extensions = [Extension(name, [source]) for name, source in COMPILED_TWINS.items()]
    # Annotations stay hints: read as C types, they would make the twins behave differently.
    directives = {"language_level": 3, "annotation_typing": False}
    try:
        return cythonize(extensions, compiler_directives=directives, quiet=True)
    except Exception as error:  # a Cython that cannot compile the source leaves the pure package
        print(f"dcp-worker: Cython failed ({error}); using pure Python", file=sys.stderr)
        return []


setup(ext_modules=compiled_twins(), cmdclass={"build_ext": OptionalBuildExt})
