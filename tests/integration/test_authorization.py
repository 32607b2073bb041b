"""Every route, as someone with no relation to a wearer: nothing of that wearer is seen or
changed. The routes are walked from the OpenAPI description, with valid request bodies drawn
from it, so a route added tomorrow without its check fails here."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from schemathesis import GenerationMode

from services.api.app import create_app
from services.commands.queue import ENQUEUE
from services.settings import Settings
from services.storage.provisioning import seed_demo
from tests.support.alerting import press_sos
from tests.support.people import AUTH_SECRET, grant_care, make_org, make_user, relate, token_for

PUBLIC = {("/healthz", "GET"), ("/v1/auth/register", "POST"), ("/v1/auth/login", "POST"),
          ("/v1/auth/refresh", "POST")}  # fmt: skip
THEIRS = "wearer-w00001"
FENCE = "9b2f8c1e-0000-4000-8000-000000000001"


@pytest.fixture
def world(db_url: str) -> Iterator[dict[str, Any]]:
    """Family A (guardian of wearer-w00001, with an alert, a fence, a channel and a command),
    a stranger B (guardian of wearer-w00002 only), a caregiver C whose centre was granted A's
    wearer, and a family member D of A's wearer."""
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    a = make_user(db_url, "Alice", phone="+8613800000001")
    b = make_user(db_url, "Bob")
    org = make_org(db_url, "Sunshine care centre")
    c = make_user(db_url, "Carol", role="caregiver", org_id=org)
    d = make_user(db_url, "Dan")
    relate(db_url, THEIRS, a, "guardian")
    relate(db_url, "wearer-w00002", b, "guardian")
    relate(db_url, THEIRS, d, "family")
    grant_care(db_url, THEIRS, org)
    press_sos(db_url, "w00001", 1)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO fences (fence_id, wearer_id, name, kind, feature) VALUES"
            " (%s, %s, 'home', 'safe', '{}')",
            (FENCE, THEIRS),
        )
        contact = conn.execute("SELECT contact_id FROM contacts WHERE user_id = %s",
                               (a,)).fetchone()[0]  # type: ignore[index]  # fmt: skip
        channel = conn.execute(
            "INSERT INTO contact_channels (contact_id, kind, address) VALUES"
            " (%s, 'email', 'alice@example.org') RETURNING channel_id",
            (contact,),
        ).fetchone()[0]  # type: ignore[index]
        alert = conn.execute("SELECT alert_id FROM alerts").fetchone()[0]  # type: ignore[index]
        conn.execute(ENQUEUE, {"command_id": "c0ffee0000000001", "device_id": "w00001",
                               "wearer_id": THEIRS, "kind": "locate", "payload": Jsonb({}),
                               "requested_by": a, "ttl_s": 600})  # fmt: skip
    settings = Settings(database_url=db_url, auth_secret=AUTH_SECRET)
    with TestClient(create_app(settings)) as client:
        yield {
            "client": client,
            "db_url": db_url,
            "tokens": {
                n: token_for(db_url, u) for n, u in {"A": a, "B": b, "C": c, "D": d}.items()
            },
            "params": {
                "wearer_id": THEIRS,
                "alert_id": alert,
                "fence_id": FENCE,
                "contact_id": contact,
                "channel_id": channel,
                "org_id": org,
                "command_id": "c0ffee0000000001",
            },
        }


# Bodies the description's generator rarely gets past a pattern (an e-mail address): a route
# answering 422 to every drawn body is walked with this one instead.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/organisations/{org_id}/caregivers", "POST"): {
        "email": "eve@example.org", "name": "Eve", "password": "a long enough password 1"},
    ("/v1/wearers/{wearer_id}/invitations", "POST"): {"email": "eve@example.org"},
    ("/v1/contacts/{contact_id}/channels", "POST"): {"kind": "email", "address": "e@x.org"},
    ("/v1/organisations", "POST"): {
        "name": "Evil care", "admin_email": "eve@example.org", "admin_name": "Eve",
        "admin_password": "a long enough password 1"},
}  # fmt: skip
LOGOUT = ("/v1/auth/logout", "POST")  # walked last: it ends the walker's session


