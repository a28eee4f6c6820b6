"""The demo's people registered at more than one site, for HAPI's MDM to match (issue 19).

Each site knows a person under its own MRN (subject of the EHR, the site's ``mrn_system`` names
it centrally) and keeps name, birth date, sex and postal code in EHR_STATUS ``other_details``.
The cast shows each outcome of the match rules (deploy/hapi-fhir/mdm-rules.json):

* Margit Johansson at site1, site2 (registered there as "Johanson": a typo) and site3: one golden
  record (MATCH), so a treatment plan on her reaches all three sites;
* Lena Okafor at site1 and site3: one golden record;
* two different men called Thomas Meier born 1970-01-01, at site1 and site2, with other postal
  codes: a POSSIBLE_MATCH waiting on the steward's page.

Idempotent like the rest of the seed: EHRs are found by subject before one is made, EHR_STATUS is
written only when its demographics differ, compositions have deterministic uids (``seed_patient``).
Synthetic people: any likeness to a real person is chance.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

from sync.clients.openehr import OpenEHRClient
from sync.patients import ehr_status
from sync.patients.demographics import Demographics, from_ehr_status, other_details

from .generator import SUBJECT_NAMESPACE, generate_patient
from .seed import ensure_ehr, seed_patient


@dataclass(frozen=True)
class Person:
    key: str
    family: str
    given: tuple[str, ...]
    birth_date: str
    sex: str
    postal_code: str
    at: Mapping[int, Mapping[str, str]] = field(default_factory=dict)  # site number -> fields as that site has them


CAST = [
    Person("margit", "Johansson", ("Margit",), "1956-03-14", "female", "8001",
           at={1: {}, 2: {"family": "Johanson"}, 3: {}}),
    Person("lena", "Okafor", ("Lena",), "1988-11-02", "female", "4051", at={1: {}, 3: {}}),
    Person("thomas-zurich", "Meier", ("Thomas",), "1970-01-01", "male", "8001", at={1: {}}),
    Person("thomas-bern", "Meier", ("Thomas",), "1970-01-01", "male", "3000", at={2: {}}),
]


def mrn(site: int, key: str) -> str:
    """The person's MRN at one site: each site numbers its patients its own way."""
    digits = int(hashlib.sha256(f"{site}|{key}".encode()).hexdigest()[:8], 16) % 1_000_000
    return f"S{site}-{digits:06d}"


def registration(person: Person, site: int) -> Demographics:
    fields = {"family": person.family, "given": person.given, "birth_date": person.birth_date, "sex": person.sex,
              "postal_code": person.postal_code, **person.at.get(site, {})}
    return Demographics(mrn_system=SUBJECT_NAMESPACE, mrn=mrn(site, person.key), **fields)


def seed_people(clients: Mapping[str, OpenEHRClient], seed: int, *,
                progress: Callable[[str], None] = lambda m: None) -> int:
    """Register the cast at those of site1..site3 that ``clients`` has; returns compositions committed."""
    committed = 0
    for person in CAST:
        for site in sorted(person.at):
            client = clients.get(f"site{site}")
            if client is None:
                continue
            wanted = registration(person, site)
            ehr, _ = ensure_ehr(client, wanted.mrn)
            status = ehr_status.read(client, ehr.ehr_id) or {}
            if _fields(from_ehr_status(status)) != _fields(wanted):
                ehr_status.write(client, ehr.ehr_id, {**status, "other_details": other_details(wanted)})
            committed += seed_patient(client, generate_patient(seed, wanted.mrn, sex=person.sex,
                                                               facility=f"Synthetic Oncology Centre {site}"), seed).created
        progress(f"{person.key}: registered at site(s) {', '.join(str(s) for s in sorted(person.at))}")
    return committed


def _fields(d: Demographics | None) -> tuple:
    return (d.family, d.given, d.birth_date, d.sex, d.postal_code) if d else ()
