"""The demo's people at several sites (issue 19), seeded into the real CDRs: per-site MRNs, the
demographics in EHR_STATUS, the typo and the look-alikes the match rules are shown with; idempotent."""
import pytest

from sync.clients.openehr import OpenEHRClient
from sync.demo.generator import SUBJECT_NAMESPACE
from sync.demo.people import CAST, mrn, seed_people
from sync.demo.seed import ensure_template
from sync.patients import ehr_status
from sync.patients.demographics import from_ehr_status

pytestmark = [pytest.mark.integration]


def test_the_cast_is_registered_per_site_and_a_rerun_commits_nothing(ehrbase_urls):
    clients = {f"site{n}": OpenEHRClient(url) for n, url in enumerate(ehrbase_urls[:2], start=1)}
    try:
        for client in clients.values():
            ensure_template(client)
        seed_people(clients, seed=7)
        assert seed_people(clients, seed=7) == 0
        found = {}
        for person in CAST:
            for site in sorted(person.at):
                if f"site{site}" not in clients:
                    continue
                client = clients[f"site{site}"]
                ehr = client.find_ehr(mrn(site, person.key), SUBJECT_NAMESPACE)
                found[person.key, site] = from_ehr_status(ehr_status.read(client, ehr.ehr_id))
    finally:
        for client in clients.values():
            client.close()
    margit1, margit2 = found["margit", 1], found["margit", 2]
    assert margit1.mrn != margit2.mrn  # each site numbers her its own way
    assert (margit1.family, margit2.family) == ("Johansson", "Johanson")  # site2's typo
    assert margit1.birth_date == margit2.birth_date == "1956-03-14"
    zurich, bern = found["thomas-zurich", 1], found["thomas-bern", 2]
    assert (zurich.family, zurich.given, zurich.birth_date, zurich.sex) == (bern.family, bern.given, bern.birth_date, bern.sex)
    assert zurich.postal_code != bern.postal_code  # two people: the rules hold them at POSSIBLE_MATCH
