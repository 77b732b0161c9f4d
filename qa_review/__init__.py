"""QA review: a local web page to review automated measurements and sign off a verified SR.

``mskus review (--archive DIR | --out DIR)`` serves it (CONTRACT.md section 1).
QA staff see, per study, every analysed frame with what the software measured
and where, accept or reject each measurement, and sign off: that writes a new
SR with Verification Flag VERIFIED that supersedes the automated one and goes
wherever results go (the node's outbox, or next to the automated SR).

One idea per module:

- :mod:`~qa_review.model`: the frozen dataclasses the pages show;
- :mod:`~qa_review.items`: the reviewable measurements (NUM items) of an SR, with stable ids;
- :mod:`~qa_review.verified`: the verified SR built from the automated one and the decisions;
- :mod:`~qa_review.codes`: the coded concepts the verified SR adds;
- :mod:`~qa_review.sidecar`: per-frame details from ``measurements.csv`` / ``errors.csv``;
- :mod:`~qa_review.sourceinfo`: source image attributes (series description, laterality, mm/px);
- :mod:`~qa_review.render`: an overlay drawn from the source image and the SR coordinates;
- :mod:`~qa_review.studyview`: one study's page model from its automated SR (left/right pairs by level);
- :mod:`~qa_review.flags`: a value's reference flag, interval, source and z-score as the SR states it;
- :mod:`~qa_review.studyfindings`: the study's derived values (ratio, ΔCSA, right minus left, sites enlarged);
- :mod:`~qa_review.reread`: corrected values judged again, study findings recomputed (the tables come from the entry point);
- :mod:`~qa_review.fasciculation`: a muscle clip's fasciculation values and events, with play windows;
- :mod:`~qa_review.keyframe`: an event's key frame with its place circled;
- :mod:`~qa_review.outdir`, :mod:`~qa_review.archive`: the two places results live;
- :mod:`~qa_review.audit`: the batch audit log (``audit.jsonl``);
- :mod:`~qa_review.auth`, :mod:`~qa_review.csrf`, :mod:`~qa_review.forms`: login, form tokens, form checks;
- :mod:`~qa_review.app`: the Flask application; :mod:`~qa_review.server`: serving it.

``pipeline`` never imports this package; it imports ``pipeline`` and ``dicom_node``.
"""

__all__: list[str] = []
