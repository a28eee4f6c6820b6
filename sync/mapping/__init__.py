"""Pure openEHR <-> FHIR R4 transform layer (no Django, no network).

Public API (kept stable; see README.md):
    to_fhir, to_openehr, from_fhir, map_back, MappingResult, OpenEHRResult, Loss, build_provenance,
    validate_fhir, clinical_content, compare_clinical, errors.
"""
from .convert import to_fhir
from .errors import MalformedInput, MappingError, UnknownArchetype, UnmappedTemplate
from .fidelity import clinical_content, compare_clinical
from .from_fhir import from_fhir, map_back, to_openehr
from .provenance import build_provenance
from .results import Loss, MappingResult, OpenEHRResult
from .validate import validate_fhir

__all__ = ["to_fhir", "to_openehr", "from_fhir", "map_back", "MappingResult", "OpenEHRResult", "Loss",
           "build_provenance", "validate_fhir", "clinical_content", "compare_clinical", "MappingError",
           "UnknownArchetype", "UnmappedTemplate", "MalformedInput"]
