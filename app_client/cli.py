"""``jpki-app``: the simulated phone's Mynaportal-style app (docs/phone-app.md).

Secrets are never arguments: they are prompted without echo (new ones twice), or read from
JPKI_CARD_PASSWORD, JPKI_SIGN_PASSWORD, JPKI_NEW_SIGN_PASSWORD and JPKI_AUTH_PIN for scripts.
Every refusal is one line on stderr and a non-zero exit, never a traceback (which could show a
secret among its locals).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

# Light imports only at module level: `jpki-app --help` must not load httpx, cryptography or pyHanko
# (tests/test_cli_conventions.py). Each command imports the flows it runs.
from app_client.defaults import DEFAULT_DEVICE_MODEL, DEFAULT_SERVICE_URL, DEFAULT_TIMEOUT
from app_client.errors import AppError
from app_client.messages import N_, _
from app_client.owner_secrets import (
    AUTH_PIN,
    CARD_PASSWORD,
    NEW_SIGN_PASSWORD,
    SIGN_PASSWORD,
    OwnerSecret,
    SecretBreaksRule,
)
from jpki_common.card_rules import SecretRuleViolation
from jpki_common.i18n import choose_language, japan_time
from jpki_common.process import no_garbage_collection_at_exit
from jpki_common.secret_prompt import NoTerminal, ask

if TYPE_CHECKING:
    from cryptography import x509

    from app_client import flows
    from app_client.app_data import EndedRegistration
    from app_client.service_client import Registration

LIFT_COMMAND = "jpki-app lift-suspension --card FILE"

app = typer.Typer(help="The JPKI smartphone app (simulated phone, secure element and card reader). "
                       "Messages in Japanese by default; --lang en or JPKI_LANG=en for English.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

F = TypeVar("F", bound=Callable[..., Any])

SECRETS = {secret.variable: secret for secret in (CARD_PASSWORD, SIGN_PASSWORD, NEW_SIGN_PASSWORD, AUTH_PIN)}


class Language(str, enum.Enum):
    JA = "ja"
    EN = "en"


@dataclass
class Options:
    home: Path
    service_url: str | None
    timeout: float = DEFAULT_TIMEOUT

    def phone(self) -> flows.Phone:
        from app_client import flows

        return flows.open_phone(self.home, self.service_url, timeout=self.timeout, on_slow=_say_still_waiting)


def _say_still_waiting(url: str) -> None:
    typer.echo(_("waiting for the service at {url}…").format(url=url), err=True)


def fail(message: str, code: int = 1) -> None:
    typer.secho(_("error: {message}").format(message=message), err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def command(name: str | None = None, on: typer.Typer | None = None,
            refusal: Callable[[Exception], str] = str) -> Callable[[F], F]:
    """Register a command (on ``app``, or the sub-app ``on``: ``jpki-app card ...``) whose refusals become one
    line on stderr, worded by ``refusal`` (set JPKI_APP_DEBUG=1 for tracebacks)."""
    def register(function: F) -> F:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except (AppError, SecretRuleViolation) as exc:
                fail(refusal(exc))
            except NoTerminal as exc:
                fail(_no_terminal(exc.variable))
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise
            except Exception as exc:
                if os.environ.get("JPKI_APP_DEBUG"):
                    raise
                fail(_("unexpected {kind}: {reason}").format(kind=type(exc).__name__, reason=exc))

        (on or app).command(name)(run)
        return function
    return register


def _no_terminal(variable: str) -> str:
    which = SECRETS.get(variable)
    name = which.name if which is not None else variable
    return _("no terminal: set {variable} to give the {secret}").format(variable=variable, secret=name)


def secret(which: OwnerSecret, new: bool = False) -> str:
    """The secret from its environment variable, else prompted without echo, its rule in the prompt
    (twice when ``new``: the two entries are compared as the card compares them, lower case folded).

    A prompted new secret that breaks the rule is asked again, with the rule (never the secret); one
    from the environment is checked by the flow instead. With no terminal and nothing on standard
    input: :class:`NoTerminal`, naming the variable.
    """
    value = os.environ.get(which.variable)
    if value is not None:
        return value
    prompt = _("{secret} ({rule})").format(secret=_capitalised(which.name), rule=which.rule)
    while True:
        value = ask(prompt, which.variable)
        if not new:
            return value
        try:
            folded = which.check(value)
        except SecretBreaksRule as exc:
            typer.echo(_("{problem}; try again").format(problem=exc), err=True)
            continue
        again = ask(_("Repeat for confirmation"), which.variable)
        try:
            if which.check(again) == folded:
                return value
        except SecretBreaksRule:
            pass
        typer.echo(_("the two entries do not match; try again"), err=True)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _options(ctx: typer.Context) -> Options:
    return ctx.obj


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Path = typer.Option(Path("var/phone"), "--home", envvar="JPKI_APP_HOME",
                              help="The simulated phone's folder: se/ (secure element) and app/ (app data)."),
    service: str | None = typer.Option(None, "--service", envvar="JPKI_SERVICE_URL",
                                          help=f"Lifecycle service URL (default: the one registered with, "
                                               f"else {DEFAULT_SERVICE_URL})."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", min=0.1, envvar="JPKI_APP_TIMEOUT",
                                  help="Seconds to wait for each answer of the service."),
    lang: Language | None = typer.Option(None, "--lang", help="Language of the messages: ja (default) or en; "
                                         "else JPKI_LANG."),
) -> None:
    _.use(choose_language(lang.value if lang else None, os.environ.get("JPKI_LANG")))
    ctx.obj = Options(home, service, timeout)
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Keep library logs off the terminal: pyHanko logs every failed validation with a traceback,
    which the verdict already says in one line. With no handler configured, Python's last-resort
    handler would print them; a null handler on the root logger prevents that. Where logging is
    configured already (pytest, an embedding program), it is left alone."""
    root = logging.getLogger()
    if not root.handlers and not os.environ.get("JPKI_APP_DEBUG"):
        root.addHandler(logging.NullHandler())


