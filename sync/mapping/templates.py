"""A small, pure index of operational templates (OPT 1.4 XML): id, concept, archetypes used.

Only what the transform needs: the root archetype and name for a new composition, and the
check that a template can hold the archetypes we are asked to write (UnmappedTemplate).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

_TEMPLATES: dict[str, "TemplateInfo"] = {}


@dataclass(frozen=True)
class TemplateInfo:
    template_id: str
    concept: str
    root_archetype: str
    archetypes: frozenset[str]
    language: str


def parse_opt(xml: str) -> TemplateInfo:
    """The template's id, concept, language, its root archetype (the COMPOSITION archetype of ``definition``)
    and every archetype it uses.

    Read as XML, not by text search: in OPT 1.4 a C_ARCHETYPE_ROOT's ``archetype_id`` follows its
    ``attributes``, so the first ``archetype_id`` of the text is the first nested archetype's (a CLUSTER,
    say), never the root's; a new composition labelled with it names the wrong archetype."""
    try:
        root = ElementTree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not an operational template (not XML: {exc})") from None
    ns = {"o": root.tag[1:].split("}")[0]} if root.tag.startswith("{") else {"o": ""}
    q = (lambda path: "/".join(f"o:{p}" for p in path.split("/"))) if ns["o"] else (lambda path: path)
    tid = root.findtext(q("template_id/value"), namespaces=ns)
    if not tid:
        raise ValueError("not an operational template (no template_id)")
    concept = root.findtext(q("concept"), namespaces=ns)
    lang = root.findtext(q("language/code_string"), namespaces=ns)
    definition = root.find(q("definition"), namespaces=ns)
    top = definition.findtext(q("archetype_id/value"), namespaces=ns) if definition is not None else None
    ids = {(e.text or "").strip() for e in root.iter(f"{{{ns['o']}}}archetype_id" if ns["o"] else "archetype_id")
           for e in [e.find(q("value"), namespaces=ns)] if e is not None}
    return TemplateInfo(tid.strip(), (concept or tid).strip(),
                        top.strip() if top else "openEHR-EHR-COMPOSITION.encounter.v1",
                        frozenset(i for i in ids if i), (lang or "en").strip())


def register(path_or_xml: str | Path) -> TemplateInfo:
    p = Path(path_or_xml) if not str(path_or_xml).lstrip().startswith("<") else None
    info = parse_opt(p.read_text(encoding="utf-8-sig") if p else str(path_or_xml))
    _TEMPLATES[info.template_id] = info
    return info


def get(template_id: str) -> TemplateInfo | None:
    return _TEMPLATES.get(template_id)
