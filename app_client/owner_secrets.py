"""The owner's four secrets as the app names and asks for them: which environment variable gives
each in a script, what it is called, and its rule (the card's, jpki_common/card_rules.py, which
the secure element copies). A secret that breaks its rule is refused by name, before any try is
spent: "the card signature password must be ...", never a bare "the password must be ...".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app_client.errors import SecretBreaksRule
from app_client.messages import N_, _
from jpki_common.card_rules import SecretRuleViolation, check_pin, normalise_signature_password

PASSWORD_RULE = N_("6-16 characters, letters A-Z and digits 0-9, at least one of each; lower case counts as "
                   "upper case")
PIN_RULE = N_("exactly 4 digits")


@dataclass(frozen=True)
class OwnerSecret:
    variable: str  # the environment variable that gives it to a script
    name_message: str  # marked with N_, translated when shown
    rule_message: str
    normalise: Callable[[str], str]  # the card rule: the secret as compared, or SecretRuleViolation

    @property
    def name(self) -> str:
        return _(self.name_message)

    @property
    def rule(self) -> str:
        return _(self.rule_message)

    def check(self, value: str) -> str:
        """The secret as the card compares it (lower case folded for a password), or :class:`SecretBreaksRule`."""
        try:
            return self.normalise(value)
        except SecretRuleViolation:
            raise SecretBreaksRule(self.name, self.rule) from None


CARD_PASSWORD = OwnerSecret("JPKI_CARD_PASSWORD", N_("card signature password"), PASSWORD_RULE,
                            normalise_signature_password)
CARD_PIN = OwnerSecret("JPKI_CARD_PIN", N_("card user-authentication PIN"), PIN_RULE, check_pin)
SIGN_PASSWORD = OwnerSecret("JPKI_SIGN_PASSWORD", N_("phone signature password"), PASSWORD_RULE,
                            normalise_signature_password)
NEW_SIGN_PASSWORD = OwnerSecret("JPKI_NEW_SIGN_PASSWORD", N_("new phone signature password"), PASSWORD_RULE,
                                normalise_signature_password)
AUTH_PIN = OwnerSecret("JPKI_AUTH_PIN", N_("phone user-authentication PIN"), PIN_RULE, check_pin)
