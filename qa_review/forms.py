"""The sign-off form, checked: every problem is a :class:`FormError` with a 4xx status.

Fields: ``automated_sr`` (the SR the page showed), ``decision-<id>``
(``accept`` or ``reject``, exactly one per measurement of that SR),
``comment-<id>``, ``comment``, ``reviewer`` and ``organisation``.
"""

from __future__ import annotations

import re
from typing import Protocol

from qa_review.auth import User
from qa_review.model import Decision, MeasurementDecision, SignOff, StudyDetail

__all__ = ["COMMENT_MAX", "FormError", "parse_signoff"]

COMMENT_MAX = 2000
_LO_MAX = 64  # Verifying Organization (LO); Verifying Observer Name (PN) component group
_DECISION = "decision-"
_COMMENT = "comment-"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FormError(Exception):
    """A refused form: ``status`` (400, 409, ...) and a sentence for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Form(Protocol):
    def get(self, key: str) -> str | None: ...
    def getlist(self, key: str) -> list[str]: ...
    def keys(self): ...


def _single(form: _Form, name: str) -> str:
    values = form.getlist(name)
    if len(values) > 1:
        raise FormError(400, f"the form field '{name}' was sent more than once")
    return values[0] if values else ""


def _line(form: _Form, name: str, label: str) -> str:
    value = " ".join(_single(form, name).split())
    if len(value) > _LO_MAX:
        raise FormError(400, f"{label} is too long (at most {_LO_MAX} characters)")
    if "\\" in value or _CONTROL.search(value):
        raise FormError(400, f"{label} must not contain backslashes or control characters")
    return value


def _comment(form: _Form, name: str) -> str:
    value = _CONTROL.sub("", _single(form, name)).replace("\r\n", "\n").strip()
    if len(value) > COMMENT_MAX:
        raise FormError(400, f"a comment is too long (at most {COMMENT_MAX} characters)")
    return value


def parse_signoff(form: _Form, detail: StudyDetail, user: User | None = None) -> SignOff:
    """Check a posted sign-off against the study the page showed.

    Parameters
    ----------
    form : MultiDict-like
        The posted fields.
    detail : StudyDetail
        The study as it is now.
    user : User, optional
        The logged-in reviewer: their configured name is the Verifying
        Observer Name (the form's ``reviewer`` field is then ignored).

    Raises
    ------
    FormError
        409 when the study has no automated SR or it changed since the page
        was loaded; 400 for a measurement id that is not in the SR, a
        missing or doubled decision, a bad decision value, a missing
        reviewer name or organisation, or an over-long value.
    """
    if not detail.automated_sr_uid:
        raise FormError(409, "this study has no automated SR to verify")
    shown = _single(form, "automated_sr")
    if shown != detail.automated_sr_uid:
        raise FormError(
            409,
            "the automated SR of this study changed since the page was loaded (re-analysed?); "
            "reload the study page and review again",
        )
    known = [item.id for item in detail.items]
    posted = [key[len(_DECISION):] for key in form.keys() if key.startswith(_DECISION)]
    posted += [key[len(_COMMENT):] for key in form.keys() if key.startswith(_COMMENT)]
    for item_id in posted:
        if item_id not in known:
            raise FormError(400, f"measurement '{item_id[:40]}' is not in the automated SR of this study")
    decisions = []
    for item_id in known:
        value = _single(form, _DECISION + item_id)
        if not value:
            raise FormError(400, f"no decision (accept or reject) for measurement {item_id}")
        try:
            decision = Decision(value)
        except ValueError:
            raise FormError(400, f"decision for measurement {item_id} must be 'accept' or 'reject'") from None
        decisions.append(MeasurementDecision(item_id, decision, _comment(form, _COMMENT + item_id)))
    if user is not None:
        reviewer = user.name
    else:
        reviewer = _line(form, "reviewer", "the reviewer name")
        if not reviewer:
            raise FormError(400, "the reviewer name is required to sign off")
    organisation = _line(form, "organisation", "the organisation")
    if not organisation:
        raise FormError(400, "the organisation is required to sign off")
    return SignOff(
        study_uid=detail.summary.study_uid,
        automated_sr_uid=detail.automated_sr_uid,
        reviewer=reviewer,
        organisation=organisation,
        comment=_comment(form, "comment"),
        decisions=tuple(decisions),
        login=user.login if user is not None else "",
    )
