"""The operator web console (docs/console.md): server-rendered pages over the call-centre use
cases of :mod:`jpki_service.callcentre.service`, for operators, supervisors and auditors.

What keeps it safe, each in one place below:

- **Session cookie** ``jpki_console``: HttpOnly, SameSite=Strict, Path=/console, Secure when
  ``console_secure_cookies`` is set. Only its SHA-256 is stored (:mod:`jpki_service.operators.service`).
- **Forged forms**: every POST form of a signed-in operator carries the session's CSRF token,
  compared in constant time (:func:`_check_form`); any POST whose ``Origin`` (or ``Sec-Fetch-Site``)
  says it comes from another site is refused, the login form included. Refused means nothing happened.
- **Second look**: suspend, lift and revoke first show a confirmation page that re-posts the same
  fields with ``confirmed=yes``; only that second POST calls the use case.
- **Roles**: the use cases check the role themselves (:func:`~jpki_service.operators.roles.require`);
  the pages only hide what the role may not do, they are not the check.
- **No personal data in URLs or logs**: the caller's name, birth date and address travel only in
  POST bodies; pages show the masked name; URLs hold registration ids and audit sequence numbers.
- **Every answer**: ``Cache-Control: no-store``, a Content-Security-Policy allowing no script at all
  (the console needs none), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``.
- **Errors** (:class:`~ca_mock.problems.Problem`) become a page with the problem's status code,
  never a stack trace.
"""
from __future__ import annotations

import contextvars
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from jpki_common.i18n import DEFAULT_LANGUAGE, japan_time, language_from_header
from jpki_common.problems import Problem
from jpki_service.adapters.context import ServiceContext
from jpki_service.callcentre import service as callcentre
from jpki_service.callcentre.schemas import (
    CallerKind,
    Channel,
    FindRequest,
    LiftRequest,
    RevokeRequest,
    SuspendRequest,
    SuspensionReason,
)
from jpki_service.common.problems import (
    CSRFRejected,
    InvalidInput,
    LoginRefused,
    NothingFound,
    NotSignedIn,
    PasswordChangeRequired,
    RegistrationNotFound,
    StateConflict,
    TooManyAttempts,
)
from jpki_service.common.texts import N_, TEXTS, Sentence
from jpki_service.holder_data import normalise_case_reference
from jpki_service.lifecycle import Event, State, TransitionRefused, requested_wording, transition
from jpki_service.operators import service as operators
from jpki_service.operators.roles import Permission, Role, may
from jpki_service.operators.service import SignedIn
from jpki_service.registrations.transitions import load_by_case_reference

log = logging.getLogger("jpki_service.console")

