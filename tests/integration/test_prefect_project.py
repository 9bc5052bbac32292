"""prefect_project through the ansible command, against the Prefect Server 1 GraphQL stand-in.

Prefect Server 1 needs Hasura and cannot run here (see tests/testbed/prefect1_standin.py). Follows
community.postgresql's recipe: check mode (changed) -> nothing written -> real run -> verify -> rerun (not
changed) -> change -> absent -> verify gone.
"""

import uuid

import pytest

from tests.support.ansible_cli import run_module
from tests.testbed.prefect1_standin import Prefect1StandIn

KEY = "pnu_p1-canary-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def standin():
    with Prefect1StandIn(token=KEY) as server:
        yield server


@pytest.fixture
def name():
    return "qhub-" + uuid.uuid4().hex[:8]


def args(standin, name, **extra):
    out = {"name": name, "api_url": standin.url, "api_key": KEY}
    out.update(extra)
    return out


def test_check_mode_then_create_then_rerun_then_change_then_absent(standin, name):
    writes = len(standin.mutations())

    checked = run_module("prefect_project", args(standin, name, description="QHub flows"), check=True, diff=True)
    assert checked.rc == 0, checked
    assert checked["changed"] is True
    assert checked["project"] == {"id": None, "name": name, "description": "QHub flows"}
    assert "+    \"description\": \"QHub flows\"" in checked.stdout
    assert standin.find(name) == [] and len(standin.mutations()) == writes

    created = run_module("prefect_project", args(standin, name, description="QHub flows"))
    assert created.rc == 0, created
    assert created["changed"] is True
    [stored] = standin.find(name)
    assert stored["description"] == "QHub flows"
    assert stored["tenant_id"] == standin.tenants[0]["id"]
    assert created["project"] == {"id": stored["id"], "name": name, "description": "QHub flows"}

    writes = len(standin.mutations())
    rerun = run_module("prefect_project", args(standin, name, description="QHub flows"))
    assert rerun.rc == 0, rerun
    assert rerun["changed"] is False
    assert rerun["requests"] == 1
    assert len(standin.mutations()) == writes

    changed = run_module("prefect_project", args(standin, name, description="Flows of the dev QHub"), diff=True)
    assert changed.rc == 0, changed
    assert changed["changed"] is True and changed["differences"] == ["description"]
    assert '-    "description": "QHub flows",' in changed.stdout
    assert '+    "description": "Flows of the dev QHub",' in changed.stdout
    assert standin.find(name)[0]["description"] == "Flows of the dev QHub"
    assert standin.find(name)[0]["id"] == stored["id"]
    assert [m["fields"] for m in standin.mutations()[writes:]] == [["set_project_description"]]

    no_description = run_module("prefect_project", args(standin, name))
    assert no_description["changed"] is False  # a description not given is left alone
    assert no_description["project"]["description"] == "Flows of the dev QHub"

    check_absent = run_module("prefect_project", args(standin, name, state="absent"), check=True)
    assert check_absent["changed"] is True and len(standin.find(name)) == 1

    removed = run_module("prefect_project", args(standin, name, state="absent"))
    assert removed.rc == 0, removed
    assert removed["changed"] is True and removed["project"] == {}
    assert standin.find(name) == []

    again = run_module("prefect_project", args(standin, name, state="absent"))
    assert again.rc == 0 and again["changed"] is False


def test_an_existing_project_is_adopted_not_created(standin, name):
    existing = standin.add_project(name, "made elsewhere")
    result = run_module("prefect_project", args(standin, name))
    assert result.rc == 0, result
    assert result["changed"] is False
    assert result["project"]["id"] == existing["id"]
    assert len(standin.find(name)) == 1


def test_every_value_travels_as_a_graphql_variable(standin):
    tricky = 'q"}) { id } delete_project(input: {project_id: "x"}) { success } #'
    result = run_module("prefect_project", args(standin, tricky, description='say "hi"\nand {braces}'))
    assert result.rc == 0, result
    [stored] = standin.find(tricky)
    assert stored["description"] == 'say "hi"\nand {braces}'
    run_module("prefect_project", args(standin, tricky, state="absent"))
    assert standin.find(tricky) == []


