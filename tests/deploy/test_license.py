"""The licence a user reads (LICENSE) is the one the package metadata states.

The image label is checked against the metadata in test_dockerfile.py.
"""

from __future__ import annotations

import re
import tomllib

from . import REPO, dockerfile_instructions

SPDX = "Apache-2.0"


def test_license_is_the_full_apache_2_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_metadata_uses_the_spdx_form_its_build_backend_supports() -> None:
    """A license table makes setuptools 77+ print a deprecation warning at every install."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == SPDX
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    setuptools = next(r for r in pyproject["build-system"]["requires"] if "setuptools" in r)
    bound = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert bound is not None, setuptools
    assert int(bound[1]) >= 77, "the SPDX string form needs setuptools 77"


def test_the_image_build_has_the_license_file() -> None:
    copies = [i.args.split() for i in dockerfile_instructions() if i.keyword == "COPY"]
    assert any("LICENSE" in args for args in copies), "license-files needs LICENSE in the build"
