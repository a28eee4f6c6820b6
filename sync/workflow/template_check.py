"""Check a composition against its template's web template before a site sees it.

EHRbase refuses a composition with nodes its template lacks, but only after
the write was sent (and as an opaque 400 that dead-letters as "rejected").
Checking first names the offending path and leaves the site untouched.

The web template lists each constrained node with its ``aqlPath``; the
structural nodes it folds away (``data[at0001]`` of an OBSERVATION, an
ITEM_TREE) still appear as prefixes of their children's paths. So the allowed
set is every prefix of every ``aqlPath``, name predicates dropped, and each
archetyped node of the composition must have its path in that set.

Web templates are fetched once per (site, template) and kept for
``CACHE_SECONDS``: a replaced template is picked up within that time.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any, Iterator

from sync.clients.errors import NotFound

from .result import ValidationFailed

CACHE_SECONDS = 600.0
_NAME_PREDICATE = re.compile(r"\[([^\]\s,]+)(?:\s+and\s+name/value\s*=\s*'(?:[^'\\]|\\.)*'|\s*,\s*'(?:[^'\\]|\\.)*')\]")
_cache: dict[tuple[str, str], tuple[float, frozenset[str], str | None]] = {}
_lock = threading.Lock()


def _read(site, openehr, template_id: str) -> tuple[frozenset[str], str | None]:
    """(every node path the template allows, its root archetype), cached; ValidationFailed when the site lacks
    the template."""
    key = (str(getattr(site, "pk", site)), template_id)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit and now - hit[0] < CACHE_SECONDS:
        return hit[1], hit[2]
    try:
        web_template = openehr.web_template(template_id)
    except NotFound as exc:
        raise ValidationFailed("the site lacks the template", rule="site.template", path=template_id) from exc
    tree = web_template.get("tree") or {}
    paths = frozenset(_prefixes(tree))
    root = tree.get("nodeId") if isinstance(tree.get("nodeId"), str) and "-COMPOSITION." in tree["nodeId"] else None
    with _lock:
        _cache[key] = (now, paths, root)
    return paths, root


def allowed_paths(site, openehr, template_id: str) -> frozenset[str]:
    """Every node path the template allows (cached); ValidationFailed when the site lacks the template."""
    return _read(site, openehr, template_id)[0]


def template_root(site, openehr, template_id: str) -> str | None:
    """The template's root COMPOSITION archetype (its web template's tree), None when it names none: what a new
    composition for central resources is labelled with (the mapping alone knows only registered OPTs).  None as well
    when the site lacks the template: checking the composition against it (``check_composition_paths``) says so."""
    try:
        return _read(site, openehr, template_id)[1]
    except ValidationFailed:
        return None


def check_composition_paths(site, openehr, template_id: str, composition: dict) -> None:
    """Raise ValidationFailed naming the first archetyped node whose path the template lacks."""
    allowed = allowed_paths(site, openehr, template_id)
    for path in node_paths(composition):
        if path not in allowed:
            raise ValidationFailed("composition has a node its template lacks", rule=f"template.{template_id}", path=path[:500])


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def node_paths(composition: dict) -> Iterator[str]:
    """The path (``/attr[node_id]/...``) of every archetyped node below the composition root."""
    yield from _walk(composition, "")


def _walk(node: Any, path: str) -> Iterator[str]:
    if not isinstance(node, dict):
        return
    for attr, value in node.items():
        if attr in ("archetype_details", "name", "uid", "feeder_audit", "links"):
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, dict) and child.get("archetype_node_id"):
                child_path = f"{path}/{attr}[{child['archetype_node_id']}]"
                yield child_path
                yield from _walk(child, child_path)
            elif isinstance(child, dict):
                yield from _walk(child, f"{path}/{attr}")


def _prefixes(tree: dict) -> Iterator[str]:
    stack = [tree]
    while stack:
        node = stack.pop()
        stack.extend(node.get("children") or [])
        path = _NAME_PREDICATE.sub(r"[\1]", node.get("aqlPath") or "")
        parts = path.split("/")
        for i in range(2, len(parts) + 1):
            yield "/".join(parts[:i])
