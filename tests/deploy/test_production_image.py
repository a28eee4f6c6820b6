"""Low: the production image installs the runtime requirements only (no test runner, browser driver or
plotting), and every install, the image's, the development venv's and so CI's, is hash-locked."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = {"pytest", "pytest-django", "hypothesis", "respx", "playwright", "matplotlib"}
RUNTIME, DEV = REPO / "requirements.txt", REPO / "requirements-dev.txt"


def _pins(path: Path) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M)}


def _requirements(path: Path) -> list[str]:
    """Each requirement with its continuation lines joined (pip's own reading of a `\\`-continued line)."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_runtime_lock_holds_no_test_or_bench_package():
    assert not DEV_ONLY & set(_pins(RUNTIME))


def test_the_development_lock_is_the_runtime_lock_plus_the_tools():
    runtime, dev = _pins(RUNTIME), _pins(DEV)
    assert DEV_ONLY <= set(dev)
    assert {name: dev.get(name) for name in runtime} == runtime  # every runtime pin, at the same version


def test_every_locked_requirement_carries_a_sha256():
    for path in (RUNTIME, DEV):
        requirements = _requirements(path)
        assert requirements
        for line in requirements:
            assert re.match(r"^[A-Za-z0-9_.\-]+==\S+( +--hash=sha256:[0-9a-f]{64})+ *$", line), (path.name, line)


def test_every_install_requires_the_hashes():
    makefile, dockerfile = (REPO / "Makefile").read_text(), (REPO / "Dockerfile").read_text()
    venv_installs = [line for line in makefile.splitlines() if "pip install" in line and "-r requirements" in line]
    assert venv_installs and all("--require-hashes" in line for line in venv_installs)
    image_installs = [line for line in dockerfile.splitlines() if re.search(r"pip (install|wheel) .*-r ", line)]
    assert len(image_installs) == 2 and all("--require-hashes" in line for line in image_installs)
    assert "--generate-hashes" in makefile


def test_the_image_installs_only_the_runtime_lock():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-dev" not in dockerfile
    assert "-r /tmp/requirements.txt" in dockerfile