# -- the words of the service, as the owner reads them -------------------------------------------

WORDS = {
    # registration states, certificate statuses, ca_sync
    "active": N_("active"), "suspended": N_("suspended"), "revoked": N_("revoked"), "expired": N_("expired"),
    "pending": N_("pending"), "good": N_("good"), "held": N_("held"), "done": N_("done"), "failed": N_("failed"),
    # certificate kinds
    "signature": N_("signature"), "authentication": N_("authentication"),
    # reasons and events
    "owner-revoked": N_("owner-revoked"), "superseded": N_("superseded"), "uninstalled": N_("uninstalled"),
    "stale-certificate": N_("stale-certificate"), "card-revoked": N_("card-revoked"),
    "supervisor-revoked": N_("supervisor-revoked"), "supervisor-lifted": N_("supervisor-lifted"),
    "owner-lifted": N_("owner-lifted"), "signature-reissued": N_("signature-reissued"),
    "issuance-refused": N_("issuance-refused"), "lost": N_("lost"), "stolen": N_("stolen"), "sold": N_("sold"),
    "other": N_("other"), "registered": N_("registered"), "certificates-issued": N_("certificates-issued"),
    "password-reset": N_("password-reset"),
    "owner-card-revoked": N_("owner-card-revoked"), "owner-suspended": N_("owner-suspended"),
    "remote-wipe": N_("remote-wipe"),
    # who acted
    "owner": N_("owner"), "system": N_("system"), "operator": N_("operator"), "supervisor": N_("supervisor"),
    "carrier": N_("carrier"),
}