def _operations(client: TestClient, logout: bool = False) -> list[tuple[str, str, Any]]:
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    ops = [
        (op.path, op.method.upper(), op)
        for result in schema.get_all_operations()
        for op in [result.ok()]
        if (op.path, op.method.upper()) not in PUBLIC
    ]
    return [o for o in ops if logout or (o[0], o[1]) != LOGOUT]


def _call(w: dict[str, Any], who: str | None, path: str, method: str, op: Any):
    """Call ``path`` with the world's ids filled in and a body valid by the description
    (several are drawn until one passes the route's own validation)."""
    url = re.sub(r"\{(\w+)\}", lambda m: str(w["params"][m.group(1)]), path)
    headers = {"Authorization": f"Bearer {w['tokens'][who]}"} if who else {}
    response = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = op.as_strategy(generation_mode=GenerationMode.POSITIVE)
        for _ in range(5):
            case = strategy.example()
            query = case.query if isinstance(case.query, dict) else {}
            kwargs: dict[str, Any] = {"headers": headers, "params": query}
            if type(case.body).__name__ != "NotSet":
                kwargs["json"] = case.body
            if path.endswith("/feed"):
                kwargs["params"] = {}
            response = w["client"].request(method, url, **kwargs)
            if response.status_code != 422:
                return response
    if (path, method) in BODIES:
        return w["client"].request(method, url, headers=headers, json=BODIES[path, method])
    assert response is not None
    return response


def test_a_stranger_gets_404_or_403_from_every_route_that_names_another_familys_wearer(
    world: dict[str, Any],
) -> None:
    checked = []
    for path, method, op in _operations(world["client"]):
        response = _call(world, "B", path, method, op)
        if "{" in path:
            assert response.status_code in (403, 404), (method, path, response.text)
            checked.append((method, path))
        else:
            # Routes about the caller themself (me, invitations, lists, a new wearer of their
            # own): whatever they answer, nothing of the other family is in it.
            assert THEIRS not in response.text, (method, path, response.text)
    assert len(checked) >= 30  # the walk really walked
    # … and after all those POSTs, PUTs and DELETEs nothing of the other family changed.
    with psycopg.connect(world["db_url"]) as conn:
        assert conn.execute("SELECT count(*) FROM wearers WHERE wearer_id = %s",
                            (THEIRS,)).fetchone()[0] == 1  # type: ignore[index]  # fmt: skip
        status = conn.execute("SELECT status FROM alerts").fetchone()[0]  # type: ignore[index]
        assert status == "open"
        assert conn.execute("SELECT count(*) FROM fences WHERE deleted_at IS NULL"
                            ).fetchone()[0] == 1  # type: ignore[index]  # fmt: skip


def test_every_route_but_login_needs_a_token(world: dict[str, Any]) -> None:
    for path, method, op in _operations(world["client"], logout=True):
        response = _call(world, None, path, method, op)
        assert response.status_code == 401, (method, path, response.status_code)


RELATIONS = [
    ("C", "/v1/wearers/{wearer_id}/location", "GET", 200),  # caregiver: sees (coarsely)
    ("C", "/v1/wearers/{wearer_id}/fences", "POST", 403),  # … but edits no fences
    ("C", "/v1/wearers/{wearer_id}/escalation", "PUT", 403),
    ("C", "/v1/wearers/{wearer_id}/audit", "GET", 403),
    ("D", "/v1/wearers/{wearer_id}/audit", "GET", 403),  # family, not the guardian
    ("D", "/v1/wearers/{wearer_id}/export", "GET", 403),
    ("D", "/v1/wearers/{wearer_id}", "DELETE", 403),
    ("D", "/v1/wearers/{wearer_id}/location", "GET", 200),
    ("A", "/v1/wearers/{wearer_id}/audit", "GET", 200),
]


def test_each_relation_gets_what_the_permissions_table_says(world: dict[str, Any]) -> None:
    ops = {(p, m): op for p, m, op in _operations(world["client"])}
    got = [
        (who, path, method, _call(world, who, path, method, ops[path, method]).status_code)
        for who, path, method, _ in RELATIONS
    ]
    assert got == RELATIONS
