"""Walking an SR content tree: the one walker of the reader and the QA review page.

:func:`pipeline.sr.reader.read_measurement_report` builds its view of a
document with these functions, and :mod:`qa_review` finds the dataset items
behind that view (to remove a rejected measurement, to replace a corrected
group) with the same ones, so both always agree on which group and which
measurement is which.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence, Sequence

from pydicom.dataset import Dataset

from pipeline.sr.codes import IMAGE_LIBRARY, MEASUREMENT_GROUP, concept_key

__all__ = [
    "SCHEME_ALIASES",
    "children",
    "code_key",
    "descends",
    "flatten",
    "item_key",
    "measurement_group_items",
    "numeric_items",
    "value_type",
]

#: Designators that name the same scheme (SNOMED's older designators) as the one we write.
SCHEME_ALIASES = {"SRT": "SCT", "SNM3": "SCT", "99SDM": "SCT"}
#: Legacy SNOMED-RT codes of concepts the reader looks for, by their current key.
_LEGACY_CODES = {("SRT", "G-C0E3"): ("SCT", "363698007"), ("SRT", "G-C171"): ("SCT", "272741003"),
                 ("SRT", "G-C036"): ("SCT", "370129005")}
_GROUP = concept_key(MEASUREMENT_GROUP)
_LIBRARY = concept_key(IMAGE_LIBRARY)


def code_key(scheme: str, value: str) -> tuple[str, str]:
    """(scheme, value) of a coded concept, legacy SNOMED designators and codes normalised."""
    key = (scheme, value)
    if key in _LEGACY_CODES:
        return _LEGACY_CODES[key]
    return (SCHEME_ALIASES.get(scheme, scheme), value)


def item_key(item: Dataset) -> tuple[str, str] | None:
    """The normalised key of a content item's Concept Name, ``None`` without one."""
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    code = seq[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue") or ""
    return code_key(str(code.get("CodingSchemeDesignator", "") or ""), str(value))


def value_type(item: Dataset) -> str:
    """The item's Value Type ('' when missing)."""
    return str(item.get("ValueType", "") or "")


def children(item: Dataset) -> MutableSequence[Dataset]:
    """The item's Content Sequence (an empty list when it has none)."""
    return item.get("ContentSequence") or []


def descends(item: Dataset, *, in_library: bool) -> bool:
    """Whether the document walk looks inside ``item``: containers, and Image Library entries' children."""
    kind = value_type(item)
    return kind == "CONTAINER" or (in_library and kind != "IMAGE")


def measurement_group_items(items: MutableSequence[Dataset], *, in_library: bool = False) -> Iterator[tuple[MutableSequence[Dataset], Dataset]]:
    """Every Measurement Group container in document order, with the Content Sequence that holds it."""
    for item in items:
        if value_type(item) == "CONTAINER" and item_key(item) == _GROUP:
            yield items, item
            continue
        if descends(item, in_library=in_library):
            yield from measurement_group_items(children(item), in_library=in_library or item_key(item) == _LIBRARY)


def flatten(items: Sequence[Dataset]) -> Iterator[Dataset]:
    """Items of a group and the children of its plain sub-containers (not of NUM, SCOORD or code items)."""
    for item in items:
        yield item
        if value_type(item) == "CONTAINER" and item_key(item) != _GROUP:
            yield from flatten(children(item))


def numeric_items(group: Dataset) -> Iterator[tuple[MutableSequence[Dataset], Dataset]]:
    """The NUM items of a Measurement Group in reading order, each with the Content Sequence holding it."""

    def walk(items: MutableSequence[Dataset]) -> Iterator[tuple[MutableSequence[Dataset], Dataset]]:
        for item in items:
            if value_type(item) == "NUM" and item_key(item) is not None:
                yield items, item
            if value_type(item) == "CONTAINER" and item_key(item) != _GROUP:
                yield from walk(children(item))

    return walk(children(group))