def word(value: str | None) -> str:
    """A state, status, kind, reason or actor of the service in the owner's language ("-" for none)."""
    if not value:
        return "-"
    known = WORDS.get(value)
    return _(known) if known is not None else value


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a kanji takes two)."""
    return text + " " * max(0, width - _width(text))


def _field(label: str, value: str, margin: int = 16) -> None:
    """One line of a record: the label (marked with N_) in a margin of ``margin`` columns."""
    typer.echo(f"{_pad(_(label), margin - 1)} {value}")


# -- registration and status ---------------------------------------------------------------------

@command()
def register(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The My Number card file (jpki-ca card issue)."),
    model: str = typer.Option(DEFAULT_DEVICE_MODEL, "--model", help="Device model told to the service."),
    key_algorithm: str = typer.Option("rsa2048", "--key-algorithm", help="rsa2048 (default) or p256."),
    email: str | None = typer.Option(None, "--email", help="Where the service sends notices (optional; "
                                     "change it later with `jpki-app email set`)."),
    login_notices: bool = typer.Option(False, "--login-notices", help="Also be told of each log-in with this "
                                       "phone at the relying party (needs --email)."),
) -> None:
    """Copy the card's certificates onto this phone. Secrets: JPKI_CARD_PASSWORD, JPKI_SIGN_PASSWORD, JPKI_AUTH_PIN."""
    from app_client import flows
    from app_client.card_reader import CardReader

    if key_algorithm not in ("rsa2048", "p256"):
        fail(_("--key-algorithm {value!r}: use rsa2048 or p256").format(value=key_algorithm))
    reader = CardReader(card)
    card_password = secret(CARD_PASSWORD)
    new_password = secret(SIGN_PASSWORD, new=True)
    new_pin = secret(AUTH_PIN, new=True)
    registration = flows.register(_options(ctx).phone(), reader, card_password, new_password, new_pin, model,
                                  key_algorithm, email=email, login_notices=login_notices)
    typer.echo(_("registered this phone: registration {id} ({state})").format(
        id=registration.registration_id, state=word(registration.state)))
    if registration.case_reference:
        typer.echo(_("case reference: {reference} (give it when you call the My Number line)").format(
            reference=registration.case_reference))
    _print_certificates(registration)
    if registration.superseded:
        typer.echo(_("  superseded (revoked, their phones delete their copy when next online): {ids}").format(
            ids=", ".join(registration.superseded)))
    if registration.suspension_code:
        typer.echo(_("Write down your suspension code: {code} — the call centre asks for it if your phone is "
                     "lost").format(code=registration.suspension_code))
    if email:
        typer.echo(_("notices go to {address}").format(address=email))
        typer.echo(_("log-in notices: on") if login_notices else _("log-in notices: off"))
    if registration.state == "pending":
        typer.echo(_("the CA has not issued the certificates yet; `jpki-app status` fetches them when it has"))


