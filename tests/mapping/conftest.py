"""Fixtures for the pure mapping tests: no Django models, no servers."""
import json
from pathlib import Path

import pytest

from sync.mapping import templates
from tests.fixtures import CORPUS_DIR

REPO_DIR = Path(__file__).resolve().parents[2]
CORPUS = CORPUS_DIR


def corpus_files(pattern: str) -> list[Path]:
    return sorted(CORPUS.glob(pattern))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8-sig"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"vendored corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(autouse=True)
def own_template_index(monkeypatch):
    """The OPTs a test registers stay in that test: the index is process-wide, and the engine tests that
    run after these expect the engine's state, no template registered (it registers none)."""
    monkeypatch.setattr(templates, "_TEMPLATES", dict(templates._TEMPLATES))
