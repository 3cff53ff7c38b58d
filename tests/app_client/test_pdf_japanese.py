"""``jpki-app sign`` and ``jpki-app verify`` in Japanese, the default (issue 14, item 1): the verdicts, the
signing levels, the refusals of a revoked certificate and of the secure element, with the words of the real
service (スマホ用署名用電子証明書, 失効, 署名タイムスタンプ...) and no English sentence left.

Against a real ``jpki-ca serve`` and its TSA, like tests/test_pdf_ltv.py, whose helpers it uses."""
from __future__ import annotations

import pytest
from cryptography import x509

from app_client import flows
from app_client.secure_element import KeySlot
from ca_mock.certificates.status_rules import StatusAction
from tests.app_client.conftest import PHONE_PASSWORD
from tests.japanese_output import untranslated
from tests.pdf_fixtures import document, phone  # noqa: F401 (fixtures)
from tests.test_pdf_ltv import _change, _cli, _wait_past

pytestmark = pytest.mark.e2e


def test_sign_and_verify_in_japanese(ca_server, phone, document, tmp_path):  # noqa: F811
    home = tmp_path / "phone"  # the phone fixture's home (tests/pdf_fixtures.py)
    serial = format(x509.load_pem_x509_certificate(phone.se.certificate_pem(KeySlot.SIGNATURE).encode())
                    .serial_number, "x")
    wrong = _cli(home, "sign", str(document), str(tmp_path / "wrong.pdf"), JPKI_LANG="ja",
                 JPKI_SIGN_PASSWORD="WRONG1234")  # the secure element's refusal, through pyHanko
    assert wrong.exit_code == 1 and wrong.stderr == "エラー: スマホ用署名用電子証明書のパスワードが違います: 残り4回\n"
    assert not (tmp_path / "wrong.pdf").exists()

    stamped = _cli(home, "sign", str(document), str(tmp_path / "stamped.pdf"), JPKI_LANG="ja",
                   JPKI_SIGN_PASSWORD=PHONE_PASSWORD)
    assert stamped.exit_code == 0, stamped.output
    assert f"スマホ用署名用電子証明書 {serial} で署名しました（PAdES B-LT）" in stamped.stdout
    bare = _cli(home, "--lang", "ja", "sign", "--no-timestamp", str(document), str(tmp_path / "bare.pdf"),
                JPKI_SIGN_PASSWORD=PHONE_PASSWORD)
    assert bare.exit_code == 0 and "（PAdES B-B、検証情報付き（署名タイムスタンプなし））" in bare.stdout, bare.output

    good = _cli(home, "verify", str(tmp_path / "stamped.pdf"), JPKI_LANG="ja")
    assert good.exit_code == 0, good.output
    assert "JPKI-Signature-1: 有効: 改ざんはなく、信頼の起点まで検証でき、証明書は現在失効していません" in good.stdout
    assert "登録時にマイナンバーカードから取り込んで固定したもの" in good.stdout

    _wait_past(flows.verify_pdf(phone, tmp_path / "stamped.pdf").signatures[0].timestamp)
    _change(ca_server, phone, StatusAction.REVOKE, "keyCompromise")
    later = _cli(home, "verify", str(tmp_path / "stamped.pdf"), JPKI_LANG="ja")
    assert later.exit_code == 0, later.output
    assert "JPKI-Signature-1: タイムスタンプの時点 " in later.stdout
    assert "証明書はその後、失効しました（" in later.stdout
    untimed = _cli(home, "verify", str(tmp_path / "bare.pdf"), JPKI_LANG="ja")
    assert untimed.exit_code == 1
    assert "無効: 署名者の証明書は " in untimed.stdout and " から失効（key_compromise）です。" in untimed.stdout
    assert "それより前に署名されたことを示す信頼できる署名タイムスタンプがありません" in untimed.stdout
    refused = _cli(home, "sign", str(document), str(tmp_path / "after.pdf"), JPKI_LANG="ja",
                   JPKI_SIGN_PASSWORD=PHONE_PASSWORD)
    assert refused.exit_code == 1
    assert refused.stderr == "エラー: 署名できません: スマホ用署名用電子証明書は失効しています（key_compromise）\n"

    for result in (wrong, stamped, bare, good, later, untimed, refused):
        assert untranslated(result.output) == [], result.output
        assert PHONE_PASSWORD not in result.output

