"""The database away (a restart, a fail-over): a clear 503 with Retry-After, never a bare 500.
bench/postgres_restart.py shows the service recovering on its own once the database is back."""
from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from jpki_service.common.settings import ServiceSettings
from jpki_service.entrypoints.app import create_app
from tests.conftest import free_port


def test_a_database_that_does_not_answer_is_a_503(tmp_path: Path):
    settings = ServiceSettings(data_dir=tmp_path, ca_url="http://127.0.0.1:9",
                               database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    app = create_app(settings, background=False)
    with TestClient(app) as client:
        answer = client.get(f"/api/v1/registrations/{'ab' * 16}", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("storage-unavailable") and answer.headers["retry-after"] == "2"