COOKIE = "jpki_console"
PREFIX = "/console"
AUDIT_PAGE_SIZE = 50
_HERE = Path(__file__).parent
_CSS = (_HERE / "static" / "console.css").read_bytes()

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # No script at all: the console is plain forms and links.
    "Content-Security-Policy": ("default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
                                "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# Reasons a supervisor picks from; the CA-level ones (cACompromise, aACompromise) make no sense for one phone.
REVOKE_REASONS = ("keyCompromise", "cessationOfOperation", "superseded", "affiliationChanged",
                  "privilegeWithdrawn", "unspecified")


# -- the page's language: Accept-Language, else the JPKI_LANG setting (Japanese by default) -------
_LANGUAGE: contextvars.ContextVar[str] = contextvars.ContextVar("console_language", default=DEFAULT_LANGUAGE)


def _(message: str) -> str:
    """``message`` in the language of the page being answered."""
    return TEXTS.for_language(_LANGUAGE.get()).gettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return TEXTS.for_language(_LANGUAGE.get()).ngettext(singular, plural, n)


def _when(value: str | None) -> str:
    """A stored UTC moment as the operator reads it out: Japan time, the zone named."""
    return japan_time(value, _LANGUAGE.get())


# What the service's words for states and kinds read as, on the pages (translated where shown).
STATE_LABELS = {
    "active": N_("active"), "suspended": N_("suspended"), "revoked": N_("revoked"),
    "pending": N_("being issued"), "expired": N_("expired"),
}
# The service's other words a page shows (the ``label`` filter): certificates, events, roles, actors.
WORD_LABELS = {
    "signature": N_("signature certificate"), "authentication": N_("user-authentication certificate"),
    "good": N_("valid"), "held": N_("on hold"),
    "registered": N_("registered"), "certificates-issued": N_("certificates issued"),
    "issuance-refused": N_("issuance refused"), "owner-revoked": N_("revoked by the owner"),
    "superseded": N_("replaced by another phone"), "uninstalled": N_("app removed"),
    "stale-certificate": N_("old certificates deleted on reinstall"), "card-revoked": N_("card's certificate revoked"),
    "password-reset": N_("password reset"), "owner-lifted": N_("suspension lifted by the owner"),
    "supervisor-lifted": N_("suspension lifted by a supervisor"),
    "signature-reissued": N_("signature certificate reissued"), "supervisor-revoked": N_("revoked by a supervisor"),
    "owner-card-revoked": N_("revoked by the owner with the card"),
    "owner-suspended": N_("suspended by the owner with the card"),
    "operator": N_("operator"), "supervisor": N_("supervisor"), "auditor": N_("auditor"), "owner": N_("owner"),
    "system": N_("system"), "suspend": N_("suspension"), "lift": N_("lift"), "revoke": N_("revocation"),
    "carrier": N_("mobile carrier"),
}


def _state_text(registration: Mapping[str, Any]) -> str:
    """What the console says of a registration's state: only what the CA has confirmed is stated as done."""
    state = str(registration.get("state", ""))
    requested = requested_wording(state, registration.get("ca_sync"))
    return _(requested) if requested else _(STATE_LABELS.get(state, state))


def _detail(problem: Problem) -> str:
    """A refusal's explanation in the page's language: its catalogued sentence translated, with its values."""
    return problem.sentence.translate(_) if problem.sentence is not None else _(problem.detail)


def _event_label(event: str | None) -> str:
    """An event of the history: the event ``suspended`` is the act (一時利用停止), not the state (一時利用停止中)."""
    return _label("suspend" if event == "suspended" else event)


def _label(word: str | None) -> str:
    """One of the service's words (a state, an event, a role...) as the page's language says it."""
    word = word or ""
    return _(STATE_LABELS.get(word) or WORD_LABELS.get(word) or OPTION_LABELS.get(word) or word)


templates = Jinja2Templates(directory=str(_HERE / "templates"))
templates.env.add_extension("jinja2.ext.i18n")
templates.env.install_gettext_callables(_, _ngettext, newstyle=True)  # type: ignore[attr-defined]
templates.env.policies["ext.i18n.trimmed"] = True
templates.env.filters["when"] = _when
templates.env.filters["label"] = _label
templates.env.filters["state_text"] = _state_text
templates.env.filters["detail"] = _detail
templates.env.filters["event_label"] = _event_label
templates.env.globals["PREFIX"] = PREFIX


# -- every answer: security headers, and problems as pages ---------------------------------------
class ConsoleRoute(APIRoute):
    """Adds the security headers to every answer and turns refusals into pages."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            _LANGUAGE.set(language_from_header(request.headers.get("accept-language"), _ctx(request).settings.lang))
            try:
                response = await handler(request)
            except NotSignedIn as problem:
                response = _not_signed_in(request, problem)
            except PasswordChangeRequired as problem:  # after a reset: the password page, and nothing else
                response = (RedirectResponse(f"{PREFIX}/password", status_code=303)
                            if request.method in ("GET", "HEAD") else problem_page(request, problem))
            except Problem as problem:
                response = problem_page(request, problem)
            except RequestValidationError as exc:
                detail = "; ".join(_error_text(e) for e in exc.errors()[:3]) or _("the request is not valid")
                response = problem_page(request, InvalidInput(detail))
            except StarletteHTTPException as exc:  # e.g. a form the parser refuses
                response = problem_page(request, _HTTPProblem(exc.status_code, str(exc.detail)))
            except Exception:  # a page, not a stack trace; the cause goes to the log only
                log.exception("console page failed")
                response = problem_page(request, _Internal(_("the server failed. Reload the registration to see "
                                                             "whether anything changed before trying again.")))
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler


class _Internal(Problem):
    status, title, slug = 500, N_("Internal error"), "internal"


class _HTTPProblem(Problem):
    title, slug = N_("Request refused"), "http"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.context


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A console page; the header shows who is signed in (if anyone) and the logout button."""
    who: SignedIn | None = getattr(request.state, "who", None)
    nav = []
    if who is not None and not who.must_change_password:
        if may(who.role, Permission.FIND):
            nav.append((_("Find a registration"), f"{PREFIX}/find"))
        if may(who.role, Permission.APPROVE):
            nav.append((_("Approvals"), f"{PREFIX}/approvals"))
        if may(who.role, Permission.READ_AUDIT):
            nav.append((_("Audit trail"), f"{PREFIX}/audit"))
    if who is not None:
        nav.append((_("Password"), f"{PREFIX}/password"))
    # Only what pages show: never the settings (tokens, keys).
    context = {"who": who, "nav": nav, "lang": _LANGUAGE.get(), **context}
    return templates.TemplateResponse(request, template, context, status_code=status)


def problem_page(request: Request, problem: Problem, back: str | None = None) -> Response:
    who: SignedIn | None = getattr(request.state, "who", None)
    if back is None:
        back = _home(who.role) if who is not None else f"{PREFIX}/login"
    return page(request, "problem.html", problem.status, problem=problem, back=back)


def _not_signed_in(request: Request, problem: NotSignedIn) -> Response:
    """Pages lead to the login; a form sent without a live session is refused (it did nothing)."""
    request.state.who = None
    if request.method in ("GET", "HEAD"):
        response: Response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    else:
        response = problem_page(request, problem, back=f"{PREFIX}/login")
    return _without_dead_cookie(request, response)


def _home(role: Role) -> str:
    return f"{PREFIX}/audit" if role is Role.AUDITOR else f"{PREFIX}/find"


def _set_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, path=PREFIX, httponly=True, samesite="strict",
                        secure=_ctx(request).settings.console_secure_cookies)


