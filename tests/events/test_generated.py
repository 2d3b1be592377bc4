"""The committed generated models are exactly what the generator writes today."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from bridge.events import generated
from tests.support.scripts import import_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_models.py"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """The generator script, imported from its path."""
    return import_script(SCRIPT, "generate_models")


def test_generated_file_equals_the_generator_output(generator: ModuleType) -> None:
    committed = Path(generated.__file__).read_text(encoding="utf-8")

    assert generator.render(generator.load_catalog(), generator.load_emitted()) == committed


def test_generator_is_deterministic(generator: ModuleType) -> None:
    catalog = generator.load_catalog()
    emitted = generator.load_emitted()
    reordered = dict(reversed(list(catalog.items())))
    events = emitted["events"]
    reordered_emitted = {**emitted, "events": dict(reversed(list(events.items())))}

    assert generator.render(reordered, reordered_emitted) == generator.render(catalog, emitted)


def test_check_mode_passes_on_the_committed_file(generator: ModuleType) -> None:
    assert generator.main(["--check"]) == 0


def test_generator_refuses_a_required_field_the_event_lacks(generator: ModuleType) -> None:
    catalog = generator.load_catalog()
    catalog["Hangup"] = {**catalog["Hangup"], "fields": ["Channel"]}

    emitted = generator.load_emitted()
    emitted["events"].pop("Hangup")

    with pytest.raises(ValueError, match="Hangup"):
        generator.render(catalog, emitted)
