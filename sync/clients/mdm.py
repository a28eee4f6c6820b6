"""HAPI FHIR's MDM operations on the central server: who is linked to whom, and a steward's say.

HAPI links every Patient that carries demographics to a golden Patient (MATCH) or flags the
pair for a person (POSSIBLE_MATCH, and POSSIBLE_DUPLICATE between two golden records); the rules
are deploy/hapi-fhir/mdm-rules.json. These calls ride on the FHIR client's session (same base,
credentials, timeouts and error mapping). Answers are ``Parameters`` resources; ``MdmLink`` is
one ``link`` part of them, flattened.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .fhir import FHIR_JSON, FHIRClient

MATCH = "MATCH"
POSSIBLE_MATCH = "POSSIBLE_MATCH"
POSSIBLE_DUPLICATE = "POSSIBLE_DUPLICATE"
NO_MATCH = "NO_MATCH"
# The tag HAPI puts on the golden records it makes.
GOLDEN_TAG = ("http://hapifhir.io/fhir/NamingSystem/mdm-record-status", "GOLDEN_RECORD")


@dataclass(frozen=True)
class MdmLink:
    golden: str  # "Patient/<id>"
    source: str  # "Patient/<id>"
    match_result: str
    link_source: str  # AUTO or MANUAL
    score: float | None
    matched_rules: tuple[str, ...]  # names of the rules' matchFields that matched


def _link(parts: list[dict[str, Any]]) -> MdmLink:
    values: dict[str, Any] = {}
    rules: list[str] = []
    for part in parts:
        name = part.get("name")
        if name == "matchedRules":
            # one part per matchResultMap entry that fired: its "rule" is the field list
            rules.extend(p.get("valueString", "") for p in part.get("part", []) if p.get("name") == "rule")
            continue
        value = next((v for k, v in part.items() if k.startswith("value")), None)
        values[name] = value
    score = values.get("score")
    return MdmLink(
        golden=values.get("goldenResourceId", ""),
        source=values.get("sourceResourceId", ""),
        match_result=values.get("matchResult", ""),
        link_source=values.get("linkSource", ""),
        score=float(score) if score is not None else None,
        matched_rules=tuple(r for r in rules if r),
    )


def _params(**values: str) -> dict:
    return {"resourceType": "Parameters",
            "parameter": [{"name": k, "valueString": v} for k, v in values.items() if v is not None]}


class MdmClient:
    """The ``$mdm-*`` operations of the central server."""

    def __init__(self, fhir: FHIRClient, *, page_size: int = 100):
        self.http = fhir.http
        self.page_size = page_size

    def links(self, *, golden: str | None = None, source: str | None = None,
              match_result: str | None = None) -> Iterator[MdmLink]:
        """``$mdm-query-links``, every page; filters as HAPI takes them (``Patient/<id>``)."""
        params = {k: v for k, v in {"goldenResourceId": golden, "resourceId": source,
                                    "matchResult": match_result, "_count": str(self.page_size)}.items() if v}
        offset = 0
        while True:
            answer = self.http.request("GET", "$mdm-query-links", params={**params, "_offset": str(offset)}).json()
            links = [_link(p.get("part", [])) for p in answer.get("parameter", []) if p.get("name") == "link"]
            yield from links
            if len(links) < self.page_size:
                return
            offset += len(links)

    def duplicates(self) -> list[MdmLink]:
        """``$mdm-duplicate-golden-resources``: pairs of golden records that may be one person."""
        answer = self.http.request("GET", "$mdm-duplicate-golden-resources",
                                   params={"_count": str(self.page_size)}).json()
        return [_link(p.get("part", [])) for p in answer.get("parameter", []) if p.get("name") == "link"]

    def golden_of(self, patient: str) -> str | None:
        """The golden record a (source) Patient is MATCHed to, or None."""
        return next((link.golden for link in self.links(source=patient, match_result=MATCH)), None)

    def sources_of(self, golden: str) -> list[str]:
        """The source Patients MATCHed to a golden record (possible matches are not the person yet)."""
        return [link.source for link in self.links(golden=golden, match_result=MATCH)]

    def update_link(self, golden: str, source: str, match_result: str) -> MdmLink:
        """``$mdm-update-link``: a person's MATCH or NO_MATCH on a pair HAPI linked or suspected."""
        answer = self._post("$mdm-update-link", _params(goldenResourceId=golden, resourceId=source,
                                                        matchResult=match_result))
        return _link(answer.get("parameter", [])) if answer.get("resourceType") == "Parameters" else MdmLink(
            golden, source, match_result, "MANUAL", None, ())

    def not_duplicate(self, golden: str, other_golden: str) -> None:
        """``$mdm-not-duplicate``: two golden records are two people."""
        self._post("$mdm-not-duplicate", _params(goldenResourceId=golden, resourceId=other_golden))

    def merge_golden(self, from_golden: str, to_golden: str) -> dict:
        """``$mdm-merge-golden-resources``: ``from`` is retired into ``to``, its links move along."""
        return self._post("$mdm-merge-golden-resources",
                          _params(fromGoldenResourceId=from_golden, toGoldenResourceId=to_golden))

    def _post(self, operation: str, body: dict) -> dict:
        return self.http.request("POST", operation, json=body, headers={"Content-Type": FHIR_JSON}).json()
