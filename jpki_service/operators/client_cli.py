"""``jpki-operator``: the call centre's command line, over the operator HTTP API (docs/operator-api.md).

It is a client only: it talks to a running ``jpki-service`` with a bearer session, never to the
database. ``login`` keeps the session token in a file (0600, in a 0700 folder) next to the service
URL it belongs to; the password is never stored, printed or passed as an argument (it is prompted
without echo, or read from JPKI_OPERATOR_PASSWORD), and the token is never printed.

Every refusal is one line on stderr and a non-zero exit, never a traceback:

- 1: the service refused (a problem document: "refused (403 Not allowed for this role): ...")
- 2: usage error, or not signed in ("not signed in: run jpki-operator login")
- 3: the service could not be reached

With ``--json`` a command prints the API's JSON document on stdout, and a refusal as one line of
JSON on stderr: the service's problem document as it came, or one made the same way here
(``type`` ``urn:jpki-operator:...``) for not signed in, unreachable and unexpected answers.

Messages are in Japanese by default, English with ``--lang en`` or ``JPKI_LANG=en`` (catalogue:
jpki_service/locale/ja/LC_MESSAGES/operator_cli.po); times are Japan time with the zone named.
Heavy libraries (httpx, pydantic, cryptography) are imported inside the commands: ``--help`` loads none.
"""
from __future__ import annotations

import enum
import functools
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from jpki_common.i18n import Messages, choose_language, japan_time
from jpki_common.process import no_garbage_collection_at_exit
from jpki_common.revocation_reasons import REVOCATION_REASONS
from jpki_common.secret_prompt import NoTerminal, ask
from jpki_service.callcentre.choices import CallerKind, Channel, SuspensionReason

if TYPE_CHECKING:
    import httpx

_ = Messages(Path(__file__).resolve().parent.parent / "locale", "operator_cli")
_.use(choose_language(os.environ.get("JPKI_LANG")))  # the --lang option overrides it


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark only"
    return message

DEFAULT_SERVICE = "http://127.0.0.1:8000"
DEFAULT_SESSION_FILE = Path("~/.config/jpki-operator/session.json")
API = "/api/v1/operator"
USER_AGENT = "jpki-operator/0.1"

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
NOT_SIGNED_IN = N_("not signed in: run jpki-operator login")

