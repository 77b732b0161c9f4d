"""The study list's review state (automated / verified / corrected) and a patient's other studies."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from qa_review.history import study_history
from qa_review.model import ReviewState, StudyStatus, StudySummary
from qa_review.source import ReviewSource

__all__ = ["other_studies", "with_review_state"]

logger = logging.getLogger(__name__)


def with_review_state(source: ReviewSource, studies: Iterable[StudySummary]) -> list[StudySummary]:
    """Each study with :attr:`StudySummary.review` set from its verified SRs.

    ``verified`` when a person signed the current automated SR off,
    ``corrected`` when any of those sign-offs corrected a finding,
    ``automated`` otherwise.
    """
    out = []
    for study in studies:
        state = ReviewState.AUTOMATED
        if study.status is StudyStatus.VERIFIED and study.automated_sr_uid:
            automated = source.automated(study.study_uid)
            if automated is not None:
                history = study_history(automated, source.verified_of(study.study_uid, study.automated_sr_uid))
                if len(history.entries) > 1:
                    state = ReviewState.CORRECTED if history.corrected else ReviewState.VERIFIED
        out.append(replace(study, review=state))
    return out


def other_studies(studies: Sequence[StudySummary], study: StudySummary) -> tuple[StudySummary, ...]:
    """The same patient's other studies (same Patient ID), newest first; the earlier ones are 'previous'."""
    if not study.patient_id:
        return ()
    same = [s for s in studies if s.patient_id == study.patient_id and s.study_uid != study.study_uid]
    return tuple(sorted(same, key=lambda s: (s.study_date, s.study_uid), reverse=True))
