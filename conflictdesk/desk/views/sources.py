"""One central resource's source: the composition version its Provenance names, read live, clinical or raw."""
from __future__ import annotations

import json

from django.shortcuts import render

from sync import source
from sync.actions import do_view_source

from .. import render as clinical
from ..access import require


@require("view_conflicts")
def detail(request, resource_type: str, resource_id: str):
    fmt = "flat" if request.GET.get("format") == "flat" else "canonical"
    context = {"resource_type": resource_type, "resource_id": resource_id, "format": fmt,
               "raw": request.GET.get("view") == "raw" or fmt == "flat"}
    try:
        found = do_view_source(resource_type, resource_id, fmt=fmt, acting_user=request.user)
    except source.InvalidResourceRef as exc:
        return render(request, "desk/source.html", {**context, "problem": str(exc)}, status=400)
    except source.NoProvenance as exc:
        return render(request, "desk/source.html", {**context, "problem": str(exc)}, status=404)
    except source.SourceUnavailable as exc:
        return render(request, "desk/source.html", {**context, "problem": str(exc), "unavailable": exc},
                      status=410 if isinstance(exc, source.SourceGone) else 503)
    rows = clinical.composition_rows(found.content) if fmt == "canonical" else []
    return render(request, "desk/source.html", {
        **context, "found": found, "rows": rows,
        "raw_json": json.dumps(found.content, indent=2, ensure_ascii=False),
    })
