"""findingStatus: every DiagnosticReport status (R4 value set diagnostic-report-status) gives an Observation
status (R4 observation-status), the report's own where Observation has it."""
from sync.mapping.hooks_imaging import REPORT_TO_OBSERVATION, finding_status
from sync.mapping.runtime import FWD, REV

REPORT = {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled",
          "entered-in-error", "unknown"}
OBSERVATION = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
               "unknown"}


class _Ctx:
    def __init__(self, parent):
        self.parent, self.resource = parent, {}


def test_every_report_status_has_an_observation_status():
    assert set(REPORT_TO_OBSERVATION) == REPORT and set(REPORT_TO_OBSERVATION.values()) <= OBSERVATION
    assert {s: REPORT_TO_OBSERVATION[s] for s in REPORT & OBSERVATION} == {s: s for s in REPORT & OBSERVATION}


def test_the_finding_takes_its_reports_status_one_way():
    ctx = _Ctx({"status": "appended"})
    finding_status(ctx, None, None, None, "Observation", FWD)
    assert ctx.resource == {"status": "amended"}
    ctx = _Ctx({"status": "final"})
    finding_status(ctx, None, None, None, "Observation", REV)
    assert ctx.resource == {}
    ctx = _Ctx(None)
    finding_status(ctx, None, None, None, "Observation", FWD)
    assert ctx.resource == {"status": "unknown"}
