"""Is a unit string a UCUM code? ucumvert's parser of the full UCUM grammar (all of UCUM 2.2's atoms).

FHIR lets a Quantity claim ``system = http://unitsofmeasure.org`` only with a
real UCUM code; openEHR units written by hand (``..mol/l`` with its micro sign
lost, ``degrees celsius per fortnight``) are not one. The parser is built once
per process (about a second) and answers are cached: units repeat endlessly.
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _parser():
    # imported here: ucumvert takes ~0.2 s to import, paid only by a process that checks a unit
    from ucumvert import get_ucum_parser

    return get_ucum_parser()


@lru_cache(maxsize=4096)
def is_ucum(code: str) -> bool:
    """True when ``code`` is a case-sensitive UCUM expression (annotations like ``{beats}/min`` included)."""
    from lark.exceptions import LarkError  # lark comes with ucumvert: imported with it, not with the package

    if not isinstance(code, str) or not code or code != code.strip():
        return False
    try:
        _parser().parse(code)
    except LarkError:
        return False
    return True
