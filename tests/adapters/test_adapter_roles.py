"""Adapters and roles (README, "Roles and scopes"): everyone in the account lists, reads and uploads adapters (people
and management keys); only owners and admins (or a management key one of them created) delete one; an inference key
gets nothing from the control plane."""

from __future__ import annotations

import pytest
from adapter_builders import adapter_files
from django.core.files.uploadedfile import SimpleUploadedFile

from adapters.models import Adapter
from adapters.services import adapter_validate
from tests.principals import EVERYONE, new_account, principals

pytestmark = pytest.mark.django_db

CAN_UPLOAD = {"owner", "admin", "member", "owner_management_key", "member_management_key"}
CAN_DELETE = {"owner", "admin", "owner_management_key"}


def _upload(client, name: str):
    body = {"name": name, "base_model": "smollm2-135m-instruct",
            "files": [SimpleUploadedFile(n, d) for n, d in adapter_files().items()]}
    return client.post("/api/v1/adapters", body, format="multipart")


@pytest.fixture
def ready_adapter():
    account = new_account("ada")
    who = principals(account)
    response = _upload(who["owner"].client, "shared-bot")
    assert response.status_code == 202, response.content
    adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    return who, response.json()["uid"]


@pytest.mark.parametrize("name", EVERYONE)
def test_list_read_and_upload_by_role(ready_adapter, name):
    who, uid = ready_adapter
    client = who[name].client
    listed, read, uploaded = client.get("/api/v1/adapters"), client.get(f"/api/v1/adapters/{uid}"), \
        _upload(client, f"by-{name.replace('_', '-')}")
    if name in CAN_UPLOAD:
        assert listed.status_code == 200 and [a["uid"] for a in listed.json()] == [uid]
        assert read.status_code == 200 and read.json()["status"] == "ready"
        assert uploaded.status_code == 202, uploaded.content
    else:
        assert {listed.status_code, read.status_code, uploaded.status_code} == {403}
        assert "inference scope only" in listed.json()["detail"]


@pytest.mark.parametrize("name", EVERYONE)
def test_delete_by_role(ready_adapter, name, django_capture_on_commit_callbacks):
    who, uid = ready_adapter
    with django_capture_on_commit_callbacks(execute=True):
        response = who[name].client.delete(f"/api/v1/adapters/{uid}")
    still_there = Adapter.dangerously_unscoped.filter(uid=uid).exists()
    if name in CAN_DELETE:
        assert response.status_code == 204, response.content
        assert not still_there
    else:
        assert response.status_code == 403, response.content
        assert still_there
        if name.startswith("member"):
            assert "owners and admins" in response.json()["detail"]


def test_another_account_gets_404_whatever_its_role(ready_adapter):
    _who, uid = ready_adapter
    intruders = principals(new_account("eve"))
    for name in ("owner", "owner_management_key"):
        client = intruders[name].client
        assert client.get(f"/api/v1/adapters/{uid}").status_code == 404
        assert client.delete(f"/api/v1/adapters/{uid}").status_code == 404
    assert Adapter.dangerously_unscoped.filter(uid=uid).exists()
