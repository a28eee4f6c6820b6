"""Fixtures for the pure mapping tests: no Django models, no servers."""
import json
import os
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("CONFLICTDESK_SHARED_DIR", REPO_DIR.parent / "shared")).resolve() / "corpus"


def corpus_files(pattern: str) -> list[Path]:
    return sorted(CORPUS.glob(pattern))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8-sig"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"shared corpus not found at {CORPUS} (set CONFLICTDESK_SHARED_DIR)")
    return CORPUS
