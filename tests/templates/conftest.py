"""The template builder (deploy/templates/build_oncology_opt.py) and its ADL reader (adl.py beside it),
loaded once per session: deploy/ is not a package."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "templates" / "build_oncology_opt.py"


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def builder():
    return sys.modules.get("build_oncology_opt") or load("build_oncology_opt", SCRIPT)


@pytest.fixture(scope="session")
def adl(builder):
    return sys.modules["adl"]  # imported by the builder from its own folder
