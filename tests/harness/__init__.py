"""The one harness of the engine's integration tests and benchmarks.

Everything here starts processes of its own and accounts for them: a private
redis-server on a free loopback port (``broker``), the engine's Celery worker
nodes, beat, ``sync_poll_loop`` and gunicorn, each in its own process group
(``engine``), a load generator committing compositions at the real EHRbase
(``load``), and what those processes cost, RSS and CPU seconds by role
(``processes``). The bench adds a scratch database (``database``) and its
report helpers (``report``); the fault tests add their checks (``checks``,
the only module that imports Django models when imported).

Used by ``bench/*.py`` (``from tests import harness as E``, after putting the
repository root on ``sys.path``) and by ``tests/integration/**``
(``from tests.harness import ...``). Importing this package does not import
Django: a benchmark sets ``DATABASE_URL`` (``scratch_database``) first.
"""
from .broker import PrivateRedis
from .database import db_url_of, scratch_database
from .engine import FHIR, Engine, Worker, engine_env
from .load import (
    HELD_RATE,
    Commit,
    LoadGenerator,
    SteadyLoad,
    backlog_allowance,
    commit,
    done_count,
    finished_count,
    held,
    held_latency_bound,
    run_timings,
    setup_sites,
    wait_done,
    warm_up,
)
from .processes import CpuMeter, MemorySampler, ProcessSet, free_port
from .report import RESULTS, WebPoller, dump, host_info, listener, loadavg, log, tree_state
from .servers import SITE_URL, running_sites, start_sites, stop_sites
from .stats import percentile, summary
from .waits import now, wait_for

__all__ = [
    "FHIR", "HELD_RATE", "RESULTS", "SITE_URL", "Commit", "CpuMeter", "Engine", "LoadGenerator", "MemorySampler",
    "PrivateRedis", "ProcessSet", "SteadyLoad", "WebPoller", "Worker", "backlog_allowance", "commit", "db_url_of", "dump",
    "done_count", "engine_env", "finished_count", "free_port", "held", "held_latency_bound", "host_info", "listener", "loadavg", "log",
    "now",
    "percentile", "run_timings", "running_sites", "scratch_database", "setup_sites", "start_sites", "stop_sites",
    "summary", "tree_state", "wait_done", "wait_for", "warm_up",
]
