"""ipr.native: the one switch between compiled code and its pure-Python twins."""
import logging

import pytest

from ipr import native


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    native.reset()
    yield
    native.reset()


def test_auto_takes_the_compiled_module_and_says_so(monkeypatch, caplog):
    monkeypatch.delenv("IPR_NATIVE", raising=False)
    caplog.set_level(logging.INFO, "ipr.native")
    import json
    assert native.compiled("json", "the JSON codec") is json
    assert "the JSON codec: compiled (json)" in caplog.text


def test_auto_falls_back_to_the_twin_and_says_why(monkeypatch, caplog):
    monkeypatch.setenv("IPR_NATIVE", "auto")
    caplog.set_level(logging.INFO, "ipr.native")
    assert native.compiled("ipr._no_such_extension", "a missing part") is None
    assert "a missing part: pure Python (no compiled module: No module named 'ipr._no_such_extension')" \
        in caplog.text


@pytest.mark.parametrize("value", ["0", "python", "off"])
def test_zero_forces_the_twin(monkeypatch, caplog, value):
    monkeypatch.setenv("IPR_NATIVE", value)
    caplog.set_level(logging.INFO, "ipr.native")
    assert native.compiled("json", "the JSON codec") is None
    assert f"the JSON codec: pure Python (IPR_NATIVE={value})" in caplog.text


def test_one_requires_the_compiled_module(monkeypatch):
    monkeypatch.setenv("IPR_NATIVE", "1")
    with pytest.raises(ImportError, match="IPR_NATIVE=1 asks for the compiled ipr._no_such_extension"):
        native.compiled("ipr._no_such_extension", "a missing part")


def test_the_choice_is_made_and_logged_once_per_mode(monkeypatch, caplog):
    monkeypatch.setenv("IPR_NATIVE", "auto")
    caplog.set_level(logging.INFO, "ipr.native")
    for _ in range(3):
        native.compiled("json", "the JSON codec")
    assert caplog.text.count("the JSON codec: compiled") == 1
    monkeypatch.setenv("IPR_NATIVE", "0")
    assert native.compiled("json", "the JSON codec") is None