@command()
def status(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print JSON, PEMs included.")) -> None:
    """Ask the service for this phone's registration; delete a revoked or expired copy from the SE.

    A registration that ended on this phone (revoke, found revoked or expired, stale) is still shown,
    with whether the CA has its end (ca sync), until `jpki-app forget`.
    """
    from app_client import flows

    report = flows.status(_options(ctx).phone())
    ended = report.ended
    if as_json:
        typer.echo(json.dumps({
            "registration": report.registration.document if report.registration else None,
            "registration_id": (report.registration.registration_id if report.registration
                                else ended.registration_id if ended else None),
            "suspension_code": report.suspension_code,
            "copy_deleted": report.copy_deleted, "stored": list(report.stored),
            "secure_element": report.in_secure_element,
            # The owner token stays on the phone: it reads the registration, it is never printed.
            "ended": {k: v for k, v in dataclasses.asdict(ended).items() if k != "owner_token"} if ended else None,
            "checked": report.checked, "check_error": report.check_error,
        }, indent=2, ensure_ascii=False))
        return
    if report.registration is None and ended is not None:
        _print_last_known(ended, report.check_error)
        return
    if report.registration is None:
        typer.echo(_("this phone holds no JPKI certificates"))
        return
    registration = report.registration
    _field(N_("registration"), registration.registration_id)
    _field(N_("case reference"), _("{reference} (give it when you call the My Number line)").format(
        reference=registration.case_reference or "-"))
    if ended is None:
        code = report.suspension_code or _("- (not kept on this phone: use the one you wrote down)")
        _field(N_("suspension code"), code)
        _field(N_("state"), word(registration.state))
    else:
        _field(N_("state"), f"{word(registration.state)} ({_how_it_ended(ended)})")
    _field(N_("reason"), word(registration.reason))
    if registration.last_change:
        change = registration.last_change
        _field(N_("last change"), _("{event} by {actor}, {when}").format(
            event=word(change.event), actor=word(change.actor), when=_when(change.at)))
    pending = registration.document.get("pending_ca_operations")
    _field(N_("ca sync"), _ca_sync(registration.ca_sync, pending if isinstance(pending, int) else None)
           + (f" ({registration.ca_sync_reason})" if registration.ca_sync_reason else ""))
    _print_certificates(registration, None if ended else report.in_secure_element)
    if report.copy_deleted:
        typer.echo(_("the registration is {state}: its copy in this phone's secure element was deleted").format(
            state=word(registration.state)))
    if ended is not None:
        _say_whether_the_ca_has_the_end(registration.ca_sync)
        return
    for kind in report.stored:
        typer.echo(_("the {kind} certificate was written into the secure element").format(kind=_kind(kind)))
    last = registration.last_change
    if registration.state == "suspended" and last is not None and last.event == "owner-suspended":
        typer.echo(_("SUSPENDED with your My Number card (reason: {reason}) on {when}. Lift it with: {command}").format(
            reason=word(registration.reason), when=_when(last.at), command=LIFT_COMMAND))
    elif registration.state == "suspended" and last is not None and last.actor == "carrier":
        typer.echo(_("SUSPENDED on your mobile carrier's lost-phone report (reason: {reason}) on {when}. Lift it "
                     "with: {command}").format(reason=word(registration.reason), when=_when(last.at),
                                               command=LIFT_COMMAND))
    elif registration.state == "suspended":
        typer.echo(_("SUSPENDED by the call centre (reason: {reason}) on {when}. Lift it with: {command}").format(
            reason=word(registration.reason), when=_when(_changed_at(registration, "suspended")),
            command=LIFT_COMMAND))
    elif registration.signature_reissue_needed:
        typer.echo(_("The call centre lifted the suspension on {when}: the user-authentication certificate is good "
                     "again, but this phone has no valid signature certificate until you prove your card and this "
                     "phone. Reissue it with: {command}").format(
            when=_when(_changed_at(registration, "supervisor-lifted")), command=LIFT_COMMAND))


ENDED_BY = {
    "owner-revoke": N_("revoked by you"),
    "found-ended": N_("found ended by status"),
    "stale-certificate": N_("certificates found left in the secure element, reported stale"),
}


def _forget_hint() -> str:
    return _("its keys and certificates are deleted from this phone's secure element; `jpki-app status` shows it "
             "until you remove this record with `jpki-app forget`")


def _how_it_ended(ended: EndedRegistration) -> str:
    how = ENDED_BY.get(ended.ended_by)
    return _("ended on this phone: {how}, {when}").format(how=_(how) if how else ended.ended_by,
                                                           when=_when(ended.ended_at))


def _ca_sync(ca_sync: str | None, pending: int | None) -> str:
    """``done``, ``pending, 2 changes waiting``, ``failed``: the service's ca_sync with its waiting count."""
    if ca_sync == "pending" and pending:
        return _.plural("pending, {n} change waiting", "pending, {n} changes waiting", pending).format(n=pending)
    return word(ca_sync)


def _say_whether_the_ca_has_the_end(ca_sync: str | None) -> None:
    if ca_sync == "done":
        typer.echo(_("the CA has it (ca_sync done): relying parties see its certificates revoked"))
    elif ca_sync == "pending":
        typer.echo(_("the CA does not have it yet (ca_sync pending): the service keeps carrying it; "
                     "check again with `jpki-app status`"))
    elif ca_sync == "failed":
        typer.echo(_("the CA refused a change (ca_sync failed): the service's operators can re-queue it; "
                     "check again with `jpki-app status`"))
    typer.echo(_("this registration has ended: {hint}").format(hint=_forget_hint()))


def _print_last_known(ended: EndedRegistration, why: str | None) -> None:
    """The ended registration as the phone last knew it: the service could not be asked now."""
    _field(N_("registration"), ended.registration_id)
    _field(N_("state"), f"{word(ended.state)} ({_how_it_ended(ended)})")
    _field(N_("reason"), word(ended.reason))
    _field(N_("ca sync"), _ca_sync(ended.ca_sync, ended.pending_ca_operations)
           + (f" ({ended.ca_sync_reason})" if ended.ca_sync_reason else ""))
    for kind, serial in ended.serials.items():
        typer.echo(_("  {kind} serial {serial}").format(kind=_pad(_kind(kind), 15), serial=serial))
    typer.echo(_("could not check with the service now ({why}): this is what the phone last knew, as the service "
                 "said on {when}").format(why=why or _("no answer"), when=_when(ended.checked_at)))
    typer.echo(_("this registration has ended: {hint}").format(hint=_forget_hint()))


def _say_where_the_ca_stands(registration: Registration, change: str) -> None:
    """Only the CA's record makes a change count for relying parties: say whether it has it yet."""
    if registration.ca_sync == "pending":
        typer.echo(_("{change} is recorded by the service and will be carried to the CA; the service keeps trying "
                     "until the CA has it (ca_sync pending). Check with `jpki-app status`: `ca sync done` means "
                     "the CA has it").format(change=_capitalised(change)))
    elif registration.ca_sync == "failed":
        typer.echo(_("{change} is recorded by the service, but the CA refused it (ca_sync failed: {reason}). The "
                     "service's operators can re-queue it; check with `jpki-app status`").format(
            change=_capitalised(change), reason=registration.ca_sync_reason or _("no reason given")))


def _changed_at(registration: Registration, event: str) -> str:
    """When ``event`` happened, if it is the last change the service reports; else the last update."""
    change = registration.last_change
    if change is not None and change.event == event:
        return change.at
    return str(registration.document.get("updated_at") or "")


def _when(iso: str) -> str:
    """An ISO 8601 time as the owner reads it: Japan time to the minute, the zone named."""
    if not iso:
        return _("an unknown date")
    return japan_time(iso, _.language, seconds=False)


def _kind(kind: str) -> str:
    """A certificate kind as the owner reads it: in English the service's own word (signature,
    authentication); in Japanese the certificate's name (署名用電子証明書...)."""
    return word(kind)


def _print_certificates(registration: Registration, in_se: dict[str, str] | None = None) -> None:
    for certificate in registration.certificates:
        if not certificate.current:
            continue
        held = ""
        if in_se is not None:
            held = _("in SE") if certificate.serial and in_se.get(certificate.kind) == certificate.serial \
                else _("not in SE")
        typer.echo(_("  {kind} serial {serial} {status} {held}").format(
            kind=_pad(_kind(certificate.kind), 15), serial=_pad(certificate.serial or "-", 34),
            status=_pad(word(certificate.status), 8), held=held))


# -- owner actions -------------------------------------------------------------------------------

@command()
def revoke(ctx: typer.Context) -> None:
    """Revoke both certificates (e.g. before selling the phone). Secret: JPKI_SIGN_PASSWORD."""
    from app_client import flows

    registration = flows.revoke(_options(ctx).phone(), secret(SIGN_PASSWORD))
    typer.echo(_("revoked: registration {id} is {state} ({reason}); the certificates were deleted from the "
                 "secure element").format(id=registration.registration_id, state=word(registration.state),
                                          reason=word(registration.reason or "owner-revoked")))
    _say_where_the_ca_stands(registration, _("the revocation"))
    typer.echo(_("`jpki-app status` keeps showing this registration (and whether the CA has the revocation) "
                 "until you remove the record with `jpki-app forget`"))


@command()
def forget(ctx: typer.Context) -> None:
    """Remove the record of a registration that ended on this phone (revoked, expired, stale): `status` shows it
    until then. Refused while the phone holds a live registration."""
    from app_client import flows

    ended = flows.forget_ended(_options(ctx).phone())
    if ended is None:
        typer.echo(_("this phone keeps no ended registration: nothing to forget"))
        return
    typer.echo(_("forgot registration {id} ({state}, {reason}): `jpki-app status` no longer shows it").format(
        id=ended.registration_id, state=word(ended.state), reason=word(ended.reason)))
    if ended.ca_sync != "done":
        typer.echo(_("when last checked ({when}) the CA did not have all of it yet (ca_sync {ca_sync}); the "
                     "service keeps carrying it all the same").format(when=_when(ended.checked_at),
                                                                      ca_sync=ended.ca_sync or "-"))


@command("reset-password")
def reset_password(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The card that registered this phone."),
) -> None:
    """Set a new phone signature password after a card proof. Secrets: JPKI_CARD_PASSWORD, JPKI_NEW_SIGN_PASSWORD."""
    from app_client import flows
    from app_client.card_reader import CardReader

    reader = CardReader(card)
    card_password = secret(CARD_PASSWORD)
    new_password = secret(NEW_SIGN_PASSWORD, new=True)
    flows.reset_password(_options(ctx).phone(), reader, card_password, new_password)
    typer.echo(_("the phone signature password is set anew and its lock is cleared"))


@command("lift-suspension")
def lift_suspension(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The card that registered this phone."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, PEMs included."),
) -> None:
    """The phone is found: lift the call centre's suspension, or reissue the signature certificate after a
    supervisor lifted it. The SE makes a new signature key (same password). Secret: JPKI_CARD_PASSWORD."""
    from app_client import flows
    from app_client.card_reader import CardReader

    reader = CardReader(card)
    phone = _options(ctx).phone()
    registration = flows.lift_suspension(phone, reader, secret(CARD_PASSWORD))
    in_se = flows.serials_in_secure_element(phone)
    if as_json:
        typer.echo(json.dumps({"registration": registration.document, "secure_element": in_se},
                              indent=2, ensure_ascii=False))
        return
    reissued = registration.last_change is not None and registration.last_change.event == "signature-reissued"
    done = _("reissued the signature certificate") if reissued else _("lifted the suspension")
    typer.echo(_("{done}: registration {id} is {state}").format(done=done, id=registration.registration_id,
                                                              state=word(registration.state)))
    _print_certificates(registration, in_se)
    replaced = registration.replaced("signature")
    old = _(" (the old one, {serial}, is {status})").format(serial=replaced[-1].serial,
                                                          status=word(replaced[-1].status)) if replaced else ""
    reinstated = "" if reissued else _("the user-authentication certificate is reinstated (same serial); ")
    typer.echo(_("{reinstated}the signature certificate is new, for a new key made in the secure element, under "
                 "the same phone signature password{old}").format(reinstated=reinstated, old=old))
    signature = registration.current("signature")
    if signature is None or not signature.certificate_pem:
        typer.echo(_("the CA has not issued the new signature certificate yet; "
                     "`jpki-app status` fetches it when it has"))
    else:
        _say_where_the_ca_stands(registration, _("the change"))


