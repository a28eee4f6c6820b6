"""The integration tests' shared fixtures: clients on the real servers and a site driven by hand
(defined in tests/harness/real_servers.py, which the browser tests import too)."""
from tests.harness.real_servers import cdr, ehr, fhir, site  # noqa: F401 (fixtures)
