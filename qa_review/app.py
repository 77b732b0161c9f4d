"""The QA review web application (Flask, server-side templates; the viewer is progressive JavaScript).

Pages: the study list (patient, date, structures, flags, status and review
state; filterable by date, protocol, status and review state), a study page
(the history of the report, every analysed frame with its viewer, values
with their reference flags, confidence and source attributes, the study
findings, each muscle clip's fasciculation events with key frames and
playback around each event, one decision per finding, and the sign-off form;
an event's key frame is its own image route), and a login page when users are configured (with throttling
of wrong passwords, :mod:`qa_review.throttle`). Every form carries the
session's CSRF token and the report version it was made on; a form whose
version is no longer current is refused (409) saying who signed since. A bad
request (unknown study, tampered form, missing decision, stale page) gets a
4xx page saying why and changes nothing. Every view of a study, sign-off,
rejection, correction and login goes to the audit trail.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

import pydicom
from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session, url_for
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from werkzeug.exceptions import HTTPException

from pipeline.reference import ReferenceTables
from qa_review.auth import User, verify_login
from qa_review.corrections import CorrectionError, FrameMeasurer, parse_points, recompute
from qa_review.csrf import FIELD, csrf_token, csrf_valid
from qa_review.fasciculation import ClipFasciculation, clip_fasciculations, clip_frame_times
from qa_review.filters import PROTOCOLS, parse_filter
from qa_review.findings import findings_of
from qa_review.flags import DECISION_SUPPORT_NOTE
from qa_review.forms import FormError, parse_signoff
from qa_review.frames import FrameImageError, frame_count, source_frame_png
from qa_review.history import StudyHistory, stale_message, study_history
from qa_review.items import ReviewableReport, reviewable_report
from qa_review.keyframe import KeyFrameError, event_key_frame_png
from qa_review.listing import other_studies, with_review_state
from qa_review.model import REJECT_REASONS, Correction, Finding, ReviewState, StudyDetail, StudyStatus
from qa_review.reread import NO_TABLES, ReferenceContext, read_values
from qa_review.source import VIEW_EVENT, ReviewSource
from qa_review.sourceinfo import source_frame_info
from qa_review.studyfindings import StudyFindingView, study_findings
from qa_review.studyview import laterality_pairs
from qa_review.throttle import LoginThrottle
from qa_review.verified import VerificationError, build_verified_report

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:]*)(:\d+)?$")
_OPEN_ENDPOINTS = frozenset({"login", "static", "favicon"})
_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_ANONYMOUS = "(no login: loopback only)"


def _hostname(host: str) -> str:
    match = _HOST_PORT.match(host or "")
    return (match.group(1) if match else host).strip("[]").lower()


def create_app(
    source: ReviewSource,
    *,
    users: Mapping[str, User] | None = None,
    organisation: str = "",
    secret_key: bytes | None = None,
    allowed_hosts: Collection[str] | None = None,
    throttle: LoginThrottle | None = None,
    reference: ReferenceTables | None = None,
    preset: str = "",
) -> Flask:
    """The review application over ``source``.

    Parameters
    ----------
    source : ReviewSource
        A node archive (:class:`~qa_review.archive.ArchiveSource`) or an
        OUT_DIR (:class:`~qa_review.outdir.OutDirSource`).
    users : mapping of login to User, optional
        When given, every page needs a login and the logged-in user's name
        is the Verifying Observer Name.
    organisation : str
        Default Verifying Organization on the sign-off form.
    secret_key : bytes, optional
        Session signing key (default: random per process, so sessions end
        when the server stops).
    allowed_hosts : collection of str, optional
        Host names accepted in the Host header (DNS-rebinding guard when
        bound to loopback); any when not given.
    throttle : LoginThrottle, optional
        Counts wrong passwords (default: a new one with the real clock).
    reference : ReferenceTables, optional
        The reference tables corrected values are judged against and study
        findings recomputed with (loaded by the entry point, ``mskus review
        --reference``; never read here). Without them a corrected value carries
        no normality, saying why, and changed study findings are removed.
    preset : str
        The scanner preset (``--preset``) for preset-specific z-score models.
    """
    app = Flask(__name__)
    app.secret_key = secret_key or secrets.token_bytes(32)
    app.config.update(
        SESSION_COOKIE_NAME="mskus_review",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        MAX_FORM_PARTS=20000,
        TEMPLATES_AUTO_RELOAD=False,
    )
    hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None
    sign_lock = threading.Lock()
    throttle = throttle or LoginThrottle()
    app.config["MSKUS_REFERENCE"] = reference
    app.config["MSKUS_PRESET"] = " ".join(preset.split())
    if reference is None:
        logger.warning("review server without reference tables: %s", NO_TABLES)

    def current_user() -> User | None:
        if not users:
            return None
        login = session.get("user")
        return users.get(login) if isinstance(login, str) else None

    @app.template_filter("findings_json")
    def _findings_json(findings: tuple[Finding, ...]) -> list[dict[str, object]]:
        return [{"id": f.id, "kind": f.kind, "points": [list(p) for p in f.points], "label": f.label} for f in findings]

    @app.context_processor
    def _globals() -> dict[str, object]:
        return {
            "source_label": source.label,
            "csrf_field": FIELD,
            "csrf_token": csrf_token(session),
            "user": current_user(),
            "login_enabled": bool(users),
            "decision_support": DECISION_SUPPORT_NOTE,
        }

    @app.before_request
    def _guards():
        if hosts is not None and _hostname(request.host) not in hosts:
            abort(400, "unexpected Host header: open the page through the address the server printed")
        if users and request.endpoint not in _OPEN_ENDPOINTS and current_user() is None:
            if request.method == "GET":
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            abort(401, "log in first")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(FormError)
    def _form_error(exc: FormError):
        logger.warning("refused %s %s: %s", request.method, request.path, exc.message)
        return render_template("error.html", code=exc.status, message=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code and exc.code >= 400:
            logger.warning("refused %s %s: %s %s", request.method, request.path, exc.code, exc.description)
        return render_template("error.html", code=exc.code, message=exc.description, title=exc.name), exc.code

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.svg")

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if not users:
            return redirect(url_for("index"))
        target = request.values.get("next") or url_for("index")
        if not target.startswith("/") or target.startswith("//"):
            target = url_for("index")
        if request.method == "GET":
            return render_template("login.html", next=target, error="")
        if not csrf_valid(session, request.form.get(FIELD)):
            abort(403, "the form token is missing or wrong: reload the page and try again")
        name = (request.form.get("login") or "").strip()[:64]
        address = request.remote_addr or ""
        wait = throttle.retry_after(name, address)
        if wait > 0:
            source.audit("review_login_throttled", {"login": name, "address": address})
            seconds = math.ceil(wait)
            page = render_template(
                "login.html", next=target,
                error=f"too many wrong passwords: try again in {seconds} s (the password was not checked)",
            )
            return page, 429, {"Retry-After": str(seconds)}
        user = verify_login(users, name, request.form.get("password") or "")
        if user is None:
            locked = throttle.failed(name, address)
            source.audit("review_login_failed", {"login": name, "address": address})
            error = "wrong login or password"
            if locked > 0:
                error += f"; too many wrong passwords: try again in {math.ceil(locked)} s"
            return render_template("login.html", next=target, error=error), 401
        throttle.succeeded(user.login)
        session.clear()
        session["user"] = user.login
        source.audit("review_login", {"login": user.login, "address": address})
        return redirect(target, 303)

    @app.post("/logout")
    def logout():
        if not csrf_valid(session, request.form.get(FIELD)):
            abort(403, "the form token is missing or wrong: reload the page and try again")
        user = current_user()
        session.clear()
        if user is not None:
            source.audit("review_logout", {"login": user.login})
        return redirect(url_for("login" if users else "index"), 303)

    def _who() -> str:
        user = current_user()
        return user.login if user is not None else _ANONYMOUS

    @app.get("/")
    def index():
        chosen = parse_filter(request.args)
        studies = with_review_state(source, source.studies())
        studies.sort(key=lambda s: (s.study_date, s.study_uid), reverse=True)
        shown = chosen.apply(studies)
        source.audit(
            "review_list_viewed",
            {"login": _who(), "address": request.remote_addr or "", "studies": len(shown)},
        )
        return render_template(
            "list.html",
            studies=shown,
            total=len(studies),
            counts=Counter(s.status.value for s in studies),
            review_counts=Counter(s.review.value for s in studies),
            chosen=chosen,
            statuses=[s.value for s in StudyStatus],
            reviews=[s.value for s in ReviewState],
            protocols=PROTOCOLS,
        )

    def _detail_or_404(study_uid: str) -> StudyDetail:
        detail = source.study(study_uid)
        if detail is None:
            abort(404, f"there is no study {study_uid[:80]} here")
        return detail

    def _history(study_uid: str, detail: StudyDetail) -> StudyHistory | None:
        if not detail.automated_sr_uid:
            return None
        automated = source.automated(study_uid)
        if automated is None or str(automated.SOPInstanceUID) != detail.automated_sr_uid:
            return None
        return study_history(automated, source.verified_of(study_uid, detail.automated_sr_uid))

    def _current(
        detail: StudyDetail, current: ReviewableReport | None, study_uid: str, elsewhere: Collection[str] = ()
    ) -> StudyDetail:
        """The page model with the findings of the current version and each frame's frame count.

        Findings shown in their own section (``elsewhere``: study findings, a clip's
        fasciculation analysis; ids of the current version) are left out of the
        frames. The frames themselves come from the automated SR, whose group
        numbers differ from a signed version's, and hold no such group
        (:func:`qa_review.studyview.frame_views`).
        """
        findings = findings_of(current) if current is not None else detail.findings
        frames = []
        for frame in detail.frames:
            key = (frame.sop_instance_uid, frame.frame_number)
            own = tuple(f for f in findings if (f.sop_instance_uid, f.frame_number) == key and f.id not in elsewhere)
            path = source.image_path(study_uid, frame.sop_instance_uid)
            frames.append(replace(frame, findings=own, number_of_frames=frame_count(path) if path else 1))
        return replace(detail, frames=tuple(frames))

    def _clips(study_uid: str, detail: StudyDetail, current: ReviewableReport) -> tuple[ClipFasciculation, ...]:
        def mm_per_px(sop: str) -> float | None:
            known = next((f.info.mm_per_px for f in detail.frames if f.sop_instance_uid == sop and f.info.mm_per_px), None)
            if known is not None:
                return known
            path = source.image_path(study_uid, sop)
            info = source_frame_info(path, 1) if path else None
            return info.mm_per_px if info is not None else None

        def frame_times(sop: str) -> tuple[float, ...] | None:
            path = source.image_path(study_uid, sop)
            return clip_frame_times(path) if path else None

        return clip_fasciculations(current, mm_per_px=mm_per_px, frame_times=frame_times)

    @app.get("/study/<path:study_uid>")
    def study(study_uid: str):
        detail = _detail_or_404(study_uid)
        user = current_user()
        history = _history(study_uid, detail)
        source.audit(
            VIEW_EVENT,
            {
                "study": study_uid,
                "automated_sr": detail.automated_sr_uid,
                "version": history.current_uid if history is not None else "",
                "login": _who(),
                "address": request.remote_addr or "",
            },
        )
        if history is not None:
            automated = source.automated(study_uid)
            history = replace(
                history,
                earlier_runs=tuple(source.earlier_runs(study_uid, automated)) if automated is not None else (),
                views=tuple(source.views(study_uid)),
            )
        signed = request.args.get("signed", "")
        just_signed = next((v for v in detail.verified if v.sop_instance_uid == signed), None)
        current = reviewable_report(history.current) if history is not None else None
        clips = _clips(study_uid, detail, current) if current is not None else ()
        derived: tuple[StudyFindingView, ...] = study_findings(current) if current is not None else ()
        elsewhere = {c.finding_id for c in clips if c.finding_id} | {d.finding_id for d in derived}
        page = _current(detail, current, study_uid, elsewhere)
        by_id = {f.id: f for f in (findings_of(current) if current is not None else ())}
        others = other_studies(source.studies(), detail.summary)
        previous = [s for s in others if s.study_date and s.study_date < detail.summary.study_date] or list(others)
        cines: dict[str, list[int]] = {}
        for frame in page.frames:
            if frame.number_of_frames > 1:
                cines.setdefault(frame.sop_instance_uid, []).append(frame.frame_number)
        return render_template(
            "study.html",
            detail=page,
            history=history,
            version=history.current_uid if history is not None else "",
            just_signed=just_signed,
            organisation=(user.organisation if user and user.organisation else organisation),
            reasons=REJECT_REASONS,
            others=others,
            previous=previous[0] if previous else None,
            pairs=laterality_pairs(page.frames),
            cines=cines,
            clips=clips,
            derived=derived,
            by_id=by_id,
        )

    @app.get("/study/<path:study_uid>/event/<path:sop_instance_uid>/<int:number>.png")
    def event_png(study_uid: str, sop_instance_uid: str, number: int):
        """The key frame of fasciculation event ``number`` (1-based) of a clip, its place circled."""
        detail = _detail_or_404(study_uid)
        history = _history(study_uid, detail)
        document = history.current if history is not None else source.automated(study_uid)
        if document is None:
            abort(404, "this study has no SR to read the events from")
        clip = next(
            (c for c in clip_fasciculations(reviewable_report(document)) if c.sop_instance_uid == sop_instance_uid), None
        )
        event = clip.events[number - 1] if clip is not None and 1 <= number <= len(clip.events) else None
        if event is None or event.frame_number is None or event.x_px is None or event.y_px is None:
            abort(404, "no such fasciculation event (with a frame and place) in this study")
        path = source.image_path(study_uid, sop_instance_uid)
        if path is None:
            abort(404, "the source clip is not available here")
        info = source_frame_info(path, event.frame_number)
        radius = 4.0 / info.mm_per_px if info is not None and info.mm_per_px else 12.0
        try:
            data = event_key_frame_png(path, event.frame_number, event.x_px, event.y_px, min(max(radius, 6.0), 40.0))
        except KeyFrameError as exc:
            logger.warning("%s", exc)
            abort(404, "the key frame cannot be drawn")
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=300"
        return response

    @app.get("/study/<path:study_uid>/frame/<path:sop_instance_uid>/<int:frame_number>.png")
    def frame_png(study_uid: str, sop_instance_uid: str, frame_number: int):
        data = source.frame_png(study_uid, sop_instance_uid, frame_number)
        if data is None:
            abort(404, "no such analysed frame in this study, or its image cannot be drawn")
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=60"
        return response

    @app.get("/study/<path:study_uid>/image/<path:sop_instance_uid>/<int:frame_number>.png")
    def image_png(study_uid: str, sop_instance_uid: str, frame_number: int):
        detail = _detail_or_404(study_uid)
        if not any(f.sop_instance_uid == sop_instance_uid for f in detail.frames):
            abort(404, "no such analysed image in this study")
        path = source.image_path(study_uid, sop_instance_uid)
        if path is None or not 1 <= frame_number <= frame_count(path):
            abort(404, "the source image is not available here, or it has no such frame")
        try:
            data = source_frame_png(path, frame_number)
        except FrameImageError as exc:
            logger.warning("%s", exc)
            abort(404, "the source frame cannot be drawn")
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=300"
        return response

    def _reference(study_uid: str) -> ReferenceContext:
        headers: dict[str, Dataset | None] = {}

        def header_of(sop: str) -> Dataset | None:
            if sop not in headers:
                path = source.image_path(study_uid, sop)
                try:
                    headers[sop] = pydicom.dcmread(path, stop_before_pixels=True) if path else None
                except (InvalidDicomError, OSError, ValueError) as exc:
                    logger.warning("source header of %s unreadable: %s", sop, exc)
                    headers[sop] = None
            return headers[sop]

        return ReferenceContext(app.config["MSKUS_REFERENCE"], app.config["MSKUS_PRESET"], header_of)

    def _corrector(study_uid: str) -> Callable[[Finding, str], Correction]:
        measurers: dict[tuple[str, int], FrameMeasurer] = {}

        def correct(finding: Finding, points_text: str) -> Correction:
            points = parse_points(points_text, finding.kind)
            key = (finding.sop_instance_uid, finding.frame_number)
            if key not in measurers:
                path = source.image_path(study_uid, finding.sop_instance_uid)
                if path is None:
                    raise CorrectionError("the source image is not available here, so this finding cannot be corrected")
                measurers[key] = FrameMeasurer(path, finding.frame_number)
            return recompute(measurers[key], finding, points)

        return correct

    @app.post("/study/<path:study_uid>/recompute")
    def recompute_preview(study_uid: str):
        """The values of a corrected region, for the page to show before sign-off (nothing is stored)."""
        if not csrf_valid(session, request.form.get(FIELD)):
            abort(403, "the form token is missing or wrong: reload the study page")
        detail = _detail_or_404(study_uid)
        history = _history(study_uid, detail)
        if history is None or request.form.get("version") != history.current_uid:
            return jsonify(error="the report changed since the page was loaded: reload the study page"), 409
        current = reviewable_report(history.current)
        finding = next((f for f in findings_of(current) if f.id == request.form.get("finding")), None)
        if finding is None:
            abort(404, "no such finding in the current version of the report")
        try:
            correction = _corrector(study_uid)(finding, request.form.get("points") or "")
        except CorrectionError as exc:
            return jsonify(error=str(exc)), 422
        group = current.report.groups[int(finding.id[1:]) - 1]
        flags = read_values(
            group, {n: v for n, v, _ in correction.values}, _reference(study_uid), finding.sop_instance_uid
        )

        def flag_text(name: str) -> str:
            flag = flags.get(name)
            if flag is None:
                return ""
            if flag.flag == "none":
                return f"no reference: {flag.reason}" if flag.reason else "no reference"
            return " ".join(p for p in (flag.flag, flag.interval_text, flag.z_text) if p)

        return jsonify(
            finding=finding.id,
            values=[
                {"name": n, "value": v, "text": f"{v:.4g}", "unit": u, "flag": flag_text(n)}
                for n, v, u in correction.values
            ],
            summary=correction.describe(),
        )

    @app.post("/study/<path:study_uid>/signoff")
    def signoff(study_uid: str):
        if not csrf_valid(session, request.form.get(FIELD)):
            abort(403, "the form token is missing or wrong (expired session?): reload the study page and sign off again")
        user = current_user()
        with sign_lock:
            detail = _detail_or_404(study_uid)
            automated = source.automated(study_uid)
            if automated is None or request.form.get("automated_sr") != str(automated.SOPInstanceUID):
                raise FormError(
                    409,
                    "the automated SR of this study changed since the page was loaded (re-analysed?); "
                    "reload the study page and review again",
                )
            history = _history(study_uid, detail)
            if history is None:
                raise FormError(409, "this study has no automated SR to verify")
            version = request.form.get("version") or ""
            if version != history.current_uid:
                raise FormError(409, stale_message(history, version))
            current = findings_of(reviewable_report(history.current))
            signed = parse_signoff(
                request.form, detail, user, findings=current, version_uid=history.current_uid,
                correct=_corrector(study_uid),
            )
            try:
                document = build_verified_report(
                    automated, signed, base=history.current, supersedes=history.verified,
                    instance_number=len(history.verified) + 1, reference=_reference(study_uid),
                )
            except VerificationError as exc:
                raise FormError(400, str(exc)) from None
            published = source.publish(study_uid, document, signed.automated_sr_uid)
            source.audit(
                "review_signed_off",
                {
                    "study": study_uid,
                    "automated_sr": signed.automated_sr_uid,
                    "version": signed.base_uid,
                    "verified_sr": published.sop_instance_uid,
                    "reviewer": signed.reviewer,
                    "organisation": signed.organisation,
                    "login": signed.login or _ANONYMOUS,
                    "accepted": ",".join(d.finding_id for d in signed.accepted),
                    "rejected": ",".join(d.finding_id for d in signed.rejected),
                    "corrected": ",".join(d.finding_id for d in signed.corrected),
                    "destinations": ",".join(published.destinations),
                    "file": published.path,
                },
            )
            by_id = {f.id: f for f in current}
            for decision in signed.rejected:
                source.audit(
                    "measurement_rejected",
                    {
                        "study": study_uid,
                        "verified_sr": published.sop_instance_uid,
                        "finding": decision.finding_id,
                        "what": by_id[decision.finding_id].describe(),
                        "reason": decision.why,
                        "reviewer": signed.reviewer,
                    },
                )
            for decision in signed.corrected:
                assert decision.correction is not None
                source.audit(
                    "measurement_corrected",
                    {
                        "study": study_uid,
                        "verified_sr": published.sop_instance_uid,
                        "finding": decision.finding_id,
                        "what": by_id[decision.finding_id].label,
                        "how": decision.correction.how,
                        "values": decision.correction.describe(),
                        "points": " ".join(f"{x:.2f},{y:.2f}" for x, y in decision.correction.points),
                        "reviewer": signed.reviewer,
                    },
                )
        logger.info("study %s signed off by %s: %s", study_uid, signed.reviewer, published.path)
        return redirect(url_for("study", study_uid=study_uid, signed=published.sop_instance_uid), 303)

    return app
