"""Coded concepts the verified SR adds (on top of :mod:`pipeline.sr.codes`)."""

from __future__ import annotations

from pydicom.sr.coding import Code

from pipeline.sr.codes import LOCAL_SCHEME, QUALITATIVE_EVALUATIONS

__all__ = ["COMMENT", "QUALITATIVE_EVALUATIONS", "REJECTED_MEASUREMENT"]

#: TEXT (TID 1500 row 14): a measurement the reviewer rejected, with the comment.
REJECTED_MEASUREMENT = Code("REJECTED", LOCAL_SCHEME, "Measurement rejected by reviewer")
#: TEXT: the reviewer's comment (on the document or on an accepted measurement).
COMMENT = Code("121106", "DCM", "Comment")
