"""The central side's "who and when" on the real HAPI: a clinician's edit posted with its Provenance in one
transaction (HAPI strips the version from Provenance.target, so the time the Provenance was stored is what
ties it to the version), the Practitioner read for the name, and a later version with no Provenance of its
own naming nobody."""
import uuid
from datetime import datetime, timezone

import pytest

from sync.workflow.central_author import central_change

pytestmark = pytest.mark.integration


def test_the_edit_and_its_provenance_name_the_clinician_and_the_commit_time(fhir):
    tag = uuid.uuid4().hex[:8]
    practitioner = fhir.create({"resourceType": "Practitioner",
                                "name": [{"use": "official", "prefix": ["Dr."], "given": ["Ada"],
                                          "family": f"Osei-{tag}"}]}).resource
    observation = fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": f"probe {tag}"},
                               "valueQuantity": {"value": 37.0, "unit": "Cel"}}).resource
    ref = f"Observation/{observation['id']}"
    edit = {**observation, "valueQuantity": {"value": 39.0, "unit": "Cel"}}
    edit.pop("meta", None)
    fhir.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": edit, "request": {"method": "PUT", "url": ref}},
        {"resource": {"resourceType": "Provenance", "target": [{"reference": f"{ref}/_history/2"}],
                      "recorded": datetime.now(timezone.utc).isoformat(),
                      "agent": [{"who": {"reference": f"Practitioner/{practitioner['id']}"}}]},
         "request": {"method": "POST", "url": "Provenance"}},
    ]})
    v2 = fhir.vread("Observation", observation["id"], "2")
    found = central_change(fhir, v2)
    assert found["fhir_changed_by"] == f"Dr. Ada Osei-{tag}"
    assert found["fhir_changed_at"] == datetime.fromisoformat(v2["meta"]["lastUpdated"])
    # A later edit without a Provenance: nobody is named for it, and v2 keeps its author.
    fhir.update({**{k: v for k, v in v2.items() if k != "meta"}, "valueQuantity": {"value": 38.0, "unit": "Cel"}})
    v3 = fhir.vread("Observation", observation["id"], "3")
    assert set(central_change(fhir, v3)) == {"fhir_changed_at"}
    assert central_change(fhir, v2)["fhir_changed_by"] == f"Dr. Ada Osei-{tag}"
