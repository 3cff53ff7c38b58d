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
"""
from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx
import typer

from jpki_common.profiles import REVOCATION_REASONS
from jpki_service.callcentre.schemas import (
    CalledIn,
    CallerKind,
    Channel,
    LiftRequest,
    RevokeRequest,
    SuspendRequest,
    SuspensionReason,
)
from jpki_service.common.problems import InvalidInput
from jpki_service.holder_data import normalise_case_reference

DEFAULT_SERVICE = "http://127.0.0.1:8000"
DEFAULT_SESSION_FILE = Path("~/.config/jpki-operator/session.json")
API = "/api/v1/operator"
USER_AGENT = "jpki-operator/0.1"

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
NOT_SIGNED_IN = "not signed in: run jpki-operator login"

app = typer.Typer(help="The call centre's command line: find, suspend, lift, revoke, history and audit, "
                       "over the lifecycle service's operator API.",
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
    message = NOT_SIGNED_IN + (f" ({why})" if why else "")
    problem = _local_problem("not-signed-in", "Not signed in", why or NOT_SIGNED_IN, 401)
    return Failure(message, EXIT_USAGE, problem)


def usage(message: str) -> Failure:
    return Failure(f"error: {message}", EXIT_USAGE, _local_problem("usage", "Usage error", message))


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
            except (typer.Exit, typer.Abort, click.ClickException):
                raise
            except Exception as exc:
                if os.environ.get("JPKI_OPERATOR_DEBUG"):
                    raise
                # The type only: an exception's text could hold a header or a body.
                problem = _local_problem("internal", "Unexpected error", type(exc).__name__)
                unexpected = Failure(f"error: unexpected {type(exc).__name__}", EXIT_REFUSED, problem)
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
) -> None:
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
        raise not_signed_in(f"the session file {path} is unreadable") from None
    if not isinstance(document, dict) or not isinstance(document.get("token"), str) \
            or not isinstance(document.get("service"), str):
        raise not_signed_in(f"the session file {path} is not one jpki-operator wrote")
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
        raise not_signed_in(f"the session in {options.session_file} is for {service}, not {options.service}")
    return Session(service, document["token"], document.get("username"), document.get("role"))


# -- HTTP ----------------------------------------------------------------------------------------
def _request(service: str, method: str, path: str, timeout: float, token: str | None = None,
             **kwargs: Any) -> httpx.Response:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(base_url=service, timeout=timeout, headers=headers) as client:
            return client.request(method, path, **kwargs)
    except httpx.UnsupportedProtocol:
        raise usage(f"--service must be an http:// or https:// URL, not {service!r}") from None
    except httpx.InvalidURL:
        raise usage(f"--service is not a URL: {service!r}") from None
    except httpx.TransportError as exc:
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        detail = f"cannot reach the service at {service} ({reason})"
        raise Failure(f"service unreachable: {detail}", EXIT_UNREACHABLE,
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
            message = f"error: unexpected answer from the service (HTTP {response.status_code}, not JSON)"
            raise Failure(message, EXIT_REFUSED, problem) from None
    problem = _problem_of(response)
    if response.status_code == 401 and session_file is not None:
        session_file.unlink(missing_ok=True)
        failure = not_signed_in(str(problem.get("detail") or "") or None)
        failure.problem = problem
        raise failure
    title = problem.get("title") or "Refused"
    detail = problem.get("detail") or ""
    raise Failure(f"refused ({response.status_code} {title}): {detail}".rstrip(": "), EXIT_REFUSED, problem)


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
    """An ISO timestamp to the minute, in UTC as the service gives it."""
    if not iso:
        return "-"
    try:
        return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return iso


def _ca_sync_text(summary: dict[str, Any]) -> str:
    state = summary.get("ca_sync")
    if state == "done":
        return "ca_sync done: the CA has it"
    if state == "pending":
        return "ca_sync pending: recorded, on its way to the CA"
    why = f" ({summary['ca_sync_reason']})" if summary.get("ca_sync_reason") else ""
    return (f"ca_sync {state}: recorded, but the CA refused a change{why}; "
            "see `jpki-service ca-commands list --state failed` on the service")


def _print_approval(approval: dict[str, Any]) -> None:
    asked = ", ".join(f"{k} {v}" for k, v in sorted(approval.get("request", {}).items()) if v)
    typer.echo(f"approval {approval['approval_id']}: {approval['action']} of {approval['case_reference']}, "
               f"{approval['state']}; asked by {approval['requested_by']} {_when(approval.get('requested_at'))}, "
               f"until {_when(approval.get('expires_at'))} ({asked})")


def _print_summary(summary: dict[str, Any]) -> None:
    waiting = summary.get("awaiting_approval")
    if waiting:
        typer.echo(f"NOT DONE YET: the {waiting['action']} waits for a second supervisor's approval (the two-person "
                   f"rule): `jpki-operator approve {waiting['approval_id']}` by another supervisor, until "
                   f"{_when(waiting.get('expires_at'))}")
    reason = f" ({summary['reason']})" if summary.get("reason") else ""
    typer.echo(f"registration {summary['case_reference']}: {summary['state']}{reason}")
    typer.echo(f"  holder {summary.get('masked_name', '-')}, {summary.get('device_model', '-')}, "
               f"registered {_when(summary.get('registered_at'))}")
    for certificate in summary.get("certificates", []):
        superseded = "" if certificate.get("current", True) else " (superseded)"
        typer.echo(f"  {certificate['kind']:<15} {certificate['status']:<8} "
                   f"serial {certificate.get('serial') or '-'}{superseded}")
    typer.echo(f"  {_ca_sync_text(summary)}")
    if summary.get("signature_reissue_needed"):
        typer.echo("  the owner's app must get a new signature certificate (card + phone, in the app)")


# -- arguments -----------------------------------------------------------------------------------
def _case_reference(value: str) -> str:
    try:
        return normalise_case_reference(value, "CASE")
    except InvalidInput as exc:
        raise typer.BadParameter(f"{exc.detail} (as `find` shows it)") from None


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
    username = os.environ.get("JPKI_OPERATOR_USER") or typer.prompt("user", err=True)
    password = os.environ.get("JPKI_OPERATOR_PASSWORD") or typer.prompt("password", hide_input=True, err=True)
    previous = _read_session_quietly(options.session_file)
    response = _request(service, "POST", f"{API}/session", options.timeout,
                        json={"username": username.strip(), "password": password})
    document = _answer(response)
    token = document.pop("token", None) if isinstance(document, dict) else None
    if not token:
        raise Failure("error: the service's login answer holds no token", EXIT_REFUSED,
                      _local_problem("unexpected-answer", "Unexpected answer", "no token in the answer"))
    _write_session(options.session_file, {
        "service": service, "username": document.get("username"), "role": document.get("role"),
        "expires_at": document.get("expires_at"), "token": token})
    if previous is not None and previous.get("token") != token:
        _end_quietly(previous, options.timeout)  # the session this file held before: end it at its service
    if as_json:
        _print_json({**document, "service": service})
    else:
        typer.echo(f"signed in to {service} as {document.get('username')} ({document.get('role')}); "
                   f"the session ends at the latest {_when(document.get('expires_at'))}")
        if document.get("must_change_password"):
            typer.echo("your password was reset: change it now with `jpki-operator password` (nothing else is "
                       "possible until then)")


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
        ended = " (the session had already ended)" if already else ""
        typer.echo(f"signed out of {session.service}{ended}")


@command("whoami")
def whoami(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Who the session belongs to, and when it ends."""
    options = _options(ctx)
    document, _ = _call(options, "GET", f"{API}/session")
    document.pop("token", None)
    service = _session_service(options)
    if as_json:
        _print_json({**document, "service": service})
    else:
        typer.echo(f"{document['username']} ({document['role']}) at {service}; "
                   f"the session ends at the latest {_when(document.get('expires_at'))}")


