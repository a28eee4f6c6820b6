"""What a data steward sees: HAPI's open questions about who is who, side by side.

Each question is a pair: a site registration HAPI found a POSSIBLE_MATCH for (against a golden
record), or two golden records it suspects are one person (POSSIBLE_DUPLICATE). Each side shows
the demographics HAPI holds, the site registrations (site, MRN) behind it, and, per field, whether
the two agree; with HAPI's score. Read live from the central server on every view (nothing here
is stored), so a decision taken elsewhere is never shown as open.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sync.clients.errors import NotFound
from sync.clients.mdm import POSSIBLE_DUPLICATE, POSSIBLE_MATCH, MdmClient
from sync.models import PatientLink

# The fields the match rules weigh (deploy/hapi-fhir/mdm-rules.json), as the steward reads them.
FIELDS = [("name", "Name"), ("birth_date", "Birth date"), ("sex", "Sex"), ("postal_code", "Postal code")]


@dataclass
class Side:
    ref: str  # Patient/<id>
    golden: bool
    values: dict
    registrations: list = field(default_factory=list)  # PatientLinks (site, MRN) of this person


@dataclass
class Question:
    kind: str  # POSSIBLE_MATCH or POSSIBLE_DUPLICATE
    golden: Side
    other: Side
    score: float | None
    link_source: str
    agree: dict  # field -> True / False / None (one side has no value)

    @property
    def rows(self) -> list[tuple[str, str, str, bool | None]]:
        """(label, golden side, other side, agree) per field, in the rules' order."""
        return [(label, self.golden.values.get(name, ""), self.other.values.get(name, ""), self.agree[name])
                for name, label in FIELDS]

    @property
    def links(self) -> list[PatientLink]:
        return [*self.golden.registrations, *self.other.registrations]


def open_questions(fhir) -> list[Question]:
    mdm = MdmClient(fhir)
    pairs = [(link, POSSIBLE_MATCH) for link in mdm.links(match_result=POSSIBLE_MATCH)]
    pairs += [(link, POSSIBLE_DUPLICATE) for link in mdm.duplicates()]
    questions = []
    for link, kind in pairs:
        golden, other = _side(fhir, mdm, link.golden, True), _side(fhir, mdm, link.source, kind == POSSIBLE_DUPLICATE)
        if golden is None or other is None:  # merged or removed since HAPI listed it
            continue
        questions.append(Question(kind=kind, golden=golden, other=other, score=link.score, link_source=link.link_source,
                                  agree={name: _agree(golden.values.get(name), other.values.get(name))
                                         for name, _ in FIELDS}))
    return questions


def _side(fhir, mdm: MdmClient, ref: str, golden: bool) -> Side | None:
    try:
        patient = fhir.read(*ref.split("/", 1))
    except NotFound:
        return None
    sources = [r.split("/", 1)[1] for r in mdm.sources_of(ref)] if golden else [ref.split("/", 1)[1]]
    registrations = list(PatientLink.objects.select_related("site").filter(fhir_patient_id__in=sources)
                         .order_by("site__name", "pk"))
    return Side(ref=ref, golden=golden, values=_values(patient), registrations=registrations)


def _values(patient: dict) -> dict:
    name = (patient.get("name") or [{}])[0]
    return {
        "name": " ".join([*name.get("given", []), name.get("family", "")]).strip(),
        "birth_date": patient.get("birthDate", ""),
        "sex": patient.get("gender", ""),
        "postal_code": ((patient.get("address") or [{}])[0]).get("postalCode", ""),
    }


def _agree(left, right):
    if not left or not right:
        return None
    return left.casefold() == right.casefold()

