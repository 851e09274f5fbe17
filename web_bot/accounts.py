"""Routes for signing in and out, the first admin, personal API tokens and (for admins) accounts."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from core.auth import Principal
from core.auth.models import Role
from web_bot.deps import AuthDep, PrincipalDep, RowId
from web_bot.security import LOOPBACK_HOSTS, host_name

logger = logging.getLogger(__name__)

router = APIRouter()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignIn(Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)


class PasswordChange(Body):
    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096)


class NewToken(Body):
    name: str = Field(max_length=256)


class NewUser(Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=4096)
    role: Role = "user"


class UserChange(Body):
    disabled: bool | None = None
    role: Role | None = None
    password: str | None = Field(None, max_length=4096)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    settings = request.app.state.settings.auth
    secure = settings.cookie_secure == "always" or (settings.cookie_secure == "auto" and request.url.scheme == "https")
    response.set_cookie(
        settings.cookie_name, token, max_age=round(settings.session_max_h * 3600), path="/",
        httponly=True, samesite="lax", secure=secure,
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(request.app.state.settings.auth.cookie_name, path="/", httponly=True, samesite="lax")


def setup_address(request: Request, principal: Principal) -> str:
    """The address the first-admin form is judged by: none unless the page was asked for by a loopback name, so a
    site whose DNS name was rebound to 127.0.0.1 cannot reach the form from a browser on this machine."""
    return principal.address if host_name(request.headers.get("host", "")) in LOOPBACK_HOSTS else ""


@router.get("/api/auth/me")
async def me(request: Request, principal: PrincipalDep, auth: AuthDep) -> dict[str, Any]:
    return {
        "mode": auth.mode,
        "user": principal.user.public() if principal.user is not None else None,
        "via": principal.via,
        "setup_needed": await auth.setup_needed(setup_address(request, principal)),
    }


@router.post("/api/auth/login")
async def login(body: SignIn, request: Request, response: Response, principal: PrincipalDep, auth: AuthDep) -> Any:
    user, token = await auth.sign_in(body.username, body.password, principal.address)
    await auth.sign_out(principal)  # a browser signing in as someone else leaves no session of the first behind
    set_session_cookie(request, response, token)
    return {"user": user.public()}


@router.post("/api/auth/logout", status_code=204)
async def logout(request: Request, response: Response, principal: PrincipalDep, auth: AuthDep) -> None:
    await auth.sign_out(principal)
    clear_session_cookie(request, response)


@router.post("/api/auth/setup", status_code=201)
async def setup(body: SignIn, request: Request, response: Response, principal: PrincipalDep, auth: AuthDep) -> Any:
    user, token = await auth.set_up(body.username, body.password, setup_address(request, principal))
    set_session_cookie(request, response, token)
    return {"user": user.public()}


@router.post("/api/auth/password", status_code=204)
async def change_password(
    body: PasswordChange, request: Request, response: Response, principal: PrincipalDep, auth: AuthDep
) -> None:
    token = await auth.change_password(principal, body.current_password, body.new_password)
    if token is not None:
        set_session_cookie(request, response, token)


@router.get("/api/tokens")
async def list_tokens(principal: PrincipalDep, auth: AuthDep) -> dict[str, Any]:
    return {"tokens": [token.to_dict() for token in await auth.tokens(principal)]}


@router.post("/api/tokens", status_code=201)
async def create_token(body: NewToken, principal: PrincipalDep, auth: AuthDep) -> dict[str, Any]:
    info, token = await auth.create_token(principal, body.name)
    return {**info.to_dict(), "token": token}


@router.delete("/api/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: RowId, principal: PrincipalDep, auth: AuthDep) -> None:
    await auth.revoke_token(principal, token_id)


@router.get("/api/users")
async def list_users(principal: PrincipalDep, auth: AuthDep) -> dict[str, Any]:
    return {"users": [user.to_dict() for user in await auth.users(principal)]}


@router.post("/api/users", status_code=201)
async def add_user(body: NewUser, principal: PrincipalDep, auth: AuthDep) -> dict[str, Any]:
    return (await auth.admin_add_user(principal, body.username, body.password, body.role)).to_dict()


@router.patch("/api/users/{user_id}")
async def update_user(user_id: RowId, body: UserChange, principal: PrincipalDep, auth: AuthDep) -> dict[str, Any]:
    user = await auth.update_user(
        principal, user_id, disabled=body.disabled, role=body.role, password=body.password
    )
    return user.to_dict()

