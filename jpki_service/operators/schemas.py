"""What the operator API takes and gives for sessions (docs/operator-api.md)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jpki_service.operators.roles import Role


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"username": "olga", "password": "correct horse battery"}]})

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"username": "olga", "role": "operator", "expires_at": "2026-04-01T11:00:00+00:00",
         "token": "c3R1ZmYtdG9rZW4tZm9yLWRvY3MtZXhhbXBsZS0wMDAx", "must_change_password": False}]})

    username: str
    role: Role
    expires_at: str
    token: str | None = Field(None, description="Only in the login answer: send it as `Authorization: Bearer`")
    must_change_password: bool = Field(
        False, description="The password was reset: this session can only change it (POST /api/v1/operator/password)")


class PasswordChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"current_password": "the one the administrator set", "new_password": "a new passphrase of my own"}]})

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024, description="At least 12 characters")


class PasswordChangedOut(BaseModel):
    username: str
    other_sessions_ended: int = Field(description="The account's other sessions, ended by the change")
