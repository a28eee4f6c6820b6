"""Convert one file: a FLAT or canonical openEHR composition to canonical JSON or to FHIR R4.

    python manage.py convert x.flat.json --opt template.opt            # canonical composition
    python manage.py convert x.flat.json --opt template.opt --to fhir  # FHIR resources (a collection Bundle)
    python manage.py convert x.composition.json --to fhir --out x.fhir.json

A FLAT file needs its operational template (``--opt``, repeatable: the one whose web-template root id
the FLAT keys start with is used).  Errors name FLAT keys or RM paths, never values.
"""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sync.mapping import MappingError, to_fhir
from sync.mapping import flat as flat_mod

_FAKE_UID = "00000000-0000-4000-8000-000000000000::convert::1"


class Command(BaseCommand):
    help = "Convert a FLAT (needs --opt) or canonical composition file to canonical JSON or FHIR R4."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--opt", action="append", default=[], help="operational template (.opt), repeatable")
        parser.add_argument("--to", choices=("canonical", "fhir"), default="canonical")
        parser.add_argument("--out", default=None, help="write here instead of standard output")
        parser.add_argument("--site", default="convert", help="site name in the FHIR source identifiers")

    def handle(self, *args, path, opt, to, out, site, **options):
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: not readable JSON ({exc.__class__.__name__})") from exc
        try:
            comp = self._canonical(doc, opt)
            result = comp if to == "canonical" else self._fhir(comp, site)
        except MappingError as exc:
            raise CommandError(f"{Path(path).name}: {exc.__class__.__name__}: {exc}") from exc
        text = json.dumps(result, indent=2, ensure_ascii=False)
        if out:
            Path(out).write_text(text + "\n", encoding="utf-8")
        else:
            self.stdout.write(text)

    def _canonical(self, doc, opts: list[str]) -> dict:
        if flat_mod.is_flat(doc):
            candidates = [flat_mod.web_template(Path(o)) for o in opts]
            wt = flat_mod.template_for(doc, candidates)
            if wt is None:
                raise flat_mod.FlatError("no --opt given whose web template this FLAT composition uses")
            return flat_mod.to_canonical(doc, wt)
        if isinstance(doc, dict) and (doc.get("_type") == "COMPOSITION" or "content" in doc):
            return doc
        raise CommandError("neither a FLAT nor a canonical composition")

    def _fhir(self, comp: dict, site: str) -> dict:
        comp = dict(comp)
        if not (comp.get("uid") or {}).get("value"):
            comp["uid"] = {"_type": "OBJECT_VERSION_ID", "value": _FAKE_UID}
        res = to_fhir(comp, site=site, ehr_id="convert", patient_ref="Patient/convert")
        for loss in res.losses:
            self.stderr.write(f"lost: {loss.path} ({loss.kind})")
        return {"resourceType": "Bundle", "type": "collection",
                "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in res.resources]}