@command()
def login(ctx: typer.Context) -> None:
    """Log in to the demo relying party with the user-authentication key. Secret: JPKI_AUTH_PIN."""
    from app_client import flows

    answer = flows.login(_options(ctx).phone(), secret(AUTH_PIN))
    typer.echo(_("logged in: certificate {serial}, OCSP {ocsp}").format(serial=answer.get("serial"),
                                                                       ocsp=word(answer.get("ocsp"))))


# -- the phone's own life ------------------------------------------------------------------------

@command()
def uninstall(
    ctx: typer.Context,
    offline: bool = typer.Option(False, "--offline", help="Uninstall without network: the service is not told."),
) -> None:
    """Uninstall the app. Online: the certificates expire and leave the SE. Offline: they stay, live."""
    from app_client import flows

    report = flows.uninstall(_options(ctx).phone(), offline)
    if offline:
        typer.echo(_("uninstalled offline: the service was not told"))
        if report.registration_id:
            typer.echo(_("the secure element still holds the live certificates of registration {id}; reinstall the "
                         "app and open it online to end them").format(id=report.registration_id))
        return
    if report.registration is not None:
        typer.echo(_("registration {id} is {state} ({reason})").format(
            id=report.registration_id, state=word(report.registration.state),
            reason=word(report.registration.reason)))
    typer.echo(_("uninstalled: the certificates were deleted from the secure element") if report.copy_deleted
               else _("uninstalled: the secure element held no certificates"))


