"""The QA review web application (Flask, server-side templates, no JavaScript).

Pages: the study list (filterable by date, protocol and status), a study
page (every analysed frame with its overlay, values, confidence, flags and
source attributes, and the sign-off form), and a login page when users are
configured. Every form carries the session's CSRF token. A bad request
(unknown study, tampered form, missing reviewer name, stale page) gets a 4xx
page saying why and changes nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import Collection, Mapping

from flask import Flask, Response, abort, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from qa_review.auth import User, verify_login
from qa_review.csrf import FIELD, csrf_token, csrf_valid
from qa_review.filters import PROTOCOLS, parse_filter
from qa_review.forms import FormError, parse_signoff
from qa_review.model import StudyStatus
from qa_review.source import ReviewSource
from qa_review.verified import VerificationError, build_verified_report

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:]*)(:\d+)?$")
_OPEN_ENDPOINTS = frozenset({"login", "static", "favicon"})
_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


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

    def current_user() -> User | None:
        if not users:
            return None
        login = session.get("user")
        return users.get(login) if isinstance(login, str) else None

    @app.context_processor
    def _globals() -> dict[str, object]:
        return {
            "source_label": source.label,
            "csrf_field": FIELD,
            "csrf_token": csrf_token(session),
            "user": current_user(),
            "login_enabled": bool(users),
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
        user = verify_login(users, name, request.form.get("password") or "")
        if user is None:
            source.audit("review_login_failed", {"login": name})
            return render_template("login.html", next=target, error="wrong login or password"), 401
        session.clear()
        session["user"] = user.login
        source.audit("review_login", {"login": user.login})
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

    @app.get("/")
    def index():
        chosen = parse_filter(request.args)
        studies = source.studies()
        studies.sort(key=lambda s: (s.study_date, s.study_uid), reverse=True)
        shown = chosen.apply(studies)
        return render_template(
            "list.html",
            studies=shown,
            total=len(studies),
            counts=Counter(s.status.value for s in studies),
            chosen=chosen,
            statuses=[s.value for s in StudyStatus],
            protocols=PROTOCOLS,
        )

    def _detail_or_404(study_uid: str):
        detail = source.study(study_uid)
        if detail is None:
            abort(404, f"there is no study {study_uid[:80]} here")
        return detail

    @app.get("/study/<study_uid>")
    def study(study_uid: str):
        detail = _detail_or_404(study_uid)
        user = current_user()
        source.audit(
            "review_opened",
            {"study": study_uid, "automated_sr": detail.automated_sr_uid, "login": user.login if user else ""},
        )
        signed = request.args.get("signed", "")
        just_signed = next((v for v in detail.verified if v.sop_instance_uid == signed), None)
        return render_template(
            "study.html",
            detail=detail,
            just_signed=just_signed,
            organisation=(user.organisation if user and user.organisation else organisation),
        )

    @app.get("/study/<study_uid>/frame/<sop_instance_uid>/<int:frame_number>.png")
    def frame_png(study_uid: str, sop_instance_uid: str, frame_number: int):
        data = source.frame_png(study_uid, sop_instance_uid, frame_number)
        if data is None:
            abort(404, "no such analysed frame in this study, or its image cannot be drawn")
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=60"
        return response

    @app.post("/study/<study_uid>/signoff")
    def signoff(study_uid: str):
        if not csrf_valid(session, request.form.get(FIELD)):
            abort(403, "the form token is missing or wrong (expired session?): reload the study page and sign off again")
        user = current_user()
        with sign_lock:
            detail = _detail_or_404(study_uid)
            signed = parse_signoff(request.form, detail, user)
            automated = source.automated(study_uid)
            if automated is None or str(automated.SOPInstanceUID) != signed.automated_sr_uid:
                raise FormError(409, "the automated SR of this study changed: reload the study page and review again")
            earlier = source.verified_of(study_uid, signed.automated_sr_uid)
            try:
                document = build_verified_report(
                    automated, signed, supersedes=earlier, instance_number=len(earlier) + 1
                )
            except VerificationError as exc:
                raise FormError(400, str(exc)) from None
            published = source.publish(study_uid, document, signed.automated_sr_uid)
            source.audit(
                "review_signed_off",
                {
                    "study": study_uid,
                    "automated_sr": signed.automated_sr_uid,
                    "verified_sr": published.sop_instance_uid,
                    "reviewer": signed.reviewer,
                    "organisation": signed.organisation,
                    "login": signed.login,
                    "accepted": ",".join(d.item_id for d in signed.accepted),
                    "rejected": ",".join(d.item_id for d in signed.rejected),
                    "destinations": ",".join(published.destinations),
                    "file": published.path,
                },
            )
            items = {item.id: item for item in detail.items}
            for decision in signed.rejected:
                source.audit(
                    "measurement_rejected",
                    {
                        "study": study_uid,
                        "verified_sr": published.sop_instance_uid,
                        "measurement": decision.item_id,
                        "what": items[decision.item_id].describe(),
                        "reviewer": signed.reviewer,
                    },
                )
        logger.info("study %s signed off by %s: %s", study_uid, signed.reviewer, published.path)
        return redirect(url_for("study", study_uid=study_uid, signed=published.sop_instance_uid), 303)

    return app