app = typer.Typer(help="The call centre's command line: find, suspend, lift, revoke, history and audit, "
                       "over the lifecycle service's operator API. Messages in Japanese by default; --lang en "
                       "or JPKI_LANG=en for English.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

F = TypeVar("F", bound=Callable[..., Any])


RevocationReason = enum.Enum(  # type: ignore[misc]
    "RevocationReason", {r: r for r in REVOCATION_REASONS}, type=str)


# -- failures ------------------------------------------------------------------------------------
class Failure(Exception):
    """A refusal to report: one line of text (or the problem document with --json) and an exit code."""

    def __init__(self, message: str, code: int, problem: dict[str, Any]) -> None:
        super().__init__(message)
        self.message, self.code, self.problem = message, code, problem


def _local_problem(slug: str, title: str, detail: str, status: int | None = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"type": f"urn:jpki-operator:{slug}", "title": title, "detail": detail}
    if status is not None:
        problem["status"] = status
    return problem


def not_signed_in(why: str | None = None) -> Failure:
    message = _(NOT_SIGNED_IN) + (f" ({why})" if why else "")
    problem = _local_problem("not-signed-in", "Not signed in", why or NOT_SIGNED_IN, 401)
    return Failure(message, EXIT_USAGE, problem)


def usage(message: str) -> Failure:
    return Failure(_("error: {message}").format(message=message), EXIT_USAGE,
                   _local_problem("usage", "Usage error", message))


def _emit_failure(failure: Failure, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps(failure.problem, ensure_ascii=False, separators=(",", ":")), err=True)
    else:
        typer.secho(failure.message, err=True, fg=typer.colors.RED)
    raise typer.Exit(failure.code)


def command(name: str | None = None) -> Callable[[F], F]:
    """Register a command whose failures become one line on stderr (JPKI_OPERATOR_DEBUG=1: tracebacks)."""
    def register(function: F) -> F:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            as_json = bool(kwargs.get("as_json"))
            try:
                return function(*args, **kwargs)
            except Failure as failure:
                _emit_failure(failure, as_json)
            except NoTerminal as exc:
                _emit_failure(usage(_("no terminal: set {variable}").format(variable=exc.variable)), as_json)
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise
            except Exception as exc:
                if os.environ.get("JPKI_OPERATOR_DEBUG"):
                    raise
                # The type only: an exception's text could hold a header or a body.
                problem = _local_problem("internal", "Unexpected error", type(exc).__name__)
                unexpected = Failure(_("error: unexpected {kind}").format(kind=type(exc).__name__), EXIT_REFUSED,
                                     problem)
                _emit_failure(unexpected, as_json)

        app.command(name)(run)
        return function
    return register


# -- options and the session file ----------------------------------------------------------------
@dataclass
class Options:
    service: str | None  # given by --service or JPKI_SERVICE_URL; None: the session's, else the default
    session_file: Path
    timeout: float


class Language(str, enum.Enum):
    JA = "ja"
    EN = "en"


def _options(ctx: typer.Context) -> Options:
    return ctx.find_root().obj


@app.callback()
def main_options(
    ctx: typer.Context,
    service: str | None = typer.Option(
        # The same variable as jpki-app's (issue 14, item 8); JPKI_OPERATOR_SERVICE, its old name, still works.
        None, "--service", envvar=["JPKI_SERVICE_URL", "JPKI_OPERATOR_SERVICE"], metavar="URL",
        help=f"The lifecycle service (default: the one logged in to, else {DEFAULT_SERVICE})."),
    session_file: Path = typer.Option(
        DEFAULT_SESSION_FILE, "--session-file", envvar="JPKI_OPERATOR_SESSION", metavar="PATH",
        help="Where login keeps the service URL and the session token (never the password)."),
    timeout: float = typer.Option(30.0, "--timeout", min=1, envvar="JPKI_OPERATOR_TIMEOUT",
                                  help="Seconds to wait for the service."),
    lang: Language | None = typer.Option(None, "--lang", help="Language of the messages: ja (default) or en; "
                                         "else JPKI_LANG."),
) -> None:
    _.use(choose_language(lang.value if lang else None, os.environ.get("JPKI_LANG")))
    ctx.obj = Options(service.rstrip("/") if service else None, session_file.expanduser(), timeout)


def _write_session(path: Path, document: dict[str, Any]) -> None:
    """Written whole or not at all: a temporary file made 0600 from the start, then renamed."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)  # mkdir's mode is cut by the umask
    temporary = folder / f".{path.name}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_session(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise not_signed_in(_("the session file {path} is unreadable").format(path=path)) from None
    if not isinstance(document, dict) or not isinstance(document.get("token"), str) \
            or not isinstance(document.get("service"), str):
        raise not_signed_in(_("the session file {path} is not one jpki-operator wrote").format(path=path))
    return document


@dataclass
class Session:
    service: str
    token: str
    username: str | None
    role: str | None


def _session(options: Options) -> Session:
    document = _read_session(options.session_file)
    if document is None:
        raise not_signed_in()
    service = document["service"].rstrip("/")
    if options.service and options.service != service:
        raise not_signed_in(_("the session in {path} is for {service}, not {other}").format(
            path=options.session_file, service=service, other=options.service))
    return Session(service, document["token"], document.get("username"), document.get("role"))


# -- HTTP ----------------------------------------------------------------------------------------
def _request(service: str, method: str, path: str, timeout: float, token: str | None = None,
             **kwargs: Any) -> httpx.Response:
    import httpx

    headers = {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(base_url=service, timeout=timeout, headers=headers) as client:
            return client.request(method, path, **kwargs)
    except httpx.UnsupportedProtocol:
        raise usage(_("--service must be an http:// or https:// URL, not {url!r}").format(url=service)) from None
    except httpx.InvalidURL:
        raise usage(_("--service is not a URL: {url!r}").format(url=service)) from None
    except httpx.TransportError as exc:
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        detail = f"cannot reach the service at {service} ({reason})"
        raise Failure(_("service unreachable: cannot reach the service at {url} ({reason}); check --service or "
                        "JPKI_SERVICE_URL").format(url=service, reason=reason), EXIT_UNREACHABLE,
                      _local_problem("service-unreachable", "Service unreachable", detail)) from None


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and "title" in document:
        return document
    return _local_problem("unexpected-answer", "Unexpected answer",
                          f"HTTP {response.status_code} without a problem document", response.status_code)


def _answer(response: httpx.Response, session_file: Path | None = None) -> Any:
    """The JSON of a 2xx answer; otherwise a :class:`Failure` from its problem document.

    A 401 to a signed-in request means the session ended: the session file is removed.
    """
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            problem = _local_problem("unexpected-answer", "Unexpected answer", "the answer is not JSON",
                                     response.status_code)
            message = _("error: unexpected answer from the service (HTTP {status}, not JSON)").format(
                status=response.status_code)
            raise Failure(message, EXIT_REFUSED, problem) from None
    problem = _problem_of(response)
    if response.status_code == 401 and session_file is not None:
        session_file.unlink(missing_ok=True)
        failure = not_signed_in(str(problem.get("detail") or "") or None)
        failure.problem = problem
        raise failure
    title = problem.get("title") or "Refused"
    detail = problem.get("detail") or ""
    said = _("refused ({status} {title}): {detail}") if detail else _("refused ({status} {title})")
    raise Failure(said.format(status=response.status_code, title=title, detail=detail), EXIT_REFUSED, problem)


def _call(options: Options, method: str, path: str, **kwargs: Any) -> tuple[Any, httpx.Response]:
    """A signed-in request: the session's token to the session's service."""
    session = _session(options)
    response = _request(session.service, method, path, options.timeout, token=session.token, **kwargs)
    return _answer(response, options.session_file), response


# -- output --------------------------------------------------------------------------------------
def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2))


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    # Every caller builds each row with one cell per header.
    widths = [max(_width(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [headers, *rows]:
        cells = [cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=True)]
        typer.echo("  ".join(cells).rstrip())


def _when(iso: str | None) -> str:
    """An ISO timestamp as the operator reads it out: Japan time, the zone named."""
    if not iso:
        return "-"
    return japan_time(iso, _.language)


# The service's words (states, statuses, kinds, reasons, acts, roles) as the operator reads them.
WORDS = {
    "active": N_("active"), "suspended": N_("suspended"), "revoked": N_("revoked"), "expired": N_("expired"),
    "pending": N_("pending"), "good": N_("good"), "held": N_("held"),
    "signature": N_("signature"), "authentication": N_("authentication"),
    "lost": N_("lost"), "stolen": N_("stolen"), "sold": N_("sold"), "other": N_("other"),
    "owner-revoked": N_("owner-revoked"), "superseded": N_("superseded"), "uninstalled": N_("uninstalled"),
    "stale-certificate": N_("stale-certificate"), "card-revoked": N_("card-revoked"),
    "supervisor-revoked": N_("supervisor-revoked"), "supervisor-lifted": N_("supervisor-lifted"),
    "owner-lifted": N_("owner-lifted"), "signature-reissued": N_("signature-reissued"),
    "owner-card-revoked": N_("owner-card-revoked"), "owner-suspended": N_("owner-suspended"),
    "registered": N_("registered"), "certificates-issued": N_("certificates-issued"),
    "password-reset": N_("password-reset"), "issuance-refused": N_("issuance-refused"),
    "suspend": N_("suspend"), "lift": N_("lift"), "revoke": N_("revoke"),
    "operator": N_("operator"), "supervisor": N_("supervisor"), "auditor": N_("auditor"),
    "owner": N_("owner"), "system": N_("system"), "carrier": N_("carrier"), "remote-wipe": N_("remote-wipe"),
    "approved": N_("approved"), "rejected": N_("rejected"), "withdrawn": N_("withdrawn"),
}


def word(value: str | None) -> str:
    if not value:
        return "-"
    known = WORDS.get(value)
    return _(known) if known is not None else value


def _ca_sync_text(summary: dict[str, Any]) -> str:
    state = summary.get("ca_sync")
    if state == "done":
        return _("ca_sync done: the CA has it")
    if state == "pending":
        return _("ca_sync pending: recorded, on its way to the CA")
    why = f" ({summary['ca_sync_reason']})" if summary.get("ca_sync_reason") else ""
    return _("ca_sync {state}: recorded, but the CA refused a change{why}; see `jpki-service ca-commands list "
             "--state failed` on the service").format(state=state, why=why)


def _print_approval(approval: dict[str, Any]) -> None:
    asked = ", ".join(f"{k} {v}" for k, v in sorted(approval.get("request", {}).items()) if v)
    typer.echo(_("approval {id}: {action} of {case}, {state}; asked by {who} {when}, until {until} ({asked})").format(
        id=approval["approval_id"], action=word(approval["action"]), case=approval["case_reference"],
        state=word(approval["state"]), who=approval["requested_by"], when=_when(approval.get("requested_at")),
        until=_when(approval.get("expires_at")), asked=asked))


def _print_summary(summary: dict[str, Any]) -> None:
    waiting = summary.get("awaiting_approval")
    if waiting:
        typer.echo(_("NOT DONE YET: the {action} waits for a second supervisor's approval (the two-person rule): "
                     "`jpki-operator approve {id}` by another supervisor, until {until}").format(
            action=word(waiting["action"]), id=waiting["approval_id"], until=_when(waiting.get("expires_at"))))
    from jpki_service.lifecycle import requested_wording

    reason = f" ({word(summary['reason'])})" if summary.get("reason") else ""
    # Only what the CA has confirmed is said to be done (the state waits for the CA while ca_sync is pending).
    requested = requested_wording(summary["state"], summary.get("ca_sync"))
    typer.echo(_("registration {case}: {state}{reason}").format(
        case=summary["case_reference"], state=_(requested) if requested else word(summary["state"]), reason=reason))
    typer.echo(_("  holder {name}, {model}, registered {when}").format(
        name=summary.get("masked_name", "-"), model=summary.get("device_model", "-"),
        when=_when(summary.get("registered_at"))))
    for certificate in summary.get("certificates", []):
        superseded = "" if certificate.get("current", True) else _(" (superseded)")
        status = word(certificate["status"])
        if requested and certificate.get("current", True):
            status = _("{status} requested, waiting for the CA").format(status=status)
        typer.echo(_("  {kind} {status} serial {serial}{superseded}").format(
            kind=_pad(word(certificate["kind"]), 15), status=_pad(status, 8),
            serial=certificate.get("serial") or "-", superseded=superseded))
    typer.echo(f"  {_ca_sync_text(summary)}")
    if summary.get("signature_reissue_needed"):
        typer.echo(_("  the owner's app must get a new signature certificate (card + phone, in the app)"))


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


# -- arguments -----------------------------------------------------------------------------------
def _case_reference(value: str) -> str:
    from jpki_service.common.problems import InvalidInput
    from jpki_service.holder_data import normalise_case_reference

    try:
        return normalise_case_reference(value, "CASE")
    except InvalidInput as exc:
        raise typer.BadParameter(_("{reason} (as `find` shows it)").format(reason=exc.detail)) from None


CASE = typer.Argument(..., metavar="CASE", callback=_case_reference,
                      help="The registration's case reference (like ABCD-EFGH-JKMN, from `find`).")
JSON = typer.Option(False, "--json",
                    help="Print the API's JSON document (refusals: the problem document on stderr).")
TICKET = typer.Option(..., "--ticket", help="The call-centre ticket: letters, digits, . _ / -")


# -- commands ------------------------------------------------------------------------------------
@command("login")
def login(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Sign in and keep the session in the session file.

    User and password are prompted (the password hidden), or read from JPKI_OPERATOR_USER and
    JPKI_OPERATOR_PASSWORD. The file keeps the service URL and the token, never the password.
    """
    options = _options(ctx)
    service = options.service or DEFAULT_SERVICE
    username = os.environ.get("JPKI_OPERATOR_USER") or ask(_("user"), "JPKI_OPERATOR_USER", hide_input=False,
                                                            err=True)
    password = os.environ.get("JPKI_OPERATOR_PASSWORD") or ask(_("password"), "JPKI_OPERATOR_PASSWORD", err=True)
    previous = _read_session_quietly(options.session_file)
    response = _request(service, "POST", f"{API}/session", options.timeout,
                        json={"username": username.strip(), "password": password})
    document = _answer(response)
    token = document.pop("token", None) if isinstance(document, dict) else None
    if not token:
        raise Failure(_("error: the service's login answer holds no token"), EXIT_REFUSED,
                      _local_problem("unexpected-answer", "Unexpected answer", "no token in the answer"))
    _write_session(options.session_file, {
        "service": service, "username": document.get("username"), "role": document.get("role"),
        "expires_at": document.get("expires_at"), "token": token})
    if previous is not None and previous.get("token") != token:
        _end_quietly(previous, options.timeout)  # the session this file held before: end it at its service
    if as_json:
        _print_json({**document, "service": service})
    else:
        typer.echo(_("signed in to {service} as {user} ({role}); the session ends at the latest {until}").format(
            service=service, user=document.get("username"), role=word(document.get("role")),
            until=_when(document.get("expires_at"))))
        if document.get("must_change_password"):
            typer.echo(_("your password was reset: change it now with `jpki-operator password` (nothing else is "
                         "possible until then)"))


def _read_session_quietly(path: Path) -> dict[str, Any] | None:
    try:
        return _read_session(path)
    except Failure:
        return None


def _end_quietly(previous: dict[str, Any], timeout: float) -> None:
    try:
        _request(previous["service"].rstrip("/"), "DELETE", f"{API}/session", timeout,
                 token=previous["token"])
    except Failure:
        pass


@command("logout")
def logout(ctx: typer.Context, as_json: bool = JSON) -> None:
    """End the session at the service and remove the session file."""
    options = _options(ctx)
    session = _session(options)
    response = _request(session.service, "DELETE", f"{API}/session", options.timeout, token=session.token)
    already = response.status_code == 401
    if not already:
        _answer(response)
    options.session_file.unlink(missing_ok=True)
    if as_json:
        _print_json({"signed_out": True, "service": session.service, "session_had_ended": already})
    else:
        ended = _(" (the session had already ended)") if already else ""
        typer.echo(_("signed out of {service}{ended}").format(service=session.service, ended=ended))


@command("whoami")
def whoami(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Who the session belongs to, and when it ends."""
    options = _options(ctx)
    document, _response = _call(options, "GET", f"{API}/session")
    document.pop("token", None)
    service = _session_service(options)
    if as_json:
        _print_json({**document, "service": service})
    else:
        typer.echo(_("{user} ({role}) at {service}; the session ends at the latest {until}").format(
            user=document["username"], role=word(document["role"]), service=service,
            until=_when(document.get("expires_at"))))


@command("password")
def password(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Change your own password (after a reset by the administrator, the only thing a session can do).

    The current and the new password are prompted (hidden, the new one twice), or read from
    JPKI_OPERATOR_PASSWORD and JPKI_OPERATOR_NEW_PASSWORD. The account's other sessions end.
    """
    options = _options(ctx)
    current = os.environ.get("JPKI_OPERATOR_PASSWORD") or ask(_("current password"), "JPKI_OPERATOR_PASSWORD",
                                                              err=True)
    new = os.environ.get("JPKI_OPERATOR_NEW_PASSWORD") or _new_password()
    document, _response = _call(options, "POST", f"{API}/password",
                                json={"current_password": current, "new_password": new})
    if as_json:
        _print_json(document)
    else:
        typer.echo(_.plural("password of {user} changed; {n} other session ended",
                            "password of {user} changed; {n} other sessions ended",
                            document["other_sessions_ended"]).format(user=document["username"],
                                                                     n=document["other_sessions_ended"]))


def _new_password() -> str:
    """The new password asked twice, its rule in the prompt (the service's, jpki_service/operators/service.py)."""
    from jpki_service.operators.service import MIN_PASSWORD_LENGTH

    while True:
        new = ask(_("new password (at least {n} characters)").format(n=MIN_PASSWORD_LENGTH),
                  "JPKI_OPERATOR_NEW_PASSWORD", err=True)
        if ask(_("Repeat for confirmation"), "JPKI_OPERATOR_NEW_PASSWORD", err=True) == new:
            return new
        typer.echo(_("the two entries do not match; try again"), err=True)


def _session_service(options: Options) -> str:
    document = _read_session_quietly(options.session_file)
    return document["service"] if document else (options.service or DEFAULT_SERVICE)


@command("find")
def find(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", help="The holder's name as on the card."),
    birth: str | None = typer.Option(None, "--birth", metavar="DATE",
                                     help="Date of birth: YYYY-MM-DD or as the card prints it (平成2年1月2日, "
                                          "昭和六十年五月五日, 令和元年5月1日, H2.1.2)."),
    address: str | None = typer.Option(None, "--address", help="The address as on the card or as said "
                                                               "(千代田一丁目1番 for 千代田1-1)."),
    code: str | None = typer.Option(None, "--code", help="The suspension code the owner's app showed."),
    as_json: bool = JSON,
) -> None:
    """Find the caller's registrations (operator, supervisor).

    By name + birth date + address as on the card (spaces and full-width/half-width differences do
    not matter; the date as YYYY-MM-DD or in the Japanese era, the address's 丁目, 番地, 番 and 号 as
    said or in the hyphen form), or by the suspension code the owner's app showed.
    """
    holder = {"name": name, "birth": birth, "address": address}
    if code is not None and any(v is not None for v in holder.values()):
        raise usage(_("give either --code, or --name, --birth and --address; not both"))
    if code is None and not all(v is not None for v in holder.values()):
        missing = ", ".join(f"--{k}" for k, v in holder.items() if v is None)
        raise usage(_("give --name, --birth and --address (missing: {missing}), or --code").format(missing=missing))
    body = {"code": code} if code is not None else holder
    document, _response = _call(_options(ctx), "POST", f"{API}/registrations/search", json=body)
    if as_json:
        _print_json(document)
        return
    results = document.get("results", [])
    _table([_("CASE"), _("NAME"), _("REGISTERED"), _("MODEL"), _("STATE"), _("REASON")],
           [[r["case_reference"], r.get("masked_name") or "-", _when(r.get("registered_at")),
             r.get("device_model") or "-", word(r["state"]), word(r.get("reason"))] for r in results])


def _act(ctx: typer.Context, case: str, action: str, body: dict[str, Any], as_json: bool) -> None:
    document, _response = _call(_options(ctx), "POST", f"{API}/registrations/{case}/{action}", json=body)
    if as_json:
        _print_json(document)
    else:
        _print_summary(document)


def _caller(act: str, caller: CallerKind, relationship: str | None) -> dict[str, str]:
    """The caller members of an act's body, checked by the service's own rule first (usage error, exit 2)."""
    from jpki_service.callcentre.schemas import CalledIn, LiftRequest, RevokeRequest, SuspendRequest

    requests: dict[str, type[CalledIn]] = {"suspend": SuspendRequest, "lift": LiftRequest, "revoke": RevokeRequest}
    request = requests[act]
    problem = request.caller_problem(caller, relationship)
    if problem:
        raise usage(f"--caller {caller.value}: {problem}")
    return {"caller": caller.value, **({"relationship": relationship} if relationship else {})}


CALLER = typer.Option(..., "--caller", help="Who asks: the owner (self), someone on their behalf (proxy: only a "
                                          "suspension), or nobody, the call centre's own decision (internal).")
RELATIONSHIP = typer.Option(None, "--relationship", help="The proxy's relation to the owner (spouse, parent, ...).")


@command("suspend")
def suspend(
    ctx: typer.Context,
    case: str = CASE,
    reason: SuspensionReason = typer.Option(..., "--reason", help="Why the caller asks."),
    caller: CallerKind = CALLER,
    relationship: str | None = RELATIONSHIP,
    ticket: str = TICKET,
    channel: Channel = typer.Option(Channel.PHONE, "--channel", help="How the request came in."),
    as_json: bool = JSON,
) -> None:
    """Suspend a registration: both certificates on hold at the CA (operator, supervisor)."""
    body = {"reason": reason.value, "ticket": ticket, "channel": channel.value,
            **_caller("suspend", caller, relationship)}
    _act(ctx, case, "suspend", body, as_json)


@command("lift")
def lift(
    ctx: typer.Context,
    case: str = CASE,
    reason: str = typer.Option(..., "--reason", help="Why the suspension ends (3 to 200 characters)."),
    caller: CallerKind = CALLER,
    relationship: str | None = RELATIONSHIP,
    ticket: str = TICKET,
    as_json: bool = JSON,
) -> None:
    """Lift a suspension (supervisor).

    The authentication certificate is released, the signature certificate revoked; the owner's app
    then gets a new signature certificate (card + phone). Under the two-person rule it waits for a
    second supervisor (`jpki-operator approve`).
    """
    _act(ctx, case, "lift", {"reason": reason, "ticket": ticket, **_caller("lift", caller, relationship)},
         as_json)


@command("revoke")
def revoke(
    ctx: typer.Context,
    case: str = CASE,
    reason: RevocationReason = typer.Option(RevocationReason("keyCompromise"), "--reason",
                                            help="The RFC 5280 revocation reason."),
    ticket: str = TICKET,
    note: str | None = typer.Option(None, "--note",
                                       help="A short note for the history (at most 200 characters)."),
    caller: CallerKind = CALLER,
    relationship: str | None = RELATIONSHIP,
    as_json: bool = JSON,
) -> None:
    """Revoke both certificates for good (supervisor). Under the two-person rule (keyCompromise, by
    default) it waits for a second supervisor (`jpki-operator approve`)."""
    body: dict[str, Any] = {"reason": reason.value, "ticket": ticket, **_caller("revoke", caller, relationship)}
    if note is not None:
        body["note"] = note
    _act(ctx, case, "revoke", body, as_json)


@command("approvals")
def approvals(ctx: typer.Context,
              all_states: bool = typer.Option(False, "--all", help="Decided and expired ones too."),
              as_json: bool = JSON) -> None:
    """Lifts and revocations waiting for a second supervisor (supervisor)."""
    document, _response = _call(_options(ctx), "GET", f"{API}/approvals",
                                params={"all": "true"} if all_states else None)
    if as_json:
        _print_json(document)
        return
    for approval in document.get("approvals", []):
        _print_approval(approval)
    if not document.get("approvals"):
        typer.echo(_("nothing waits for approval"))


APPROVAL = typer.Argument(..., metavar="APPROVAL", help="The approval id (16 hex digits, from `approvals`).")


def _decide(ctx: typer.Context, approval: str, decision: str, as_json: bool) -> None:
    document, _response = _call(_options(ctx), "POST", f"{API}/approvals/{approval.strip().lower()}/{decision}")
    if as_json:
        _print_json(document)
        return
    _print_approval(document["decided_approval"])
    if decision == "approve":
        _print_summary(document)


@command("approve")
def approve(ctx: typer.Context, approval: str = APPROVAL, as_json: bool = JSON) -> None:
    """Approve another supervisor's lift or revocation: it is done now (supervisor, never the one who asked)."""
    _decide(ctx, approval, "approve", as_json)


@command("reject")
def reject(ctx: typer.Context, approval: str = APPROVAL, as_json: bool = JSON) -> None:
    """Reject a waiting lift or revocation, or withdraw one's own: nothing is done (supervisor)."""
    _decide(ctx, approval, "reject", as_json)


@command("history")
def history(ctx: typer.Context, case: str = CASE, as_json: bool = JSON) -> None:
    """A registration's state, certificates and changes, with who made them."""
    document, _response = _call(_options(ctx), "GET", f"{API}/registrations/{case}/history")
    if as_json:
        _print_json(document)
        return
    _print_summary(document["registration"])
    typer.echo("")
    _table([_("AT"), _("EVENT"), _("STATE"), _("BY"), _("NOTE")],
           [[_when(e.get("at")), word(e["event"]), f"{word(e['from_state'])} -> {word(e['to_state'])}",
             word(e["actor"]) + (f":{e['operator']}" if e.get("operator") else ""), e.get("note") or ""]
            for e in document.get("events", [])])


@command("audit")
def audit(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="How many entries, newest first."),
    before: int | None = typer.Option(
        None, "--before", min=1, metavar="SEQ",
        help="The next page: entries older than this seq (the API's after_seq)."),
    case: str | None = typer.Option(None, "--case", metavar="CASE",
                                    callback=lambda v: v if v is None else _case_reference(v),
                                    help="Only the entries of the registration with this case reference."),
    as_json: bool = JSON,
) -> None:
    """The audit trail, newest first (auditor)."""
    params: dict[str, Any] = {"limit": limit}
    if before is not None:
        params["after_seq"] = before
    if case is not None:
        params["case_reference"] = case
    document, _response = _call(_options(ctx), "GET", f"{API}/audit", params=params)
    if as_json:
        _print_json(document)
        return
    entries = document.get("entries", [])
    _table([_("SEQ"), _("AT"), _("ACTOR"), _("ACTION"), _("CASE"), _("DETAILS")],
           [[str(e["seq"]), _when(e.get("at")), e["actor"], e["action"], e.get("case_reference") or "-",
             json.dumps(e.get("details") or {}, ensure_ascii=False, separators=(",", ":"))] for e in entries])
    if len(entries) == limit:
        typer.echo(_("(older entries: --before {seq})").format(seq=entries[-1]["seq"]), err=True)


def main() -> None:
    no_garbage_collection_at_exit()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
