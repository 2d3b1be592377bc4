"""The committed generated models are exactly what the generator writes today."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bridge.events import generated

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_models.py"


@pytest.fixture(scope="module")
def generator() -> Iterator[ModuleType]:
    """The generator script, imported from its path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("generate_models", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is created.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_generated_file_equals_the_generator_output(generator: ModuleType) -> None:
    committed = Path(generated.__file__).read_text(encoding="utf-8")

    assert generator.render(generator.load_catalog()) == committed


def test_generator_is_deterministic(generator: ModuleType) -> None:
    catalog = generator.load_catalog()
    reordered = dict(reversed(list(catalog.items())))

    assert generator.render(reordered) == generator.render(catalog)


def test_check_mode_passes_on_the_committed_file(generator: ModuleType) -> None:
    assert generator.main(["--check"]) == 0


def test_generator_refuses_a_required_field_the_event_lacks(generator: ModuleType) -> None:
    catalog = generator.load_catalog()
    catalog["Hangup"] = {**catalog["Hangup"], "fields": ["Channel"]}

    with pytest.raises(ValueError, match="Hangup"):
        generator.render(catalog)
