"""Telling owners when someone else changed their smartphone certificates (DESIGN.md 7).

A notification is written by :func:`enqueue` in the transaction of the change it reports, so it
exists exactly when the change does. :func:`send_due` delivers it later, outside any
transaction, with the same capped back-off as the CA queue (``ca_commands.service``): a sender
outage delays notifications, never loses them.

Delivery is at-least-once. A batch is claimed by pushing its ``next_attempt_at`` forward by
``CLAIM_SECONDS`` (so a second worker skips it), each message is sent, then marked sent in its
own transaction. A crash between the send and the mark sends that message again once the
claim runs out; the message carries its ``notification_id`` so a receiver can drop the repeat.

Messages hold no personal data: no name, address, birth date, secret or Individual Number,
only the registration id, what happened and who (by role, never an operator's user name) did it.

A notice for an owner who gave an e-mail address goes by e-mail (``senders.SmtpSender``, when
``JPKI_SMTP_HOST`` is set) to that address, opened from its seal only to send it; the e-mail adds the
masked name (``holder_data.mask_name``) and nothing more. Any other notice goes to the configured
sender (file or log). The owner may also ask for a notice of each log-in with the phone's
user-authentication certificate at the relying party (``LOGIN``, ``enqueue_login``).
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jpki_common.i18n import japan_time
from jpki_service import holder_data
from jpki_service.adapters.db import Store, utcnow
from jpki_service.common.retry import retry_delay
from jpki_service.common.texts import N_, TEXTS
from jpki_service.lifecycle import Event
from jpki_service.notifications.models import OwnerNotification
from jpki_service.notifications.senders import MailSender, OwnerMail, Sender
from jpki_service.registrations.models import PhoneCertificate, Registration

log = logging.getLogger("jpki_service.notifications")

CLAIM_SECONDS = 300  # how long a claimed batch is left to its worker before another may send it

# Who acted, by the role part of the actor ("operator:alice" -> "operator"); translated when sent.
_WHO = {
    "operator": N_("the JPKI call centre"),
    "supervisor": N_("a JPKI call-centre supervisor"),
    "owner": N_("a request made with your card or phone"),
    "system": N_("the JPKI service"),
    "relying-party": N_("the demo relying party of the JPKI service"),
    "carrier": N_("your mobile carrier, on a report of a lost or stolen phone"),
}
# What happened, per event; {who} is filled from _WHO. Events whose cause is the card or another
# phone name that cause instead of an actor.
_WHAT = {
    Event.SUSPENDED.value: N_("Your JPKI smartphone certificates were temporarily suspended by {who}."),
    Event.SUPERVISOR_LIFTED.value: N_(
        "The suspension of your JPKI smartphone certificates was lifted by {who}. To sign again, reissue "
        "the signature certificate in the app with your My Number Card."),
    Event.SUPERVISOR_REVOKED.value: N_("Your JPKI smartphone certificates were revoked by {who}."),
    Event.SUPERSEDED.value: N_(
        "The JPKI smartphone certificates on one of your phones were revoked because another phone was "
        "registered with your My Number Card."),
    Event.UNINSTALLED.value: N_(
        "Your JPKI smartphone certificates were ended because the app was removed from your phone, by {who}."),
    Event.STALE_CERTIFICATE.value: N_(
        "Your JPKI smartphone certificates were ended because the app was installed again on your phone and "
        "deleted the old ones, by {who}."),
    Event.CARD_REVOKED.value: N_(
        "The signature certificate on your phone was revoked because the signature certificate of your "
        "My Number Card was revoked."),
    Event.OWNER_CARD_REVOKED.value: N_(
        "The JPKI smartphone certificates on one of your phones were revoked with your My Number Card, from a "
        "phone or computer with a card reader."),
    Event.OWNER_SUSPENDED.value: N_(
        "The JPKI smartphone certificates on one of your phones were temporarily suspended with your My Number "
        "Card, from a phone or computer with a card reader. To lift the suspension, use the app on that phone "
        "with your My Number Card."),
}
# A log-in at the relying party with the phone's user-authentication certificate: not a lifecycle
# event, told only to owners who asked for it (Registration.login_notices), as Mynaportal's access notices.
LOGIN = "login"
RELYING_PARTY = "relying-party"
_WHAT[LOGIN] = N_("The user-authentication certificate on your phone was used to log in at {who} at {time}.")
_OTHER = N_("The status of your JPKI smartphone certificates was changed by {who}.")
_IF_NOT_YOU = N_("If this was not you, call the JPKI call centre.")
# The e-mail around the notice's sentence (owner_mail).
_SUBJECT = N_("Notice about your JPKI smartphone certificates")
_DEAR = N_("To {name},")
_CASE = N_("Case reference: {reference}")
_WHEN = N_("Time: {time}")
_NO_REPLY = N_("This e-mail is sent automatically by the JPKI service; replies are not read.")


def _text(event: str, role: str, language: str, at: dt.datetime | None = None) -> str:
    """The notice's sentence in one language (the catalogue's Japanese, or the English source)."""
    texts = TEXTS.for_language(language)
    who = texts.gettext(_WHO.get(role, _WHO["system"]))
    what = texts.gettext(_WHAT.get(event, _OTHER)).format(who=who, time=japan_time(at, language))
    return f"{what}{'' if language == 'ja' else ' '}{texts.gettext(_IF_NOT_YOU)}"


def actor_role(actor: str) -> str:
    """``operator:alice`` -> ``operator``: owners are told the role, never a staff user name."""
    return actor.split(":", 1)[0]


def owner_message(notification: OwnerNotification) -> dict:
    """The message for one notification: ids, event, role and a short text in English and Japanese."""
    role = actor_role(notification.actor)
    return {
        "notification_id": notification.id,
        "case_reference": notification.case_reference,
        "event": notification.event,
        "actor": role,
        "at": notification.created_at.isoformat(),
        "text_en": _text(notification.event, role, "en", notification.created_at),
        "text_ja": _text(notification.event, role, "ja", notification.created_at),
    }


def owner_mail(message: dict, to: str, masked_name: str) -> OwnerMail:
    """The e-mail of one notice: Japanese first, then English; the subject in both; the case reference and
    the time in Japan time. The masked name is the only personal item in it (and the address it goes to)."""
    at = dt.datetime.fromisoformat(message["at"])

    def part(language: str, text: str) -> str:
        texts = TEXTS.for_language(language)
        return "\n".join((
            texts.gettext(_DEAR).format(name=masked_name), "", text, "",
            texts.gettext(_CASE).format(reference=message["case_reference"]),
            texts.gettext(_WHEN).format(time=japan_time(at, language)), "", texts.gettext(_NO_REPLY)))

    subject = (f"{TEXTS.for_language('ja').gettext(_SUBJECT)} / {TEXTS.for_language('en').gettext(_SUBJECT)} "
               f"({message['case_reference']})")
    body = f"{part('ja', message['text_ja'])}\n\n{'-' * 40}\n\n{part('en', message['text_en'])}\n"
    return OwnerMail(to=to, subject=subject, body=body, notification_id=message["notification_id"], at=at)


def enqueue(session: Session, registration_id: str, case_reference: str, event: str, actor: str
            ) -> OwnerNotification:
    """Record a notification in the caller's transaction: it is sent only if the change commits."""
    now = utcnow()
    notification = OwnerNotification(registration_id=registration_id, case_reference=case_reference, event=event,
                                      actor=actor, created_at=now, state="pending", attempts=0, next_attempt_at=now)
    session.add(notification)
    session.flush()
    return notification


