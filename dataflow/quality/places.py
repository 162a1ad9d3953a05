"""Regions and currencies, by code or by name: the forms of one thing a person and a tool write
differently.

A person writes "Chicago, Illinois" or "500 US dollars"; the tool wants ``state="IL"`` or
``base_currency="USD"``. Grounding accepts a value when the conversation names the same region
or currency in another of its forms, and a place qualified by its region (``"Boston, MA"``) when
the place itself is in the conversation. The forms come from ISO 3166 and ISO 4217 (the
``pycountry`` package):

- regions: a country (name, official or common name, two- or three-letter code), or a state,
  province or territory of the countries whose addresses are written ``City, ST`` (the United
  States, Canada, Australia) by name or code, and the nations of the United Kingdom. Cities are not
  regions, so ``"London, Paris"`` stays a list whose second item must be grounded on its own;
- currencies: the ISO code and the ISO name (``Pound Sterling``), and for the most traded ones the
  names people use (``British pounds``, ``US dollars``, ``yen``). A bare ``dollar`` names no
  currency (US, Canadian, Australian...).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

__all__ = ["is_region_name", "region_forms", "currency_forms"]

#: countries whose state / province / territory names and codes qualify a place
_SUBDIVISION_COUNTRIES = ("US", "CA", "AU")
_SUBDIVISION_TYPES = frozenset({"State", "Province", "Territory", "District"})
#: short forms people write that ISO does not list, by the ISO alpha-2 code they stand for
_COUNTRY_ALIASES = {"us": ("usa", "u.s", "u.s.a", "america"), "gb": ("uk", "u.k", "britain", "great britain")}
_UK_NATIONS = ("england", "scotland", "wales", "northern ireland")
#: names people use for the most traded currencies, beside ISO's own
_CURRENCY_ALIASES = {
    "USD": ("us dollar", "u.s. dollar", "united states dollar", "american dollar"),
    "EUR": ("euro",),
    "GBP": ("british pound", "pound sterling", "sterling", "uk pound"),
    "JPY": ("japanese yen", "yen"),
    "CNY": ("chinese yuan", "yuan", "renminbi"),
    "CHF": ("swiss franc",),
    "INR": ("indian rupee",),
    "KRW": ("korean won", "south korean won"),
}


def _key(text: str) -> str:
    """The comparison form: lower-case words, plurals folded (``"U.S. dollars"`` -> ``"u s dollar"``)."""
    from ._values import words

    return " ".join(words(str(text)))


@lru_cache(maxsize=1)
def _regions() -> dict[str, frozenset[str]]:
    """Every region form (casefolded) -> all the forms of that region."""
    import pycountry

    groups: list[set[str]] = []
    for country in pycountry.countries:
        forms = {getattr(country, a, None) for a in ("name", "official_name", "common_name", "alpha_2", "alpha_3")}
        forms = {_key(f) for f in forms if f}
        forms.update(_key(a) for a in _COUNTRY_ALIASES.get(country.alpha_2.lower(), ()))
        groups.append(forms)
    for code in _SUBDIVISION_COUNTRIES:
        for subdivision in pycountry.subdivisions.get(country_code=code) or ():
            if subdivision.type in _SUBDIVISION_TYPES:
                groups.append({_key(subdivision.name), _key(subdivision.code.split("-", 1)[1])})  # US-MA -> ma
    groups.extend({_key(nation)} for nation in _UK_NATIONS)
    return _by_form(groups)


def _by_form(groups: Iterable[set[str]]) -> dict[str, frozenset[str]]:
    """Each form of each group -> every form it shares a group with (``"ca"``: Canada and
    California both)."""
    out: dict[str, set[str]] = {}
    for forms in groups:
        for form in forms:
            out.setdefault(form, set()).update(forms)
    return {form: frozenset(forms) for form, forms in out.items()}


def is_region_name(text: str) -> bool:
    """True when ``text`` (case, plurals and punctuation aside: ``"IL."``) names a country, or a
    state, province or territory of the US, Canada or Australia, or a UK nation."""
    key = _key(text)
    return bool(key) and key in _regions()


def region_forms(text: str) -> frozenset[str]:
    """Every form of the region ``text`` names (``"IL"`` -> ``{"il", "illinoi"}``), in the
    comparison form of ``_values.words`` (lower case, plurals folded); empty when it names none."""
    return _regions().get(_key(text), frozenset())


@lru_cache(maxsize=1)
def _currencies() -> dict[str, frozenset[str]]:
    """Every currency form (casefolded) -> all the forms of that currency."""
    import pycountry

    return _by_form({_key(f) for f in (currency.alpha_3, currency.name, *_CURRENCY_ALIASES.get(currency.alpha_3, ()))}
                    for currency in pycountry.currencies)


def currency_forms(text: str) -> frozenset[str]:
    """Every form of the currency ``text`` names (``"GBP"`` -> ``{"gbp", "pound sterling",
    "british pound", ...}``; ``"euros"`` -> ``{"eur", "euro"}``), in the comparison form of
    ``_values.words``; empty when it names none."""
    return _currencies().get(_key(text), frozenset())
