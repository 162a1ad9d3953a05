"""Units of measure by symbol or by name: ``"km"`` and ``kilometers``, ``"lb"`` and ``pounds``.

A person writes "15 kilometers" and the tool wants ``from_unit="km"``: grounding accepts a unit
value when the conversation names the same unit in another form. A quantity written with its unit
also grounds its value in SI base units (``100µF`` -> 0.0001, ``3 minutes`` -> 180, ``15 km`` ->
15000), the form physics and engineering tools take; other conversions (``24 inches`` -> 60.96 cm)
are the tool's to do. Symbols, names and plurals come from ``pint``'s unit registry (loaded once,
on the first unit a check meets).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["unit_of", "base_unit_values"]

_QUANTITY = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([a-zA-Z\u00b5\u03bc]{1,12})(?![\w])")


@lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


@lru_cache(maxsize=4096)
def unit_of(text: str) -> str | None:
    """The canonical name of the unit ``text`` names (``"km"``, ``"kilometers"`` ->
    ``"kilometer"``), or None when it names no unit or more than one word's worth of them."""
    text = text.strip()
    if not text or len(text) > 30 or not text.replace(" ", "").isalpha():
        return None
    try:
        units = _registry().parse_units(text)
    except Exception:  # noqa: BLE001 - pint raises several error types for a word that is no unit
        return None
    name = str(units)
    return name if name and name != "dimensionless" else None


@lru_cache(maxsize=4096)
def base_unit_values(text: str) -> tuple[float, ...]:
    """The values in SI base units of the quantities written in ``text`` (a number and the unit
    right after it: ``"100µF"`` -> 0.0001, ``"3 minutes"`` -> 180.0); a number followed by a word
    that is no unit gives nothing."""
    out = []
    for number, unit in _QUANTITY.findall(text):
        if unit_of(unit) is None:
            continue
        try:
            out.append(float(_registry().Quantity(float(number), unit).to_base_units().magnitude))
        except Exception:  # noqa: BLE001 - an offset unit (degC) and the like: no base value
            continue
    return tuple(out)