def test_a_wrong_key_is_named_and_writes_nothing(standin, name):
    wrong = "pnu_wrong-" + uuid.uuid4().hex[:12]
    writes = len(standin.mutations())
    result = run_module("prefect_project", args(standin, name, api_key=wrong), verbosity=3)
    assert result.rc != 0
    assert result["msg"] == "the Prefect API refused the API key (UNAUTHENTICATED) at %s" % standin.url
    assert wrong not in result.output and KEY not in result.output
    assert len(standin.mutations()) == writes and standin.find(name) == []


def test_the_key_comes_from_the_environment_or_a_qhub_secret_reference(standin, name):
    from_env = run_module("prefect_project", {"name": name, "api_url": standin.url},
                          env={"QHUB_SECRET_PREFECT_TOKEN": KEY})
    assert from_env.rc == 0, from_env
    assert from_env["changed"] is True

    reference = run_module("prefect_project", {"name": name, "api_url": standin.url,
                                               "api_key": "QHUB_SECRET_P1_TOKEN"}, env={"P1_TOKEN": KEY})
    assert reference.rc == 0, reference
    assert reference["changed"] is False

    unset = run_module("prefect_project", {"name": name, "api_url": standin.url, "api_key": "QHUB_SECRET_P1_TOKEN"})
    assert unset.rc != 0
    # Ansible masks the api_key value itself (no_log), the reference included.
    assert unset["msg"].startswith("api_key: refers to the environment variable P1_TOKEN")
    assert unset["msg"].endswith("which is not set")
    run_module("prefect_project", args(standin, name, state="absent"))


def test_verbose_output_never_shows_the_key(standin, name):
    result = run_module("prefect_project", args(standin, name, description="d"), verbosity=3, diff=True)
    assert result.rc == 0, result
    assert KEY not in result.output
    seen = [r["authorization"] for r in standin.requests[-3:]]
    assert "Bearer " + KEY in seen  # the key was sent, only never shown
    run_module("prefect_project", args(standin, name, state="absent"))


def test_a_server_without_tenant_says_how_to_make_one(name):
    with Prefect1StandIn(tenants=0) as empty:
        result = run_module("prefect_project", {"name": name, "api_url": empty.url})
        assert result.rc != 0
        assert "has no tenant yet: create one with 'prefect server create-tenant" in result["msg"]
        assert empty.mutations() == []


def test_cloud_style_auth_info_gives_the_tenant(name):
    with Prefect1StandIn(token=KEY, tenants=2, cloud=True) as cloud:
        result = run_module("prefect_project", {"name": name, "api_url": cloud.url, "api_key": KEY})
        assert result.rc == 0, result
        assert cloud.find(name)[0]["tenant_id"] == cloud.tenants[0]["id"]
        create = [r for r in cloud.requests if r["fields"] == ["create_project"]][0]
        assert create["tenant_header"] == cloud.tenants[0]["id"]


def test_same_name_in_two_tenants_asks_for_tenant_id(name):
    with Prefect1StandIn(tenants=2) as server:
        server.add_project(name, "one", server.tenants[0]["id"])
        server.add_project(name, "two", server.tenants[1]["id"])
        ambiguous = run_module("prefect_project", {"name": name, "api_url": server.url, "description": "x"})
        assert ambiguous.rc != 0 and "set tenant_id" in ambiguous["msg"]
        chosen = run_module("prefect_project", {"name": name, "api_url": server.url, "description": "x",
                                                "tenant_id": server.tenants[1]["id"]})
        assert chosen.rc == 0, chosen
        assert sorted(p["description"] for p in server.find(name)) == ["one", "x"]


def test_an_unreachable_server_fails_after_bounded_retries(name):
    with Prefect1StandIn() as gone:
        url = gone.url
    result = run_module("prefect_project", {"name": name, "api_url": url, "retries": 1})
    assert result.rc != 0
    assert result["msg"].startswith("the Prefect API at %s could not be reached" % url)
    assert result["msg"].endswith("gave up after 2 attempts")
    assert result["requests"] == 2
