"""The selector in core/__init__.py: the compiled core is really loaded, and both twins expose one API."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

from active_quoting import core


def test_compiled_core_is_active_unless_disabled():
    if os.environ.get("AQ_NO_EXTENSIONS") == "1":
        assert core.IMPL == "py"
        assert core.Book.__module__ == "active_quoting.core._book_py"
    else:
        assert core.IMPL == "c"
        assert core.Book.__module__ == "active_quoting.core._book_c"
        assert core.parse_price.__module__ == "active_quoting.core._units_c"
        import active_quoting.core._book_c as compiled

        assert compiled.__file__.endswith((".so", ".pyd"))


def _selected_impl(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQ_")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", "from active_quoting import core; print(core.IMPL)"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_env_switches():
    assert _selected_impl({"AQ_NO_EXTENSIONS": "1"}).stdout.strip() == "py"
    assert _selected_impl({"AQ_REQUIRE_EXTENSIONS": "1"}).stdout.strip() == "c"


def test_load_refuses_unknown_implementation():
    with pytest.raises(ValueError, match="one of"):
        core.load("rust")


def _public(cls):
    return {n for n in dir(cls) if not n.startswith("_")}


@pytest.mark.parametrize("name", ["Book", "BookSet", "QuoteEngine", "MarkoutTracker"])
def test_classes_expose_the_same_api(c_core, py_core, name):
    c_cls, p_cls = getattr(c_core, name), getattr(py_core, name)
    assert _public(c_cls) == _public(p_cls)
    for attr in _public(p_cls):
        p_member, c_member = getattr(p_cls, attr), getattr(c_cls, attr)
        assert callable(p_member) == callable(c_member), attr
        if callable(p_member) and not isinstance(p_member, property):
            p_params = list(inspect.signature(p_member).parameters)
            c_params = list(inspect.signature(c_member).parameters)
            assert c_params == p_params, attr


def test_functions_and_constants_agree(c_core, py_core):
    for stem_names in core._MODULES.values():
        for name in stem_names:
            c_val, p_val = getattr(c_core, name), getattr(py_core, name)
            if callable(p_val) and not isinstance(p_val, type):
                assert list(inspect.signature(c_val).parameters) == list(inspect.signature(p_val).parameters), name
            elif not isinstance(p_val, type):
                assert c_val == p_val, name
