"""openEHR terminology ids <-> FHIR code system URIs, and our own URIs.

One table both ways so that a CODE_PHRASE survives a round trip exactly:
well-known ids map to HL7 URIs, absolute URIs stay themselves, anything else
(``local``, ``openehr``, odd template ids) is wrapped in a URI of ours that
encodes the original id.
"""
from __future__ import annotations

from urllib.parse import quote, unquote

BASE = "https://conflictdesk.example.org/fhir"
SD_BASE = f"{BASE}/StructureDefinition/"
SOURCE_SYSTEM = "urn:conflictdesk:source"
LOCAL_SYSTEM = f"{BASE}/CodeSystem/openehr-local"
WRAPPED_PREFIX = f"{BASE}/CodeSystem/openehr-terminology/"
UCUM = "http://unitsofmeasure.org"

# Known ids; the first id listed for a URI is the one written back.
_KNOWN: list[tuple[str, str]] = [
    ("SNOMED-CT", "http://snomed.info/sct"),
    ("SNOMED CT", "http://snomed.info/sct"),
    ("SNOMEDCT", "http://snomed.info/sct"),
    ("LOINC", "http://loinc.org"),
    ("ICD10", "http://hl7.org/fhir/sid/icd-10"),
    ("ICD-10", "http://hl7.org/fhir/sid/icd-10"),
    ("ICD-O-3", "http://terminology.hl7.org/CodeSystem/icd-o-3"),  # oncology morphology (histology) and topography
    ("UCUM", UCUM),
    ("RxNorm", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ("RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ("ATC", "http://www.whocc.no/atc"),
    ("MedDRA", "http://terminology.hl7.org/CodeSystem/mdr"),
    ("DICOM", "http://dicom.nema.org/resources/ontology/DCM"),  # DICOM PS3.16 codes (modality, 121071 Finding)
    ("DCM", "http://dicom.nema.org/resources/ontology/DCM"),
    ("local", LOCAL_SYSTEM),
]
_TO_URI = {k: v for k, v in _KNOWN}
_TO_ID: dict[str, str] = {}
for _k, _v in _KNOWN:
    _TO_ID.setdefault(_v, _k)



# A FHIR coding's own "local" (a bare word, no URI) or a coding without a system names no openEHR archetype's at-codes.
# Read as openEHR "local" it took the entry archetype's at-code of the same name: the NEWS2 corpus bundle's ACVPU
# {system "local", code at0007, "Mentally alert"} is at0007 "Pain" in OBSERVATION.acvpu.v1, a wrong meaning.  Each
# gets a terminology id of its own, and comes back to FHIR as it was sent.
FHIR_LOCAL, FHIR_NO_SYSTEM = "FHIR-local", "FHIR-no-system"


def system_for(terminology_id: str) -> str | None:
    """FHIR Coding.system for an openEHR terminology id (None: the coding came from FHIR without one)."""
    if terminology_id == FHIR_NO_SYSTEM:
        return None
    if terminology_id == FHIR_LOCAL:
        return "local"
    if terminology_id in _TO_URI:
        return _TO_URI[terminology_id]
    if terminology_id.startswith(("http://", "https://", "urn:")) and " " not in terminology_id:
        return terminology_id
    return WRAPPED_PREFIX + quote(terminology_id, safe="")


def terminology_for(system: str | None) -> str:
    """openEHR terminology id for a FHIR Coding.system (inverse of system_for)."""
    if not system:
        return FHIR_NO_SYSTEM
    if system == "local":
        return FHIR_LOCAL
    if system.startswith(WRAPPED_PREFIX):
        return unquote(system[len(WRAPPED_PREFIX):])
    return _TO_ID.get(system, system)
