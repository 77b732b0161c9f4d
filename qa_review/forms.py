"""The sign-off form, checked: every problem is a :class:`FormError` with a 4xx status.

Fields: ``automated_sr`` (the automated SR the page showed), ``version`` (the
document version the page showed: the latest verified SR, else the automated
SR), one ``decision-<finding>`` per finding (``accept``, ``reject`` or
``correct``; nothing is pre-selected), ``reason-<finding>`` (a rejection's
reason from :data:`~qa_review.model.REJECT_REASONS`), ``comment-<finding>``,
``points-<finding>`` (a correction's region, JSON SCOORD points),
``accept_remaining`` (the explicit "accept all remaining" button: findings
without a decision are accepted), ``comment``, ``reviewer`` and ``organisation``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

from qa_review.auth import User
from qa_review.corrections import CorrectionError
from qa_review.model import REJECT_REASONS, Correction, Decision, Finding, FindingDecision, SignOff, StudyDetail

__all__ = ["COMMENT_MAX", "FormError", "parse_signoff"]

COMMENT_MAX = 2000
_LO_MAX = 64  # Verifying Organization (LO); Verifying Observer Name (PN) component group
_DECISION = "decision-"
_COMMENT = "comment-"
_REASON = "reason-"
_POINTS = "points-"
_PER_FINDING = (_DECISION, _COMMENT, _REASON, _POINTS)
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


def _decision(
    form: _Form, finding: Finding, accept_remaining: bool, correct: Callable[[Finding, str], Correction]
) -> FindingDecision:
    fid = finding.id
    value = _single(form, _DECISION + fid)
    comment = _comment(form, _COMMENT + fid)
    if not value:
        if not accept_remaining:
            raise FormError(
                400,
                f"no decision for finding {fid} ({finding.label}): choose accept, reject or correct, "
                "or press 'Accept all remaining'",
            )
        return FindingDecision(fid, Decision.ACCEPT, comment=comment)
    try:
        decision = Decision(value)
    except ValueError:
        raise FormError(400, f"the decision on finding {fid} must be 'accept', 'reject' or 'correct'") from None
    if decision is Decision.REJECT:
        reason = _single(form, _REASON + fid)
        if reason not in REJECT_REASONS:
            raise FormError(400, f"choose why finding {fid} ({finding.label}) is rejected from the list")
        if reason == "other" and not comment:
            raise FormError(400, f"say in the comment why finding {fid} ({finding.label}) is rejected ('other')")
        return FindingDecision(fid, decision, reason=reason, comment=comment)
    if decision is Decision.CORRECT:
        points = _single(form, _POINTS + fid)
        if not points:
            raise FormError(400, f"finding {fid} ({finding.label}) is marked corrected but no corrected region was drawn")
        try:
            correction = correct(finding, points)
        except CorrectionError as exc:
            raise FormError(422, f"finding {fid}: {exc}") from None
        return FindingDecision(fid, decision, comment=comment, correction=correction)
    return FindingDecision(fid, decision, comment=comment)


def _no_correction(finding: Finding, points: str) -> Correction:
    raise CorrectionError("corrections cannot be measured here")


def parse_signoff(
    form: _Form,
    detail: StudyDetail,
    user: User | None = None,
    *,
    findings: Sequence[Finding] | None = None,
    version_uid: str = "",
    correct: Callable[[Finding, str], Correction] = _no_correction,
) -> SignOff:
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
    findings : sequence of Finding, optional
        The findings of the current version (default: ``detail.findings``).
    version_uid : str
        The current version; the caller has refused a stale ``version`` already.
    correct : callable (Finding, points JSON) -> Correction
        Measures a corrected region (:func:`qa_review.corrections.recompute`).

    Raises
    ------
    FormError
        409 when the study has no automated SR or it changed since the page
        was loaded; 400 for a finding id that is not in the document, a
        missing decision (unless "accept all remaining"), a doubled or bad
        decision, a rejection without a listed reason, a correction without
        a region, a missing reviewer name or organisation, or an over-long
        value; 422 for a corrected region that cannot be measured.
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
    current = list(findings if findings is not None else detail.findings)
    known = {f.id for f in current}
    for key in form.keys():
        prefix = next((p for p in _PER_FINDING if key.startswith(p)), None)
        if prefix is not None and key[len(prefix):] not in known:
            raise FormError(400, f"finding '{key[len(prefix):][:40]}' is not in the report under review")
    accept_remaining = _single(form, "accept_remaining") == "1"
    decisions = tuple(_decision(form, f, accept_remaining, correct) for f in current)
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
        decisions=decisions,
        login=user.login if user is not None else "",
        base_uid=version_uid,
    )
