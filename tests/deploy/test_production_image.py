"""Low: the production image installs the runtime requirements only: no test runner, browser driver or plotting."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = {"pytest", "pytest-django", "hypothesis", "respx", "playwright", "matplotlib"}


def _pins(path: Path) -> set[str]:
    return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==", path.read_text(), re.M)}


def test_the_runtime_lock_holds_no_test_or_bench_package():
    assert not DEV_ONLY & _pins(REPO / "requirements.txt")


def test_the_development_lock_adds_them_on_top_of_the_runtime_one():
    dev = REPO / "requirements-dev.txt"
    assert "-r requirements.txt" in dev.read_text().splitlines()
    assert DEV_ONLY <= _pins(dev) and not _pins(dev) & _pins(REPO / "requirements.txt")


def test_the_image_installs_only_the_runtime_lock():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-dev" not in dockerfile
    assert "-r /tmp/requirements.txt" in dockerfile
