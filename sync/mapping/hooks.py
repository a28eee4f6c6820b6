"""The named hooks (``mappingCode``) for rules a declarative row cannot say: one table, listed here.

A mapping file names a hook; the engine looks it up in ``HOOKS``.  The table is written out
rather than filled by decorators as modules happen to be imported, so every hook a file may name
is visible in one place and no import order decides what exists.  A hook name in a mapping file
that is not listed here fails when the file is loaded by the tests (tests/mapping/test_specs.py).

Every hook is ``fn(ctx, rule, onode, fobj, fmodel, direction)``, small and two-way; the row's own
module holds it (hooks_<row>.py) and imports nothing above runtime.py.
"""
from __future__ import annotations

from . import hooks_composition, hooks_diagnosis, hooks_medication, hooks_observation, hooks_procedure, hooks_risk
from . import hooks_adverse_event, hooks_careplan, hooks_dosage, hooks_genomics, hooks_imaging, hooks_lab, hooks_radiotherapy
from . import hooks_identifiers, hooks_tnm
from . import hooks_news2, hooks_pathology, hooks_performer
from .errors import MappingError

HOOKS = {
    # OBSERVATION events and lab reports
    "eventTime": hooks_observation.event_time,
    "pointEventTime": hooks_observation.point_event_time,
    "collapseSingleResult": hooks_observation.collapse_single_result,
    # lab panels, specimens, reference ranges
    "reportStatus": hooks_lab.report_status,
    "specimenReferences": hooks_lab.specimen_references,
    "referenceRange": hooks_lab.reference_range,
    "dateTimeInterval": hooks_lab.date_time_interval,
    "firstResult": hooks_lab.first_result,
    "loneResultTestName": hooks_lab.lone_result_test_name,
    # pathology report findings (Gleason score, lymph node counts, FIGO stage, direct invasion, margins)
    "gleasonScore": hooks_pathology.gleason_score,
    "lymphNodeCounts": hooks_pathology.lymph_node_counts,
    "figoStage": hooks_pathology.figo_stage,
    "tumourInvasion": hooks_pathology.tumour_invasion,
    "resectionMargin": hooks_pathology.resection_margin,
    "pathologyExam": hooks_pathology.pathology_exam,
    # early warning scores (NEWS2 and its ACVPU)
    "news2Scores": hooks_news2.news2_scores,
    "acvpuScore": hooks_news2.acvpu_score,
    # genomic variant results in a lab report
    "genomicVariant": hooks_genomics.genomic_variant,
    # who performed an entry: FHIR performer <-> other_participations 'performer' (observations, reports, actions)
    "entryPerformer": hooks_performer.entry_performer,
    # order identifiers (HL7 v2-0203 PLAC / FILL), lab, imaging and service requests
    "placerIdentifier": hooks_identifiers.placer_identifier,
    "fillerIdentifier": hooks_identifiers.filler_identifier,
    # imaging report findings
    "findingStatus": hooks_imaging.finding_status,
    "imagingStudy": hooks_imaging.imaging_study,
    # COMPOSITION level (parties of the composition shell)
    "partyReference": hooks_composition.party_reference,
    "participations": hooks_composition.participations,
    # medication order and administration
    "isoRepeatingTiming": hooks_medication.iso_repeating_timing,
    "therapeuticDirectionBounds": hooks_medication.therapeutic_direction_bounds,
    "cancerRelatedMedication": hooks_medication.cancer_related_medication,
    "orderRequester": hooks_medication.order_requester,
    "containedMedication": hooks_medication.contained_medication,
    "cancerRelatedAdministration": hooks_medication.cancer_related_administration,
    "doseOrRate": hooks_medication.dose_or_rate,
    "orderDosageTiming": hooks_medication.order_dosage_timing,
    "statementTime": hooks_medication.statement_time,
    "administrationPeriod": hooks_medication.administration_period,
    # dosage clusters, shared by order, administration and statement
    "doseAndRate": hooks_dosage.dose_and_rate,
    "dosageTiming": hooks_dosage.dosage_timing,
    # ACTION rows
    "ismTransition": hooks_procedure.ism_transition,
    "cancerSurgery": hooks_procedure.cancer_surgery,
    "radiotherapyCourse": hooks_radiotherapy.radiotherapy_course,
    "radiotherapyVolume": hooks_radiotherapy.radiotherapy_volume,
    "adverseEventContext": hooks_adverse_event.adverse_event_context,
    # diagnosis, TNM staging, health risk
    "primaryCancerProfile": hooks_diagnosis.primary_cancer_profile,
    "diagnosisNameAbsent": hooks_diagnosis.diagnosis_name_absent,
    "conditionStage": hooks_tnm.condition_stage,
    "tnmMembers": hooks_tnm.tnm_members,
    "tnmStagingSystem": hooks_tnm.tnm_staging_system,
    "tnmStageGroup": hooks_tnm.tnm_stage_group,
    "riskPrediction": hooks_risk.risk_prediction,
    # care plan: its activities and goals are the requests and goals recorded with it
    "planMembers": hooks_careplan.plan_members,
}

# Resources of another type than its file's that a hook makes beside the file's own (counted by the coverage report)
MAKES = {"imagingStudy": ("ImagingStudy",)}


def get(name: str, spec=None):
    if name not in HOOKS:
        raise MappingError("unknown mappingCode", path=getattr(spec, "source", None), rule=name)
    return HOOKS[name]


def names() -> set[str]:
    return set(HOOKS)