def enqueue_login(session: Session, authentication_serial: str) -> OwnerNotification | None:
    """A log-in at the relying party with this user-authentication certificate: a notice for its owner
    if the owner asked for log-in notices (in the caller's transaction), else nothing."""
    registration = session.scalars(
        select(Registration).join(PhoneCertificate, PhoneCertificate.registration_id == Registration.id)
        .where(PhoneCertificate.serial == authentication_serial, PhoneCertificate.kind == "authentication")
    ).first()
    if registration is None or not registration.login_notices:
        return None
    return enqueue(session, registration.id, registration.case_reference, LOGIN, RELYING_PARTY)


def _recipient(store: Store, notification: OwnerNotification, seal_key: bytes) -> tuple[str, str] | None:
    """The owner's e-mail address and masked name, when the owner gave an address (and it opens)."""
    with store.sessions() as session:
        registration = session.get(Registration, notification.registration_id)
        if registration is None:
            return None
        address = holder_data.open_email(seal_key, registration.id, registration.email_sealed)
        if address is None:
            return None
        return address, holder_data.mask_name(holder_data.open_name(seal_key, registration.holder_sealed))


def _claim(store: Store, limit: int) -> list[OwnerNotification]:
    """Due notifications, taken for ``CLAIM_SECONDS``; rows another worker holds are skipped."""
    now = utcnow()
    with store.transaction() as session:
        due = list(session.scalars(
            select(OwnerNotification)
            .where(OwnerNotification.state == "pending", OwnerNotification.next_attempt_at <= now)
            .order_by(OwnerNotification.id).limit(limit).with_for_update(skip_locked=True)
        ))
        for notification in due:
            notification.next_attempt_at = now + dt.timedelta(seconds=CLAIM_SECONDS)
    return due


