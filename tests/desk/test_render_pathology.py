"""The clinical view reads a pathology report's Gleason score and lymph node counts as the mapping produces them
(issue 17): titled by their codes, the value, and each component's code above its value."""
from conflictdesk.desk.render import resource_rows
from tests.mapping.test_pathology import fwd, gleason, nodes, report


def _rows(code):
    [obs] = [r for r in fwd(report(gleason(), nodes())) if r["resourceType"] == "Observation"
             and r["code"]["coding"][0]["code"] == code]
    return [(r.depth, r.label, r.value, r.code) for r in resource_rows(obs)]


def test_a_gleason_score_reads_as_its_total_patterns_and_grade_group():
    rows = _rows("35266-6")
    assert rows[0][:3] == (0, "Observation", "Gleason score in Specimen Qualitative")
    assert (1, "value", "7", "") in rows
    i = rows.index((2, "code", "Gleason pattern.primary in Prostate tumor", "LOINC 44641-9"))
    assert rows[i + 1] == (2, "value", "3", "")
    assert (2, "value", "ISUP Grade (Grade Group) 2 (Gleason score 3+4=7)", "LOINC LA30795-1") in rows


def test_lymph_node_counts_read_as_the_site_the_positive_and_the_examined_nodes():
    rows = _rows("443527007")
    assert rows[0][2] == "Number of lymph nodes containing metastatic neoplasm in excised specimen"
    assert (1, "bodySite", "Axillary lymph nodes", "") in rows and (1, "value", "2", "") in rows
    i = rows.index((2, "code", "Number of lymph nodes examined", "SNOMED CT 444025001"))
    assert rows[i + 1] == (2, "value", "14", "")


def test_a_figo_stage_reads_as_the_stage_and_the_staging_system():
    from tests.mapping.test_pathology import figo
    [obs] = [r for r in fwd(report(figo(), gleason())) if r["resourceType"] == "Observation"
             and r["code"]["coding"][0]["code"] == "385361009"]
    rows = [(r.depth, r.label, r.value, r.code) for r in resource_rows(obs)]
    assert rows[0][:3] == (0, "Observation",
                           "International Federation of Gynecology and Obstetrics stage for gynecological malignancy"
                           " (observable entity)")
    assert (1, "value", "IIIA", "NCIt C96256") in rows  # the NCI Thesaurus named, not its owl file
    assert (1, "method", "Cervix uteri", "SNOMED CT 106250008") in rows


def test_direct_invasion_reads_as_the_tissue_and_the_finding():
    from tests.mapping.test_pathology import invasion
    [obs] = [r for r in fwd(report(invasion(), gleason())) if r["resourceType"] == "Observation"
             and r["code"]["coding"][0]["code"] == "370052007"]
    rows = [(r.depth, r.label, r.value, r.code) for r in resource_rows(obs)]
    assert rows[0][2] == "Status of invasion by tumor"
    assert (1, "bodySite", "Myometrium", "") in rows and (1, "value", "Absent", "SNOMED CT 2667000") in rows


def test_a_resection_margin_reads_as_the_margin_and_its_involvement():
    from tests.mapping.test_pathology import margin
    [obs] = [r for r in fwd(report(margin(), gleason())) if r["resourceType"] == "Observation"
             and r["code"]["coding"][0]["code"] == "396631001"]
    rows = [(r.depth, r.label, r.value, r.code) for r in resource_rows(obs)]
    assert rows[0][2] == "Surgical margin observable" and (1, "bodySite", "Distal margin", "") in rows
    involvement = "Surgical margin involved by neoplasm in excised tissue specimen"
    i = rows.index((2, "code", involvement, "SNOMED CT 396324006"))
    assert rows[i + 1] == (2, "value", "Absent", "SNOMED CT 260385009")
