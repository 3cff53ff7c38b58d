"""``jpki-app`` in Japanese, its default (issue 14, item 1): what the owner reads through a whole life of a
registration, with the domain words of the real service, Japan time, and no English sentence left."""
from __future__ import annotations

import re

from tests.app_client.conftest import CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN, card_file  # noqa: F401 - fixtures
from tests.app_client.fake_service import LiftOutcome
from tests.app_client.test_lift_suspension_local import run, service  # noqa: F401 - fixtures
from tests.japanese_output import untranslated


def test_a_whole_life_in_japanese(run, service, card_file):  # noqa: F811
    registered = run("--lang", "ja", "register", "--card", str(card_file), JPKI_LANG="en")  # the option wins
    assert registered.exit_code == 0, registered.output
    assert "このスマートフォンを登録しました" in registered.stdout and "受付番号" in registered.stdout
    assert "一時利用停止コードを控えてください" in registered.stdout
    (registration_id,) = service.registrations

    status = run("status", JPKI_LANG="ja")  # the environment's choice, without the option
    assert f"登録{' ' * 12}{registration_id}" in status.stdout
    assert re.search(r"状態 +有効", status.stdout) and "署名用電子証明書" in status.stdout
    assert "利用者証明用電子証明書" in status.stdout

    service.suspend(registration_id, reason="stolen")
    suspended = run("status", JPKI_LANG="ja")
    assert re.search(r"状態 +一時利用停止中", suspended.stdout)
    assert re.search(r"コールセンターにより一時利用停止されています（理由: 盗難、\d{4}-\d\d-\d\d \d\d:\d\d 日本時間）",
                     suspended.stdout), suspended.stdout

    service.lift_outcome = LiftOutcome.REFUSED
    refused = run("lift-suspension", "--card", str(card_file), JPKI_LANG="ja")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "エラー: マイナンバーカードとスマートフォンによる本人確認をサービスが受け付けませんでした: "
        "このスマートフォンを登録したマイナンバーカードをお使いいただくか、マイナンバー総合フリーダイヤルにお電話ください"
    ), refused.stderr
    service.lift_outcome = LiftOutcome.DONE
    lifted = run("lift-suspension", "--card", str(card_file), JPKI_LANG="ja")
    assert lifted.exit_code == 0 and "一時利用停止を解除しました" in lifted.stdout

    wrong = run("revoke", JPKI_LANG="ja", JPKI_SIGN_PASSWORD="WRONG1234")
    assert wrong.stderr == "エラー: スマホ用署名用電子証明書のパスワードが違います: 残り4回\n"
    after = run("status", JPKI_LANG="ja")
    assert re.search(r"最後の変更 +本人による一時利用停止の解除（本人、\d{4}-\d\d-\d\d \d\d:\d\d 日本時間）",
                     after.stdout), after.stdout

    for result in (registered, status, suspended, refused, lifted, wrong, after):
        assert untranslated(result.output) == [], result.output
        assert CARD_PASSWORD not in result.output and PHONE_PASSWORD not in result.output


def test_english_on_request(run, service, card_file):  # noqa: F811
    registered = run("--lang", "en", "register", "--card", str(card_file), JPKI_LANG="ja")
    assert registered.exit_code == 0 and "registered this phone: registration " in registered.stdout
    (registration_id,) = service.registrations
    service.suspend(registration_id, reason="lost")
    assert re.search(r"SUSPENDED by the call centre \(reason: lost\) on \d{4}-\d\d-\d\d \d\d:\d\d JST\.",
                     run("status", JPKI_LANG="en").stdout)