def _mark_sent(store: Store, notification_id: int) -> None:
    with store.transaction() as session:
        session.execute(update(OwnerNotification)
                        .where(OwnerNotification.id == notification_id, OwnerNotification.state == "pending")
                        .values(state="sent", sent_at=utcnow(), last_error=None))


def _defer(store: Store, notification_id: int, error: str, max_backoff: dt.timedelta) -> None:
    """Count the failed attempt and wait 2, 4, ... 64 s (at most ``max_backoff``), as the CA queue does."""
    with store.transaction() as session:
        notification = session.get_one(OwnerNotification, notification_id)
        notification.attempts += 1
        notification.last_error = error
        backoff = retry_delay(notification.attempts, max_backoff)
        notification.next_attempt_at = utcnow() + backoff


def _release(store: Store, notification_ids: list[int]) -> None:
    """Give claimed but unsent notifications back at once, for the next round."""
    if not notification_ids:
        return
    with store.transaction() as session:
        session.execute(update(OwnerNotification)
                        .where(OwnerNotification.id.in_(notification_ids), OwnerNotification.state == "pending")
                        .values(next_attempt_at=utcnow()))


def send_due(store: Store, sender: Sender, limit: int = 200, *,
             max_backoff: dt.timedelta = dt.timedelta(seconds=30), mail: MailSender | None = None,
             seal_key: bytes | None = None) -> int:
    """Send due notifications in order; returns how many were sent.

    With ``mail`` (and the holder-data ``seal_key`` that opens addresses), a notice whose owner gave an
    e-mail address goes there; every other notice goes to ``sender``.

    The first failure defers that notification and stops the round (the sender is likely down;
    the rest of the batch is released for the next round, not counted as attempts).
    """
    claimed = _claim(store, limit)
    sent = 0
    for position, notification in enumerate(claimed):
        try:
            message = owner_message(notification)
            recipient = _recipient(store, notification, seal_key) if mail and seal_key else None
            if mail and recipient:
                mail.send_mail(owner_mail(message, *recipient))
            else:
                sender.send(message)
        except Exception as exc:  # any failure of any sender: keep the notification and retry it
            log.warning("owner notification %s not sent: %s: %s", notification.id, type(exc).__name__, exc)
            _defer(store, notification.id, f"{type(exc).__name__}: {exc}", max_backoff)
            _release(store, [n.id for n in claimed[position + 1:]])
            break
        _mark_sent(store, notification.id)
        sent += 1
    return sent


def pending_count(store: Store) -> int:
    """Notifications not yet delivered (due now or waiting for a retry)."""
    with store.sessions() as session:
        return session.scalar(select(func.count()).select_from(OwnerNotification)
                              .where(OwnerNotification.state == "pending")) or 0