def _forget_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict",
                           secure=_ctx(request).settings.console_secure_cookies)


# -- dependencies: the session and the form ------------------------------------------------------
def signed_in(request: Request) -> SignedIn:
    """The operator of the session cookie, or :class:`NotSignedIn`."""
    ctx = _ctx(request)
    who = operators.session_for_token(ctx.store, ctx.settings, request.cookies.get(COOKIE))
    request.state.who = who
    return who


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted form's text fields (a field given twice: the last one)."""
    form = await request.form()
    return {key: value for key, value in form.multi_items() if isinstance(value, str)}


def _check_origin(request: Request) -> None:
    """A POST from a page of another site is refused.

    Browsers send ``Origin`` with every POST, but under ``Referrer-Policy: no-referrer`` (which
    every console page has) Chromium sends ``Origin: null`` even for the page's own forms; there
    ``Sec-Fetch-Site`` (sent by every current browser, unforgeable by a page) tells.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise CSRFRejected(_("this form was sent from another site's page (Sec-Fetch-Site: {site}); open the "
                             "console at its own address and try again (nothing was changed)").format(site=site[:20]))
    origin = request.headers.get("origin")
    if origin is None or (origin == "null" and site == "same-origin"):
        return
    netloc = request.url.netloc.lower()
    own = {f"{request.url.scheme}://{netloc}"}
    if _ctx(request).settings.console_secure_cookies:
        own.add(f"https://{netloc}")  # TLS ended at a proxy in front of the service
    if origin.lower() not in own:
        raise CSRFRejected(_("this form was sent from another site's page; open the console at its own address "
                             "and try again (nothing was changed)"))


def _check_form(request: Request, who: SignedIn, fields: dict[str, str]) -> None:
    """Origin and the session's form token; refused before anything else happens."""
    _check_origin(request)
    sent = fields.get("csrf_token", "")
    if not sent or not hmac.compare_digest(sent.encode(), who.csrf_token.encode()):
        raise CSRFRejected(_("form token missing or wrong; reload the page and try again (nothing was changed)"))


def _require(request: Request, who: SignedIn, permission: Permission, case_reference: str | None = None) -> None:
    """The role check the use cases make, refusals audited the same way, for what the console
    checks before calling one (showing a form, the confirmation step)."""
    callcentre.require_permission(_ctx(request), who, permission, case_reference)


# -- validation messages -------------------------------------------------------------------------
_FRIENDLY = {
    "missing": N_("required"),
    "string_pattern_mismatch": N_("only letters, digits and . _ / - (no spaces)"),
    "enum": N_("choose one of the options"),
    "literal_error": N_("choose one of the options"),
    "string_too_short": N_("too short"),
    "string_too_long": N_("too long"),
}
# The form fields as the pages label them, for "which field is wrong".
FIELD_LABELS = {
    "name": N_("Name"), "birth": N_("Date of birth"), "address": N_("Address"), "code": N_("Suspension code"),
    "reason": N_("Reason"), "ticket": N_("Ticket"), "channel": N_("Channel"), "caller": N_("Who is asking?"),
    "relationship": N_("Relationship to the owner"), "note": N_("Note"),
}


