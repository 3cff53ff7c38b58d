"""Hostile input generated from the OpenAPI documents (schemathesis) against the real service and
CA processes: every operation, well over a thousand cases per run, no 5xx, and every answer
inside the documented schema and media types (refusals are documented problem documents)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service_helpers import OPERATOR_PASSWORD, add_operator

pytestmark = pytest.mark.e2e

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def _run(url: str, token: str, workdir: Path, *extra: str, examples: int = 40) -> tuple[int, str]:
    # One worker: schemathesis' coverage phase is not thread-safe on Python 3.11's ast module.
    result = subprocess.run(
        [SCHEMATHESIS, "run", f"{url}/openapi.json", "--checks", CHECKS, "--max-examples", str(examples),
         "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color", "--seed", "20261123",
         "-H", f"Authorization: Bearer {token}", *extra],
        capture_output=True, text=True, timeout=600, cwd=workdir)  # its cache folder goes there
    output = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", output)
    return result.returncode, output if generated is None else output + f"\n[generated {generated.group(1)}]"


def _generated(output: str) -> int:
    return int(re.search(r"\[generated (\d+)\]", output).group(1))


def test_the_service_api(service_server, tmp_path):
    add_operator(service_server, "fuzz.supervisor", "supervisor")
    with service_server.client() as client:
        token = client.post("/api/v1/operator/session",
                            json={"username": "fuzz.supervisor", "password": OPERATOR_PASSWORD}).json()["token"]
    # Signing out would end the run's own session half-way.
    code, output = _run(service_server.url, token, tmp_path, "--exclude-method", "DELETE")
    assert code == 0, output[-6000:]
    assert _generated(output) >= 1000, output[-2000:]
    print(f"service: {_generated(output)} generated cases, no failure")


def test_the_ca_api(ca_server, tmp_path):
    # OCSP and TSA take DER bodies schemathesis cannot generate; they have their own tests
    # (test_openssl_judge, test_api_bad_input) with openssl as the client.
    code, output = _run(ca_server.url, ca_server.token, tmp_path, "--exclude-path", "/ocsp", "--exclude-path", "/tsa",
                        examples=60)
    assert code == 0, output[-6000:]
    assert _generated(output) >= 500, output[-2000:]
    print(f"CA: {_generated(output)} generated cases, no failure")
