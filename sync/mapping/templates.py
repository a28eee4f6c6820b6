"""A small, pure index of operational templates (OPT 1.4 XML): id, concept, archetypes used.

Only what the transform needs: the root archetype and name for a new composition, and the
check that a template can hold the archetypes we are asked to write (UnmappedTemplate).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_TEMPLATES: dict[str, "TemplateInfo"] = {}


@dataclass(frozen=True)
class TemplateInfo:
    template_id: str
    concept: str
    root_archetype: str
    archetypes: frozenset[str]
    language: str


def parse_opt(xml: str) -> TemplateInfo:
    tid = re.search(r"<template_id>\s*<value>(.*?)</value>", xml, re.S)
    if not tid:
        raise ValueError("not an operational template (no template_id)")
    concept = re.search(r"<concept>(.*?)</concept>", xml, re.S)
    ids = re.findall(r"<archetype_id>\s*<value>(.*?)</value>", xml, re.S)
    lang = re.search(r"<language>.*?<code_string>(.*?)</code_string>", xml, re.S)
    return TemplateInfo(tid.group(1).strip(), (concept.group(1).strip() if concept else tid.group(1).strip()),
                        ids[0].strip() if ids else "openEHR-EHR-COMPOSITION.encounter.v1",
                        frozenset(i.strip() for i in ids), lang.group(1).strip() if lang else "en")


def register(path_or_xml: str | Path) -> TemplateInfo:
    p = Path(path_or_xml) if not str(path_or_xml).lstrip().startswith("<") else None
    info = parse_opt(p.read_text(encoding="utf-8-sig") if p else str(path_or_xml))
    _TEMPLATES[info.template_id] = info
    return info


def get(template_id: str) -> TemplateInfo | None:
    return _TEMPLATES.get(template_id)
