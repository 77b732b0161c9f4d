"""Coded concepts the verified SR adds (on top of :mod:`pipeline.sr.codes`)."""

from __future__ import annotations

from pydicom.sr.coding import Code

from pipeline.sr.codes import LOCAL_SCHEME, QUALITATIVE_EVALUATIONS

__all__ = [
    "COMMENT",
    "CORRECTED_BY_PREFIX",
    "CORRECTED_MEASUREMENT",
    "OBSERVER_TYPE",
    "PERSON",
    "PERSON_OBSERVER_NAME",
    "PERSON_OBSERVER_ORGANIZATION",
    "QUALITATIVE_EVALUATIONS",
    "REJECTED_MEASUREMENT",
]

#: TEXT (TID 1500 row 14): a measurement the reviewer rejected, with the comment.
REJECTED_MEASUREMENT = Code("REJECTED", LOCAL_SCHEME, "Measurement rejected by reviewer")
#: TEXT in a corrected group and under Qualitative Evaluations: what was corrected, by whom, the values replaced.
CORRECTED_MEASUREMENT = Code("CORRECTED", LOCAL_SCHEME, "Measurement corrected by reviewer")
#: A corrected group's note starts with this, then the reviewer's name and a colon.
CORRECTED_BY_PREFIX = "corrected by "
#: TEXT: the reviewer's comment (on the document or on an accepted measurement).
COMMENT = Code("121106", "DCM", "Comment")
#: TID 1002 Observer Context of a corrected group: a person (TID 1003), not the device.
OBSERVER_TYPE = Code("121005", "DCM", "Observer Type")
PERSON = Code("121006", "DCM", "Person")
PERSON_OBSERVER_NAME = Code("121008", "DCM", "Person Observer Name")
PERSON_OBSERVER_ORGANIZATION = Code("121009", "DCM", "Person Observer's Organization Name")
