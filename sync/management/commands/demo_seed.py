"""Seed synthetic oncology patients at N sites; optionally dead letters, conflicts and a trickle.

    python manage.py demo_seed --sites 5 --patients-per-site 20 --seed 1 [--invalid 2] [--conflicts 3]
                               [--trickle 0.5 [--trickle-seconds 600]]

Site i is the Site row named ``site{i}`` when there is one, else the local demo convention
``http://127.0.0.1:{8100+i}/ehrbase/rest/openehr/v1`` (``CONFLICTDESK_DEMO_SITE_URL``, with ``{i}`` or ``{port}``,
overrides it). Subjects at site i are ``SYN-{i}00000`` onwards. Re-runs with the same seed
commit nothing new. Conflicts need the engine (worker and beat) running against those sites.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from sync.clients.errors import ClientError
from sync.clients.fhir import FHIRClient
from sync.clients.openehr import OpenEHRClient
from sync.demo.conflicts import make_conflicts
from sync.demo.setup import require_demo_mode
from sync.demo.setup import site_url as demo_site_url
from sync.demo.people import seed_people
from sync.demo.seed import commit_invalid, invalid_held, seed_site, synthetic_ehrs, trickle
from sync.models import Site, SyncRun
from sync.workflow.state import TERMINAL
from sync.workflow.services import central_auth, site_auth

IDS_PER_SITE = 100_000


def site_credentials(i: int) -> tuple[str, str] | None:
    """The credentials the engine uses for site i (its row's credentials_ref), so the demo's CDRs may demand them."""
    site = Site.objects.filter(name=f"site{i}").first()
    return site_auth(site) if site is not None else None


def engine_busy() -> bool:
    """Whether the engine still has runs to finish (the seed's backlog): conflicts wait on their records meanwhile."""
    return SyncRun.objects.exclude(status__in=TERMINAL).exists()


def site_url(i: int) -> str:
    try:
        url = Site.objects.filter(name=f"site{i}").values_list("openehr_base_url", flat=True).first()
    except DatabaseError:  # no database yet (first demo boot): the convention below applies
        url = None
    if url:
        return url
    return demo_site_url(i, settings.CONFLICTDESK_DEMO_SITE_URL)


class Command(BaseCommand):
    help = "Seed synthetic oncology patients at the demo sites (idempotent per seed)."

    def add_arguments(self, parser):
        parser.add_argument("--sites", type=int, default=2)
        parser.add_argument("--patients-per-site", type=int, default=10)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--prefix", default="SYN", help="Subject id prefix (SYN-nnnnnn).")
        parser.add_argument("--invalid", type=int, default=0, help="Compositions the engine will dead-letter.")
        parser.add_argument("--conflicts", type=int, default=0, help="Conflicts to stage (engine must run).")
        parser.add_argument("--trickle", type=float, default=0.0, help="Events per second after seeding.")
        parser.add_argument("--trickle-seconds", type=float, default=None, help="Default: until SIGTERM.")

    def handle(self, *args, **opts):
        require_demo_mode()
        if opts["sites"] < 1 or opts["patients_per_site"] < 0:
            raise CommandError("--sites must be >= 1 and --patients-per-site >= 0")
        names = [f"site{i}" for i in range(1, opts["sites"] + 1)]
        clients = {name: OpenEHRClient(site_url(i), auth=site_credentials(i)) for i, name in enumerate(names, 1)}
        lock = threading.Lock()

        def say(msg: str) -> None:
            with lock:
                self.stdout.write(msg)
                self.stdout.flush()

        try:
            self._seed(clients, opts, say)
            if opts["invalid"]:
                self._invalid(clients, opts, say)
            if opts["conflicts"]:
                with FHIRClient(settings.CONFLICTDESK_FHIR_BASE_URL, auth=central_auth()) as fhir:
                    attempts = make_conflicts(fhir, clients, opts["conflicts"], seed=opts["seed"],
                                              engine_busy=engine_busy, progress=lambda m: say(f"conflicts: {m}"))
                staged = sum(a.status == "staged" for a in attempts)
                say(f"conflicts: {staged}/{len(attempts)} staged ({', '.join(a.kind for a in attempts)}) "
                    f"({', '.join(f'{a.site}:{a.status}' for a in attempts if a.status != 'staged') or 'all'})")
            if opts["trickle"]:
                say(f"trickle: {opts['trickle']}/s "
                    f"{'for %ss' % opts['trickle_seconds'] if opts['trickle_seconds'] else 'until SIGTERM'}")
                report = trickle(clients, opts["trickle"], opts["trickle_seconds"], opts["seed"], progress=say)
                say(f"trickle: {report.committed} events ({report.by_kind}), {report.failed} failed, "
                    f"{report.seconds:.0f}s")
        except ClientError as exc:
            raise CommandError(f"server error: {exc}") from exc
        finally:
            for client in clients.values():
                client.close()

    def _seed(self, clients, opts, say) -> None:
        k, seed = opts["patients_per_site"], opts["seed"]

        def one(i_name):
            i, name = i_name
            say(f"{name}: seeding {k} patients (seed {seed}) at {clients[name].http.base_url}")
            result = seed_site(clients[name], k, seed, first_index=i * IDS_PER_SITE, prefix=opts["prefix"],
                               facility=f"Synthetic Oncology Centre {i}", progress=lambda m: say(f"{name}: {m}"))
            say(f"{name}: done, {result.created} compositions committed, {result.skipped} already there, "
                f"{result.seconds:.1f}s")
            return result

        started = time.monotonic()
        # One client per site and one thread per site: sites are independent servers.
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            results = list(pool.map(one, enumerate(clients, 1)))
        total = sum(r.created for r in results)
        total += seed_people(clients, seed, progress=lambda m: say(f"people at several sites: {m}"))
        say(f"seeded {len(clients)} site(s): {total} compositions committed in {time.monotonic() - started:.1f}s")

    def _invalid(self, clients, opts, say) -> None:
        """The j-th invalid composition goes to a fixed EHR; one its EHR already holds is not committed again."""
        names = list(clients)
        ehrs = {name: synthetic_ehrs(clients[name]) for name in names}
        planned: dict[tuple[str, str], list[int]] = {}
        for j in range(opts["invalid"]):
            name = names[j % len(names)]
            if ehrs[name]:
                planned.setdefault((name, ehrs[name][j % len(ehrs[name])]["ehr_id"]), []).append(j)
        for (name, ehr_id), offsets in planned.items():
            held = invalid_held(clients[name], ehr_id)
            if held:
                say(f"{name}: {min(held, len(offsets))} invalid composition(s) already committed, not again")
            for j in offsets[held:]:
                [(kind, ref)] = commit_invalid(clients[name], ehr_id, 1, seed=opts["seed"], offset=j)
                say(f"{name}: committed an invalid composition ({kind}) {ref.uid}: the engine will dead-letter it")
