"""Issue 12, item 6: the owner is told, through the notice channel, of the device-key events. They need
no secret, so whoever holds the phone (a thief included) can end its registration; the owner must hear
of it elsewhere than on that phone. Through the real service and CA, read from the notice file the
default sender writes."""
from __future__ import annotations

import pytest

from tests.service_helpers import PhoneForTests, make_card, proof_for, register
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique_person  # noqa: F401 (a fixture)
from tests.test_call_centre_api import _notices
from tests.test_service_flows import wait_for

pytestmark = pytest.mark.e2e
# One CA and one service per backend for the module: each test registers a card of a person of its own and
# counts only the notices about its own registration (``_notices`` by case reference, after ``before``).
ca_server, service_server = shared_servers("owner-notices")


@pytest.mark.parametrize("event", ["uninstall", "stale-certificate"])
def test_a_device_key_event_is_told_to_the_owner(ca_server, service_server, event):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    phone = PhoneForTests()
    with service_server.client() as client:
        assert register(client, card, phone).status_code == 201
        before = len(_notices(service_server, phone.case_reference))
        ended = client.post(f"/api/v1/registrations/{phone.registration_id}/{event}",
                            json=proof_for(client, event, phone, phone.device_key))
        assert ended.status_code in (200, 202), ended.text
        assert ended.json()["state"] == "expired"
    # The notices about this registration made since it was registered: exactly one.
    [notice] = wait_for(lambda: _notices(service_server, phone.case_reference)[before:])
    expected = "uninstalled" if event == "uninstall" else "stale-certificate"
    assert notice["event"] == expected and notice["actor"] == "owner"
    assert "the app was" in notice["text_en"] and "call the JPKI call centre" in notice["text_en"]
    assert "アプリ" in notice["text_ja"]
