"""The vendored corpus is there, complete, and unedited.

Corpus-parametrised tests (mapping, guard, fuzz) would collect nothing if the
folder were empty; this test fails instead. Every file must be one SOURCES.md
lists, with the size and SHA-256 prefix listed there (the files are copied
byte-for-byte and must never be edited).
"""
import hashlib
import re

from tests.fixtures import CORPUS_DIR, FHIR_CORPUS, OPENEHR_CORPUS

ROW = re.compile(r"^\| `(?P<file>[^`]+)` \|.*\| (?P<bytes>\d+) \| `(?P<sha>[0-9a-f]{12})` \|$", re.M)


def _listed() -> dict[str, tuple[int, str]]:
    return {m["file"]: (int(m["bytes"]), m["sha"]) for m in ROW.finditer((CORPUS_DIR / "SOURCES.md").read_text())}


def _vendored() -> set[str]:
    return {p.relative_to(CORPUS_DIR).as_posix() for base in (FHIR_CORPUS, OPENEHR_CORPUS) for p in base.rglob("*")
            if p.is_file()}


def test_the_corpus_is_vendored_with_its_sources_and_licences():
    assert CORPUS_DIR.is_dir(), f"{CORPUS_DIR} is missing"
    for name in ("SOURCES.md", "LICENSES.md", "README.md", "LICENSES/Apache-2.0.txt", "LICENSES/CC0-1.0.txt"):
        assert (CORPUS_DIR / name).is_file(), f"{name} is missing from {CORPUS_DIR}"
    # Each kind the corpus-parametrised tests glob for is there.
    assert sorted(FHIR_CORPUS.glob("*.json")), "no FHIR resources"
    assert sorted((OPENEHR_CORPUS / "compositions").glob("*.composition.json")), "no canonical compositions"
    assert sorted((OPENEHR_CORPUS / "compositions").glob("*.flat.json")), "no FLAT compositions"
    assert sorted((OPENEHR_CORPUS / "templates").glob("*.opt")), "no templates"
    assert sorted((OPENEHR_CORPUS / "archetypes").glob("*.adl")), "no archetypes"


def test_every_file_is_listed_in_sources_and_unedited():
    listed = _listed()
    assert len(listed) >= 100, f"SOURCES.md lists only {len(listed)} files"
    vendored = _vendored()
    assert vendored == set(listed), {"not listed": sorted(vendored - set(listed)),
                                     "listed, missing": sorted(set(listed) - vendored)}
    changed = []
    for name, (size, sha) in listed.items():
        data = (CORPUS_DIR / name).read_bytes()
        if len(data) != size or hashlib.sha256(data).hexdigest()[:12] != sha:
            changed.append(name)
    assert not changed, f"vendored files differ from SOURCES.md (they must not be edited): {changed}"


def test_every_listed_licence_is_covered_by_licenses_md():
    licences = set(re.findall(r"\| (Apache-2\.0|CC-BY-SA-3\.0|CC-BY-4\.0|CC0-1\.0|CC0|MIT)\b[^|]*\| \d+ \|",
                              (CORPUS_DIR / "SOURCES.md").read_text()))
    covered = (CORPUS_DIR / "LICENSES.md").read_text()
    assert licences, "SOURCES.md names no licence"
    assert all(f"| {name}" in covered for name in licences), (licences, "not all in LICENSES.md")
