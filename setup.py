"""Build the compiled core: one extension per .pyx under src_cython/, named by its path.

Set AQ_DEBUG_BUILD=1 to compile with bounds, wraparound and overflow checks on; the core
suite must pass under that build too (`make test-debug`).
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent
CYTHON_ROOT = ROOT / "src_cython"
DEBUG = os.environ.get("AQ_DEBUG_BUILD") == "1"


def extensions() -> list[Extension]:
    exts = []
    for pyx in sorted(CYTHON_ROOT.rglob("*.pyx")):
        rel = pyx.relative_to(CYTHON_ROOT).with_suffix("")
        name = ".".join(rel.parts)
        exts.append(
            Extension(
                name,
                [str(pyx.relative_to(ROOT))],
                include_dirs=[str(CYTHON_ROOT)],
                extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
            )
        )
    return exts


directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "overflowcheck": DEBUG,
    "initializedcheck": DEBUG,
    # Python semantics for // and % on signed ints: rounding direction is part of the spec.
    "cdivision": False,
    "embedsignature": True,
    "autotestdict": False,
}

setup(
    ext_modules=cythonize(
        extensions(),
        compiler_directives=directives,
        include_path=[str(CYTHON_ROOT)],
        build_dir="build/cython-debug" if DEBUG else None,
    ),
)