@command("factory-reset")
def factory_reset(ctx: typer.Context) -> None:
    """Initialise the phone: the app's data is erased, the secure element is not."""
    from app_client import flows

    phone = _options(ctx).phone()
    flows.factory_reset(phone)
    typer.echo(_("factory reset: the app's data is erased; the secure element was not touched"))
    if phone.se.registration_id:
        typer.echo(_("it still holds the certificates of registration {id}").format(id=phone.se.registration_id))


@command()
def install(ctx: typer.Context) -> None:
    """Install and open the app online: certificates left in the SE are reported stale and deleted."""
    from app_client import flows

    report = flows.install(_options(ctx).phone())
    if report.stale_registration_id:
        state = word(report.registration.state) if report.registration else "?"
        typer.echo(_("found the certificates of registration {id} left in the secure element: the service was "
                     "told (registration {state}) and they were deleted").format(
            id=report.stale_registration_id, state=state))
        typer.echo(_("`jpki-app status` shows that registration (and whether the CA has its end) until you remove "
                     "the record with `jpki-app forget`"))
    elif report.discarded_unbound_keys:
        typer.echo(_("deleted keys of an enrolment the service never accepted"))
    typer.echo(_("installed"))


# -- documents -----------------------------------------------------------------------------------

@command()
def sign(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="The PDF to sign."),
    target: Path = typer.Argument(..., help="Where to write the signed PDF."),
    tsa_url: str | None = typer.Option(None, "--tsa-url", envvar="JPKI_TSA_URL",
                                          help="RFC 3161 timestamp authority (default: the CA's own, "
                                               "<CA URL>/tsa, from the signature certificate)."),
    tsa_root: Path | None = typer.Option(None, "--tsa-root", help="Root certificate of that TSA (PEM/DER), "
                                            "if it is not the CA's root."),
    no_timestamp: bool = typer.Option(False, "--no-timestamp",
                                      help="Sign without a signature timestamp (PAdES B-B): such a signature "
                                           "becomes invalid once the certificate is revoked."),
) -> None:
    ("PAdES-sign a PDF with the phone signature key, timestamped (B-LT). "  # still the docstring; one line in the help
     "Secret: JPKI_SIGN_PASSWORD (asked only to really sign).")
    from app_client import flows
    from app_client.pdf import http_timestamper

    if no_timestamp and tsa_url:
        fail(_("--no-timestamp and --tsa-url (or JPKI_TSA_URL) contradict each other; give one"))
    timestamper = http_timestamper(tsa_url) if tsa_url else None
    signed = flows.sign_pdf(_options(ctx).phone(), source, target, lambda: secret(SIGN_PASSWORD), timestamper,
                            _certificates(tsa_root), timestamp=not no_timestamp)
    typer.echo(_("signed {target} ({level}) with phone signature certificate {serial}").format(
        target=signed.target, level=signed.level, serial=signed.serial))
    if signed.tsa:
        typer.echo(_("  timestamp from {tsa}").format(tsa=signed.tsa))