def _error_field(error: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))


def _error_text(error: Mapping[str, Any]) -> str:
    where = _error_field(error)
    friendly = _FRIENDLY.get(error.get("type", ""))
    cause = (error.get("ctx") or {}).get("error")  # a validator's ValueError: its sentence, translated
    sentence = cause.args[0] if isinstance(cause, ValueError) and cause.args else None
    if friendly:
        message = _(friendly)
    elif isinstance(sentence, Sentence):
        message = sentence.translate(_)
    else:
        message = _(str(error.get("msg", "not valid")).removeprefix("Value error, "))
    return f"{_(FIELD_LABELS.get(where, where))}: {message}" if where else message


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(_error_text(e) for e in exc.errors(include_url=False))


def _first_field(exc: ValidationError, fields: tuple[str, ...]) -> str | None:
    """The first form field the refusal names, to give it the focus (else None: the form's first)."""
    for error in exc.errors(include_url=False):
        if _error_field(error) in fields:
            return _error_field(error)
    return None


# -- signing in and out --------------------------------------------------------------------------
def _current_or_none(request: Request) -> SignedIn | None:
    try:
        return signed_in_to_change_password(request)
    except NotSignedIn:
        return None


@router.get("", summary="The console's start page")
def start(request: Request) -> Response:
    who = _current_or_none(request)
    if who is not None:
        return RedirectResponse(_home(who.role), status_code=303)
    return _without_dead_cookie(request, RedirectResponse(f"{PREFIX}/login", status_code=303))


def _without_dead_cookie(request: Request, response: Response) -> Response:
    if COOKIE in request.cookies:
        _forget_cookie(request, response)
    return response


@router.get("/static/console.css")
def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css; charset=utf-8")


@router.get("/login")
def login_form(request: Request) -> Response:
    who = _current_or_none(request)
    if who is not None:
        return RedirectResponse(_home(who.role), status_code=303)
    return _without_dead_cookie(request, page(request, "login.html",
                                              signed_out=request.query_params.get("signed_out") == "1"))


@router.post("/login")
def log_in(request: Request, fields: dict[str, str] = Depends(form_fields)) -> Response:
    _check_origin(request)
    ctx = _ctx(request)
    username, password = fields.get("username", "").strip(), fields.get("password", "")
    if not username or not password:
        return page(request, "login.html", 422, error=_("Enter your username and password."), username=username)
    try:
        who = operators.log_in(ctx.store, ctx.settings, ctx.keys.audit_chain, username, password,
                               request.client.host if request.client else "unknown")
    except (LoginRefused, TooManyAttempts) as problem:
        refused = page(request, "login.html", problem.status, error=f"{_(problem.title)}: {_detail(problem)}",
                       throttled=isinstance(problem, TooManyAttempts), username=username)
        if "retry_after" in problem.extra:
            refused.headers["Retry-After"] = str(problem.extra["retry_after"])
        return refused
    previous = request.cookies.get(COOKIE)
    if previous:
        operators.log_out(ctx.store, previous)
    response = RedirectResponse(f"{PREFIX}/password" if who.must_change_password else _home(who.role),
                                status_code=303)
    _set_cookie(request, response, who.token or "")
    return response


@router.post("/logout")
def log_out(request: Request, fields: dict[str, str] = Depends(form_fields)) -> Response:
    ctx = _ctx(request)
    who = _current_or_none(request)
    if who is not None:
        _check_form(request, who, fields)
        operators.log_out(ctx.store, request.cookies.get(COOKIE, ""))
    request.state.who = None
    response = RedirectResponse(f"{PREFIX}/login?signed_out=1", status_code=303)
    _forget_cookie(request, response)
    return response


# -- changing one's password (the only page a session has after a reset) ------------------------
def signed_in_to_change_password(request: Request) -> SignedIn:
    ctx = _ctx(request)
    who = operators.session_for_token(ctx.store, ctx.settings, request.cookies.get(COOKIE), password_change=True)
    request.state.who = who
    return who


@router.get("/password")
def password_form(request: Request, who: SignedIn = Depends(signed_in_to_change_password)) -> Response:
    return page(request, "password.html", changed=request.query_params.get("changed") == "1")


