"""A site's demographics, read from its EHR_STATUS, as one central Patient per site registration.

Many EHRbase deployments keep the patient's identity in the EHR itself: the MRN as EHR_STATUS
``subject.external_ref`` (its ``namespace`` is the site's MRN system) and name, birth date and sex
as ELEMENTs of ``other_details``. Which element holds which field is per site
(``Site.demographics_fields``: element name or archetype node id per field, else ``DEFAULT_FIELDS``).

The central Patient is the site's registration: identified by the site's MRN system and value,
never edited by another site; HAPI's MDM links it to the golden Patient of the person. Pure
functions, no Django, no I/O. Nothing here logs: every value is patient data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

FIELDS = ("family", "given", "birth_date", "sex", "postal_code")
DEFAULT_FIELDS = {
    "family": "Family name",
    "given": "Given names",
    "birth_date": "Date of birth",
    "sex": "Sex",
    "postal_code": "Postal code",
}
# FHIR administrative gender from the codes sites use (openEHR local, HL7 v2, SNOMED CT).
_SEX = {
    "male": "male", "m": "male", "248153007": "male",
    "female": "female", "f": "female", "248152002": "female",
    "other": "other", "o": "other", "x": "other", "32570681000036106": "other",
    "unknown": "unknown", "u": "unknown",
}
MRN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


@dataclass(frozen=True)
class Demographics:
    mrn_system: str
    mrn: str
    family: str = ""
    given: tuple[str, ...] = ()
    birth_date: str = ""  # ISO date
    sex: str = ""  # FHIR administrative gender, "" when the site records none
    postal_code: str = ""
    version: str = ""  # EHR_STATUS version uid these came from

    def identifier(self) -> dict:
        return {"use": "usual", "type": MRN_TYPE, "system": self.mrn_system, "value": self.mrn}


def from_ehr_status(status: dict, *, mrn_system: str = "", fields: dict | None = None) -> Demographics | None:
    """The demographics of an EHR_STATUS, or None when it names no subject (no MRN, no Patient)."""
    ref = ((status.get("subject") or {}).get("external_ref")) or {}
    mrn = (ref.get("id") or {}).get("value")
    system = mrn_system or ref.get("namespace") or ""
    if not mrn or not system:
        return None
    names = {**DEFAULT_FIELDS, **(fields or {})}
    values = {field: _value(status.get("other_details"), names[field]) for field in FIELDS}
    return Demographics(
        mrn_system=system,
        mrn=mrn,
        family=values["family"].strip(),
        given=tuple(values["given"].split()),
        birth_date=values["birth_date"][:10],
        sex=_SEX.get(values["sex"].strip().lower(), "unknown" if values["sex"] else ""),
        postal_code=values["postal_code"].strip(),
        version=(status.get("uid") or {}).get("value", ""),
    )


def to_patient(d: Demographics, extra_identifiers: list[dict] = ()) -> dict:
    """The site registration as a FHIR Patient (what MDM matches on)."""
    patient: dict[str, Any] = {"resourceType": "Patient", "active": True,
                               "identifier": [d.identifier(), *extra_identifiers]}
    if d.family or d.given:
        patient["name"] = [{"use": "official", **({"family": d.family} if d.family else {}),
                            **({"given": list(d.given)} if d.given else {})}]
    if d.sex:
        patient["gender"] = d.sex
    if d.birth_date:
        patient["birthDate"] = d.birth_date
    if d.postal_code:
        patient["address"] = [{"postalCode": d.postal_code}]
    return patient


def other_details(d: Demographics, fields: dict | None = None) -> dict:
    """An EHR_STATUS ``other_details`` holding ``d`` (for sites seeded by the demo and tests)."""
    names = {**DEFAULT_FIELDS, **(fields or {})}
    values = {"family": d.family, "given": " ".join(d.given), "birth_date": d.birth_date,
              "sex": d.sex, "postal_code": d.postal_code}
    items = []
    for n, field in enumerate(FIELDS, start=2):
        if not values[field]:
            continue
        value = ({"_type": "DV_DATE", "value": values[field]} if field == "birth_date" else
                 {"_type": "DV_CODED_TEXT", "value": values[field],
                  "defining_code": {"terminology_id": {"value": "local"}, "code_string": values[field]}}
                 if field == "sex" else {"_type": "DV_TEXT", "value": values[field]})
        items.append({"_type": "ELEMENT", "archetype_node_id": f"at{n:04d}", "name": {"value": names[field]},
                      "value": value})
    return {"_type": "ITEM_TREE", "archetype_node_id": "at0001", "name": {"value": "Demographics"}, "items": items}


def _elements(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if node.get("_type") == "ELEMENT":
            yield node
        for item in node.get("items") or []:
            yield from _elements(item)


def _value(tree: Any, name: str) -> str:
    """The text of the first ELEMENT named ``name`` (or with that archetype node id), else ""."""
    for element in _elements(tree):
        if name in ((element.get("name") or {}).get("value"), element.get("archetype_node_id")):
            value = element.get("value") or {}
            code = ((value.get("defining_code") or {}).get("code_string"))
            return str(code or value.get("value") or "")
    return ""