@command("password")
def password(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Change your own password (after a reset by the administrator, the only thing a session can do).

    The current and the new password are prompted (hidden, the new one twice), or read from
    JPKI_OPERATOR_PASSWORD and JPKI_OPERATOR_NEW_PASSWORD. The account's other sessions end.
    """
    options = _options(ctx)
    current = os.environ.get("JPKI_OPERATOR_PASSWORD") or typer.prompt("current password", hide_input=True,
                                                                        err=True)
    new = os.environ.get("JPKI_OPERATOR_NEW_PASSWORD") or typer.prompt(
        "new password (at least 12 characters)", hide_input=True, confirmation_prompt=True, err=True)
    document, _ = _call(options, "POST", f"{API}/password", json={"current_password": current, "new_password": new})
    if as_json:
        _print_json(document)
    else:
        typer.echo(f"password of {document['username']} changed; "
                   f"{document['other_sessions_ended']} other session(s) ended")


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
        raise usage("give either --code, or --name, --birth and --address; not both")
    if code is None and not all(v is not None for v in holder.values()):
        missing = ", ".join(f"--{k}" for k, v in holder.items() if v is None)
        raise usage(f"give --name, --birth and --address (missing: {missing}), or --code")
    body = {"code": code} if code is not None else holder
    document, _ = _call(_options(ctx), "POST", f"{API}/registrations/search", json=body)
    if as_json:
        _print_json(document)
        return
    results = document.get("results", [])
    _table(["CASE", "NAME", "REGISTERED", "MODEL", "STATE", "REASON"],
           [[r["case_reference"], r.get("masked_name") or "-", _when(r.get("registered_at")),
             r.get("device_model") or "-", r["state"], r.get("reason") or "-"] for r in results])


def _act(ctx: typer.Context, case: str, action: str, body: dict[str, Any], as_json: bool) -> None:
    document, _ = _call(_options(ctx), "POST", f"{API}/registrations/{case}/{action}", json=body)
    if as_json:
        _print_json(document)
    else:
        _print_summary(document)


def _caller(request: type[CalledIn], caller: CallerKind, relationship: str | None) -> dict[str, str]:
    """The caller members of an act's body, checked by the service's own rule first (usage error, exit 2)."""
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
            **_caller(SuspendRequest, caller, relationship)}
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
    _act(ctx, case, "lift", {"reason": reason, "ticket": ticket, **_caller(LiftRequest, caller, relationship)},
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
    body: dict[str, Any] = {"reason": reason.value, "ticket": ticket, **_caller(RevokeRequest, caller, relationship)}
    if note is not None:
        body["note"] = note
    _act(ctx, case, "revoke", body, as_json)


@command("approvals")
def approvals(ctx: typer.Context,
              all_states: bool = typer.Option(False, "--all", help="Decided and expired ones too."),
              as_json: bool = JSON) -> None:
    """Lifts and revocations waiting for a second supervisor (supervisor)."""
    document, _ = _call(_options(ctx), "GET", f"{API}/approvals", params={"all": "true"} if all_states else None)
    if as_json:
        _print_json(document)
        return
    for approval in document.get("approvals", []):
        _print_approval(approval)
    if not document.get("approvals"):
        typer.echo("nothing waits for approval")


APPROVAL = typer.Argument(..., metavar="APPROVAL", help="The approval id (16 hex digits, from `approvals`).")


def _decide(ctx: typer.Context, approval: str, decision: str, as_json: bool) -> None:
    document, _ = _call(_options(ctx), "POST", f"{API}/approvals/{approval.strip().lower()}/{decision}")
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
    document, _ = _call(_options(ctx), "GET", f"{API}/registrations/{case}/history")
    if as_json:
        _print_json(document)
        return
    _print_summary(document["registration"])
    typer.echo("")
    _table(["AT", "EVENT", "STATE", "BY", "NOTE"],
           [[_when(e.get("at")), e["event"], f"{e['from_state']} -> {e['to_state']}",
             e["actor"] + (f":{e['operator']}" if e.get("operator") else ""), e.get("note") or ""]
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
    document, _ = _call(_options(ctx), "GET", f"{API}/audit", params=params)
    if as_json:
        _print_json(document)
        return
    entries = document.get("entries", [])
    _table(["SEQ", "AT", "ACTOR", "ACTION", "CASE", "DETAILS"],
           [[str(e["seq"]), _when(e.get("at")), e["actor"], e["action"], e.get("case_reference") or "-",
             json.dumps(e.get("details") or {}, ensure_ascii=False, separators=(",", ":"))] for e in entries])
    if len(entries) == limit:
        typer.echo(f"(older entries: --before {entries[-1]['seq']})", err=True)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