@router.post("/password")
def change_password(request: Request, who: SignedIn = Depends(signed_in_to_change_password),
                    fields: dict[str, str] = Depends(form_fields)) -> Response:
    _check_form(request, who, fields)
    ctx = _ctx(request)
    current, new = fields.get("current_password", ""), fields.get("new_password", "")
    if new != fields.get("new_password_again", ""):
        return page(request, "password.html", 422, error=_("The two new passwords differ."))
    try:
        operators.change_password(ctx.store, ctx.keys.audit_chain, who, request.cookies.get(COOKIE, ""), current, new)
    except InvalidInput as problem:
        return page(request, "password.html", problem.status, error=_detail(problem))
    return RedirectResponse(f"{PREFIX}/password?changed=1", status_code=303)


# -- finding a registration ----------------------------------------------------------------------
_FIND_FIELDS = ("name", "birth", "address", "code")


@router.get("/find")
def find_form(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    _require(request, who, Permission.FIND)
    return page(request, "find.html", values={}, by="items")


@router.post("/find")
def find(request: Request, who: SignedIn = Depends(signed_in),
         fields: dict[str, str] = Depends(form_fields)) -> Response:
    _check_form(request, who, fields)
    _require(request, who, Permission.FIND)
    by = "code" if fields.get("by") == "code" else "items"
    values = {k: fields.get(k, "") for k in _FIND_FIELDS}
    given = {k: v for k, v in values.items() if v.strip()}
    try:
        query = FindRequest(**given)
        results = callcentre.find_registrations(_ctx(request), who, query)
    except ValidationError as exc:
        return page(request, "find.html", 422, values=values, by=by, error=_validation_text(exc),
                    error_field=_first_field(exc, _FIND_FIELDS))
    except (NothingFound, InvalidInput) as problem:
        # The operator's own words come back only so a misspelling can be corrected.
        field = problem.extra.get("field") if isinstance(problem, InvalidInput) else None
        return page(request, "find.html", problem.status, values=values, by=by,
                    error=_detail(problem), error_title=_(problem.title),
                    error_field=field if field in _FIND_FIELDS else None)
    return page(request, "find.html", values={}, by=by, results=results)


# -- a registration: summary, history, actions ---------------------------------------------------
@dataclass(frozen=True)
class Action:
    name: str  # the URL's last segment
    permission: Permission
    event: Event
    model: type[BaseModel]
    fields: tuple[str, ...]
    heading: str  # of its form on the registration page
    button: str
    verb: str  # in capitals on the confirmation page
    consequence: str
    confirm: str  # the confirmation page's button
    done: str  # the result page's heading once the CA has it
    requested: str  # the result page's heading while the CA does not have it yet
    use_case: Callable[..., dict[str, Any]]


# Every text here is English marked for the catalogue (N_) and translated where the page shows it.
ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("suspend", Permission.SUSPEND, Event.SUSPENDED, SuspendRequest,
           ("reason", "caller", "relationship", "ticket", "channel"),
           N_("Suspend (lost or stolen phone)"), N_("Suspend…"), N_("SUSPEND"),
           N_("Both certificates (signature and user authentication) go on hold at the CA at once: "
              "nobody can sign or log in with this phone until the suspension is lifted."),
           N_("Confirm suspension"), N_("Suspended"), N_("Suspension requested: waiting for the CA"),
           callcentre.suspend_registration),
    Action("lift", Permission.LIFT, Event.SUPERVISOR_LIFTED, LiftRequest,
           ("reason", "ticket", "caller", "relationship"),
           N_("Lift the suspension"), N_("Lift suspension…"), N_("LIFT THE SUSPENSION OF"),
           N_("The user-authentication certificate is reinstated. The signature certificate is revoked; the owner "
              "gets a new one in the app with the card and the phone."),
           N_("Confirm lifting"), N_("Suspension lifted"), N_("Lift requested: waiting for the CA"),
           callcentre.lift_suspension),
    Action("revoke", Permission.REVOKE, Event.SUPERVISOR_REVOKED, RevokeRequest,
           ("reason", "ticket", "note", "caller", "relationship"),
           N_("Revoke for good"), N_("Revoke…"), N_("REVOKE"),
           N_("Both certificates are revoked for good. This cannot be undone: the owner must register the phone "
              "again with the card."),
           N_("Confirm revocation"), N_("Revoked"), N_("Revocation requested: waiting for the CA"),
           callcentre.revoke_registration),
)}