@command()
def verify(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="The signed PDF."),
    root: Path | None = typer.Option(None, "--root", help="Trusted root (PEM/DER); default: the root pinned "
                                        "at registration, else fetched through the certificate's caIssuers URLs."),
    tsa_root: Path | None = typer.Option(None, "--tsa-root", help="Trusted root of the timestamp authority, "
                                            "if it is not the CA's root."),
) -> None:
    """Judge every signature of a PDF (hard-fail revocation check). Exit 0 only if all are valid.

    A signature is judged at the current time, except one whose certificate was revoked after its
    trusted signature timestamp: that one is judged at the timestamp, with the revocation
    information embedded when it was signed.
    """
    from app_client import flows

    trusted = _certificates(root)
    verdict = flows.verify_pdf(_options(ctx).phone(), source, trusted[0] if trusted else None, _certificates(tsa_root))
    if not verdict.signatures:
        typer.echo(_("{source}: no signature").format(source=source))
    for signature in verdict.signatures:
        typer.echo(f"{signature.field_name}: {signature.summary}")
        _field(N_("  signer"), _("{name} (certificate {serial})").format(name=signature.signer_name or "-",
                                                                         serial=signature.serial), 15)
        _field(N_("  signed at"), _("{when} (as the signer says)").format(
            when=_moment(signature.signed_at) if signature.signed_at else "-"), 15)
        if signature.timestamp:
            trusted_word = _("trusted") if signature.timestamp_trusted else _("NOT trusted")
            _field(N_("  timestamp"), _("{when} ({trusted} TSA)").format(when=_moment(signature.timestamp),
                                                                        trusted=trusted_word), 15)
        judged = (_("at its timestamp {when}").format(when=_moment(signature.judged_at)) if signature.judged_at
                  else _("now"))
        _field(N_("  judged"), judged, 15)
        _field(N_("  trust root"), signature.trust, 15)
    if not verdict.valid:
        raise typer.Exit(1)


def _moment(moment: Any) -> str:
    return japan_time(moment, _.language)


def _certificates(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        return []
    from app_client.pdf import load_certificate

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AppError(_("cannot read {path}: {reason}").format(path=path, reason=exc.strerror)) from None
    return [load_certificate(data)]


def main() -> None:
    no_garbage_collection_at_exit()
    app()


from app_client.card_commands import card_app  # noqa: E402 - `jpki-app card ...`, app_client/card_commands.py

app.add_typer(card_app, name="card")

from app_client.email_commands import email_app  # noqa: E402 - `jpki-app email ...`, app_client/email_commands.py

app.add_typer(email_app, name="email")

import app_client.dealer_commands  # noqa: E402,F401 - `jpki-app dealer-check`, app_client/dealer_commands.py