# The options' labels (the values sent stay the API's).
OPTION_LABELS = {
    "lost": N_("lost"), "stolen": N_("stolen"), "sold": N_("sold or given away without revoking"),
    "other": N_("other"), "phone": N_("phone call"), "counter": N_("at a counter"), "mail": N_("by post"),
    "keyCompromise": N_("key compromise (keyCompromise)"),
    "cessationOfOperation": N_("no longer used (cessationOfOperation)"),
    "superseded": N_("superseded (superseded)"), "affiliationChanged": N_("details changed (affiliationChanged)"),
    "privilegeWithdrawn": N_("privilege withdrawn (privilegeWithdrawn)"), "unspecified": N_("unspecified"),
}
CHOICES = {
    "suspend": {
        "reason": [(r.value, OPTION_LABELS[r.value]) for r in SuspensionReason],
        "channel": [(c.value, OPTION_LABELS[c.value]) for c in Channel],
    },
    "revoke": {"reason": [(r, OPTION_LABELS[r]) for r in REVOKE_REASONS]},
    # Who asked, on every act (a proxy may ask for a suspension only: callcentre/schemas.py CalledIn).
    "caller": [(CallerKind.SELF.value, N_("the owner")),
               (CallerKind.PROXY.value, N_("someone on the owner's behalf")),
               (CallerKind.INTERNAL.value, N_("nobody called: the call centre's own decision"))],
}
# The result pages (Post/Redirect/Get): each act, and each decision on an approval, has its own.
DECISIONS = {"approved": N_("Approved: the {action} is done"), "rejected": N_("Rejected: the {action} was not done")}


def _possible(state: str, event: Event) -> bool:
    try:
        transition(State(state), event)
    except (TransitionRefused, ValueError):
        return False
    return True


def _registration_page(request: Request, who: SignedIn, case_reference: str, status: int = 200,
                       errors: dict[str, str] | None = None, values: dict[str, dict[str, str]] | None = None,
                       error_fields: dict[str, str | None] | None = None) -> Response:
    data = callcentre.registration_history(_ctx(request), who, case_reference)
    state = data["registration"]["state"]
    actions = [a for a in ACTIONS.values() if may(who.role, a.permission) and _possible(state, a.event)]
    return page(request, "registration.html", status, registration=data["registration"],
                events=list(reversed(data["events"])), actions=actions, choices=CHOICES,
                errors=errors or {}, values=values or {}, error_fields=error_fields or {})


@router.get("/registrations/{case_reference}")
def registration(request: Request, case_reference: str, who: SignedIn = Depends(signed_in)) -> Response:
    return _registration_page(request, who, case_reference)


@router.post("/registrations/{case_reference}/{action_name}")
def act(request: Request, case_reference: str, action_name: str, who: SignedIn = Depends(signed_in),
        fields: dict[str, str] = Depends(form_fields)) -> Response:
    """Suspend, lift or revoke: the first POST shows the confirmation, the second (confirmed=yes) acts."""
    _check_form(request, who, fields)
    action = ACTIONS.get(action_name)
    if action is None:
        raise RegistrationNotFound(_("the console has no action {action!r}").format(action=action_name))
    case_reference = normalise_case_reference(case_reference)
    _require(request, who, action.permission, case_reference)
    ctx = _ctx(request)
    values = {f: fields.get(f, "").strip() for f in action.fields}
    try:
        body = action.model(**{k: v for k, v in values.items() if v})
    except ValidationError as exc:
        return _registration_page(request, who, case_reference, 422, errors={action.name: _validation_text(exc)},
                                  values={action.name: values},
                                  error_fields={action.name: _first_field(exc, action.fields)})
    back = f"{PREFIX}/registrations/{case_reference}"
    if fields.get("confirmed") != "yes":
        with ctx.store.sessions() as session:
            summary = callcentre.summary(ctx, session, load_by_case_reference(session, case_reference))
        if not _possible(summary["state"], action.event):
            raise StateConflict(_("a {state} registration cannot be changed this way (it may have changed since "
                                  "the page was loaded)").format(state=_state_text(summary)))
        shown = {k: v for k, v in body.model_dump(mode="json").items() if v not in (None, "")}
        return page(request, "confirm.html", action=action, registration=summary, values=values, shown=shown,
                    back=back, field_labels=FIELD_LABELS, option_labels=OPTION_LABELS)
    try:
        action.use_case(ctx, who, case_reference, body)
    except StateConflict as problem:
        return problem_page(request, problem, back=back)
    return RedirectResponse(f"{back}/done/{action.name}", status_code=303)  # Post/Redirect/Get


@router.get("/registrations/{case_reference}/{action_name}")
def act_address(case_reference: str, action_name: str, who: SignedIn = Depends(signed_in)) -> Response:
    """The address of an act's form, opened as a page (a reload, a bookmark): the registration."""
    return RedirectResponse(f"{PREFIX}/registrations/{normalise_case_reference(case_reference)}", status_code=303)


@router.get("/registrations/{case_reference}/done/{outcome}")
def result_page(request: Request, case_reference: str, outcome: str, who: SignedIn = Depends(signed_in)) -> Response:
    """What an act or a decision did, as a page that can be reloaded and bookmarked: the heading names the
    act, the rest is the registration as it is now (and, until the CA has it, says that it waits for it)."""
    decision, _sep, act_name = outcome.rpartition("-")
    action = ACTIONS.get(act_name)
    if action is None or (decision and decision not in DECISIONS):
        raise RegistrationNotFound(_("the console has no result page {outcome!r}").format(outcome=outcome))
    data = callcentre.registration_history(_ctx(request), who, case_reference)
    registration = data["registration"]
    waiting = None if decision else next((a for a in registration["pending_approvals"] if a["action"] == act_name
                                          and a["requested_by"] == who.username), None)
    if decision:
        heading = _(DECISIONS[decision]).format(action=_label(act_name))
    elif waiting:
        heading = _("Waiting for a second supervisor")
    else:
        heading = _(action.requested if registration["ca_sync"] == "pending" else action.done)
    back = f"{PREFIX}/registrations/{registration['case_reference']}"
    return page(request, "result.html", heading=heading, waiting=waiting, action=action, back=back,
                changed=decision != "rejected" and waiting is None, registration=registration,
                recorded=data["events"][-1]["at"] if data["events"] else None)


# -- the two-person rule: approvals ----------------------------------------------------------------
@router.get("/approvals")
def approvals_page(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    """The acts waiting for a second supervisor."""
    return page(request, "approvals.html", approvals=callcentre.pending_approvals(_ctx(request), who))


@router.post("/approvals/{approval_id}/{decision}")
def decide(request: Request, approval_id: str, decision: str, who: SignedIn = Depends(signed_in),
           fields: dict[str, str] = Depends(form_fields)) -> Response:
    """Approve (the act is done now) or reject a pending act; answered with the registration's result."""
    _check_form(request, who, fields)
    if decision not in ("approve", "reject"):
        raise RegistrationNotFound(_("the console has no decision {decision!r}").format(decision=decision))
    back = f"{PREFIX}/approvals"
    try:
        result = callcentre.decide_approval(_ctx(request), who, approval_id, approve=decision == "approve")
    except StateConflict as problem:
        return problem_page(request, problem, back=back)
    decided = result["decided_approval"]
    return RedirectResponse(f"{PREFIX}/registrations/{result['case_reference']}/done/{decision}d-{decided['action']}",
                            status_code=303)  # Post/Redirect/Get


# -- the audit trail -----------------------------------------------------------------------------
@router.get("/audit")
def audit(request: Request, who: SignedIn = Depends(signed_in), after_seq: int | None = Query(None, ge=0),
          case_reference: str | None = Query(None, max_length=64)) -> Response:
    _require(request, who, Permission.READ_AUDIT)
    try:
        wanted = normalise_case_reference(case_reference or "") if (case_reference or "").strip() else None
    except InvalidInput:
        return page(request, "audit.html", 422, entries=[], older=None, after_seq=after_seq,
                    case_reference=case_reference,
                    error=_("A case reference is 12 letters and digits, like ABCD-EFGH-JKMN."))
    entries = callcentre.audit_trail(_ctx(request), who, after_seq, AUDIT_PAGE_SIZE + 1, wanted)
    older = entries[AUDIT_PAGE_SIZE - 1]["seq"] if len(entries) > AUDIT_PAGE_SIZE else None
    return page(request, "audit.html", entries=entries[:AUDIT_PAGE_SIZE], older=older, after_seq=after_seq,
                case_reference=wanted or "")


__all__ = ["router", "COOKIE", "SECURITY_HEADERS", "ACTIONS"]
