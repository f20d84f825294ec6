"""Groups API (groups, members, group rules, apps assigned to groups), driven through Okta's own
Python SDK (PyPI `okta` 3.4.6) over a real socket.

okta 3.x calls return (data, response, error) tuples (calls without a body: (response, error) or
(data, response, error) with data None); models are strict pydantic, so every Group, GroupRule,
ApplicationGroupAssignment and User Latchkey answers must deserialize into the SDK's own models.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from okta.models import (
    AddGroupRequest,
    Application,
    ApplicationGroupAssignment,
    CreateGroupRuleRequest,
    CreateUserRequest,
    Group,
    GroupRule,
    SamlApplication,
    SamlApplicationSettingsSignOn,
    SamlAttributeStatementGroup,
    User,
)
from okta.pagination import PaginationHelper, paginate_pages

from test_apps import saml_app

PASSWORD = "Xk9#mQv2!Lp7wZ"
RUN = secrets.token_hex(3)
RULE_EXPR = "urn:okta:expression:1.0"
_seq = 0


def unique_login(tag: str) -> str:
    global _seq
    _seq += 1
    return f"{tag}.{RUN}.{_seq}@example.com"


def ok(result: tuple):
    """The data of an SDK call that must succeed (asserts its error is None)."""
    err = result[-1]
    assert err is None, f"SDK call failed: {err}"
    return result[0]


async def create_user(client, tag: str, **profile) -> User:
    login = unique_login(tag)
    body = CreateUserRequest.from_dict(
        {
            "profile": {"firstName": "Ada", "lastName": "Lovelace", "email": login, "login": login, **profile},
            "credentials": {"password": {"value": PASSWORD}},
        }
    )
    user = ok(await client.create_user(body, activate=True))
    assert isinstance(user, User)
    return user


async def add_group(client, name: str, description: str | None = None) -> Group:
    profile = {"name": name} if description is None else {"name": name, "description": description}
    group = ok(await client.add_group(AddGroupRequest.from_dict({"profile": profile})))
    assert isinstance(group, Group), type(group)
    return group


def group_name(group: Group) -> str:
    # GroupProfile is an anyOf (OktaUserGroupProfile | OktaActiveDirectoryGroupProfile).
    profile = group.profile
    return getattr(profile, "actual_instance", profile).name


def assert_group(group: Group, server, name: str | None = None, kind: str = "OKTA_GROUP") -> None:
    assert isinstance(group, Group), type(group)
    assert group.id.startswith("00g"), group.id
    assert isinstance(group.created, datetime)
    assert isinstance(group.last_updated, datetime)
    assert isinstance(group.last_membership_updated, datetime)
    assert group.object_class == ["okta:user_group"]
    assert group.type.value == kind
    if name is not None:
        assert group_name(group) == name
    assert group.links.users.href == f"{server.org_url}/api/v1/groups/{group.id}/users"
    assert group.links.apps.href == f"{server.org_url}/api/v1/groups/{group.id}/apps"
    assert group.links.logo and all(link.href for link in group.links.logo)


async def user_group_ids(client, user_id: str) -> list[str]:
    groups = ok(await client.list_user_groups(user_id))
    for g in groups:
        assert isinstance(g, Group), type(g)
    return sorted(g.id for g in groups)


async def group_user_ids(client, group_id: str) -> list[str]:
    users = ok(await client.list_group_users(group_id))
    for u in users:
        assert isinstance(u, User), type(u)
    return sorted(u.id for u in users)


def rule_body(name: str, expression: str, group_ids: list[str]) -> CreateGroupRuleRequest:
    return CreateGroupRuleRequest.from_dict(
        {
            "type": "group_rule",
            "name": name,
            "conditions": {
                "expression": {"value": expression, "type": RULE_EXPR},
                "people": {"users": {"exclude": []}},
            },
            "actions": {"assignUserToGroups": {"groupIds": group_ids}},
        }
    )


async def test_add_group_get_list_and_everyone(client, server):
    name = f"Py Engineering {RUN}"
    group, resp, err = await client.add_group(AddGroupRequest.from_dict({"profile": {"name": name, "description": "py"}}))
    assert err is None, err
    assert resp.status_code == 200
    assert_group(group, server, name)
    assert json.loads(resp.raw_data)["profile"] == {"name": name, "description": "py"}

    got = ok(await client.get_group(group.id))
    assert_group(got, server, name)

    groups = ok(await client.list_groups(q=f"Py Engineering {RUN}"))
    assert [g.id for g in groups] == [group.id]

    everyone = ok(await client.list_groups(filter='type eq "BUILT_IN"'))
    assert len(everyone) == 1
    assert_group(everyone[0], server, "Everyone", kind="BUILT_IN")

    stats = ok(await client.list_groups(q=name, expand="stats"))
    assert stats[0].embedded.stats.users_count == 0
    assert stats[0].embedded.stats.apps_count == 0

    # Every group, two per page, through the SDK's paginator.
    for i in range(3):
        await add_group(client, f"Py page {RUN} {i}")
    pages = [page async for page, _, _ in paginate_pages(client.list_groups, limit=2)]
    assert len(pages) >= 3, f"5+ groups at limit=2 need at least 3 pages, got {len(pages)}"
    seen = [g.id for page in pages for g in page]
    assert len(seen) == len(set(seen)), seen
    assert group.id in seen and everyone[0].id in seen

    # Names are unique case-insensitively.
    _, _, err = await client.add_group(AddGroupRequest.from_dict({"profile": {"name": name.upper()}}))
    assert err is not None and err.status == 400 and err.error_code == "E0000001", err

    result = await client.delete_group(group.id)
    assert result[-1] is None, f"delete_group failed: {result[-1]}"
    _, _, err = await client.get_group(group.id)
    assert err is not None and err.status == 404, err


async def test_assign_user_to_group_list_group_users_list_user_groups(client, server):
    group = await add_group(client, f"Py Members {RUN}")
    everyone = ok(await client.list_groups(filter='type eq "BUILT_IN"'))[0]
    users = [await create_user(client, "pymember") for _ in range(3)]
    for u in users:
        result = await client.assign_user_to_group(group.id, u.id)
        assert result[-1] is None, f"assign_user_to_group failed: {result[-1]}"
    # Idempotent.
    assert (await client.assign_user_to_group(group.id, users[0].id))[-1] is None

    assert await group_user_ids(client, group.id) == sorted(u.id for u in users)
    listed = ok(await client.list_group_users(group.id))
    assert all(u.status.value == "ACTIVE" for u in listed)

    # Paged by hand with limit=2.
    first, resp, err = await client.list_group_users(group.id, limit=2)
    assert err is None, err
    assert len(first) == 2
    after = PaginationHelper.extract_next_cursor(resp.headers)
    assert after, f"a next page for 3 members at limit=2: {resp.headers.get('Link')}"
    rest = ok(await client.list_group_users(group.id, limit=2, after=after))
    assert sorted(u.id for u in first + rest) == sorted(u.id for u in users)

    assert await user_group_ids(client, users[0].id) == sorted([everyone.id, group.id])
    groups = ok(await client.list_user_groups(users[0].id))
    for g in groups:
        assert_group(g, server, kind="BUILT_IN" if g.id == everyone.id else "OKTA_GROUP")

    result = await client.unassign_user_from_group(group.id, users[0].id)
    assert result[-1] is None, f"unassign_user_from_group failed: {result[-1]}"
    assert await group_user_ids(client, group.id) == sorted(u.id for u in users[1:])
    assert await user_group_ids(client, users[0].id) == [everyone.id]

    # Everyone: members cannot be added (E0000060) or removed (403 E0000006).
    result = await client.assign_user_to_group(everyone.id, users[0].id)
    assert result[-1] is not None and result[-1].error_code == "E0000060", result[-1]
    result = await client.unassign_user_from_group(everyone.id, users[0].id)
    assert result[-1] is not None and result[-1].status == 403 and result[-1].error_code == "E0000006", result[-1]

    # createUser with groupIds.
    login = unique_login("pygroupids")
    body = CreateUserRequest.from_dict(
        {
            "profile": {"firstName": "Ada", "lastName": "Lovelace", "email": login, "login": login},
            "credentials": {"password": {"value": PASSWORD}},
            "groupIds": [group.id],
        }
    )
    made = ok(await client.create_user(body, activate=True))
    assert await user_group_ids(client, made.id) == sorted([everyone.id, group.id])


async def test_group_rule_create_activate_fills_group(client, server):
    dept = f"PyEng-{RUN}"
    target = await add_group(client, f"Py Rule Target {RUN}")
    everyone = ok(await client.list_groups(filter='type eq "BUILT_IN"'))[0]
    match = await create_user(client, "pyrule", department=dept)
    other = await create_user(client, "pyrule-other", department=f"PySales-{RUN}")

    rule, resp, err = await client.create_group_rule(rule_body(f"py rule {RUN}", f'user.department == "{dept}"', [target.id]))
    assert err is None, err
    assert isinstance(rule, GroupRule), type(rule)
    assert rule.id
    assert rule.type == "group_rule"
    assert rule.status.value == "INACTIVE"
    assert rule.name == f"py rule {RUN}"
    assert isinstance(rule.created, datetime)
    assert isinstance(rule.last_updated, datetime)
    assert rule.conditions.expression.value == f'user.department == "{dept}"'
    assert rule.conditions.expression.type == RULE_EXPR
    assert rule.actions.assign_user_to_groups.group_ids == [target.id]
    assert await group_user_ids(client, target.id) == []

    result = await client.activate_group_rule(rule.id)
    assert result[-1] is None, f"activate_group_rule failed: {result[-1]}"
    got = ok(await client.get_group_rule(rule.id))
    assert isinstance(got, GroupRule)
    assert got.status.value == "ACTIVE"
    rules = ok(await client.list_group_rules())
    assert all(isinstance(r, GroupRule) for r in rules)
    assert any(r.id == rule.id for r in rules)

    assert await group_user_ids(client, target.id) == [match.id], "activation adds the matching user only"
    assert await user_group_ids(client, other.id) == [everyone.id]
    # A new matching user lands in the group at once.
    newcomer = await create_user(client, "pyrule-new", department=dept)
    assert await user_group_ids(client, newcomer.id) == sorted([everyone.id, target.id])

    result = await client.deactivate_group_rule(rule.id)
    assert result[-1] is None, f"deactivate_group_rule failed: {result[-1]}"
    assert ok(await client.get_group_rule(rule.id)).status.value == "INACTIVE"
    assert await group_user_ids(client, target.id) == []

    # An invalid expression is refused.
    _, _, err = await client.create_group_rule(rule_body(f"py bad {RUN}", "user.department ==", [target.id]))
    assert err is not None and err.status == 400 and err.error_code == "E0000001", err
    assert err.error_summary == "Api validation failed: validateRule", err.error_summary

    result = await client.delete_group_rule(rule.id)
    assert result[-1] is None, f"delete_group_rule failed: {result[-1]}"
    _, _, err = await client.get_group_rule(rule.id)
    assert err is not None and err.status == 404, err


async def test_assign_group_to_application_and_list(client, server):
    body = saml_app(f"Py group app {RUN}", "http://127.0.0.1:9/pyg/acs", f"https://pyg.example.test/{RUN}").to_dict()
    group_statement = {
        "type": "GROUP",
        "name": "groups",
        "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified",
        "filterType": "REGEX",
        "filterValue": f"Py App .*{RUN}",
    }
    body["settings"]["signOn"]["attributeStatements"].append(group_statement)
    app, resp, err = await client.create_application(SamlApplication.from_dict(body))
    assert err is None, err
    assert isinstance(app, SamlApplication)
    # The GROUP statement, parsed by the SDK's own model (see test_apps.py for why from the raw body).
    raw_so = SamlApplicationSettingsSignOn.from_dict(json.loads(resp.raw_data)["settings"]["signOn"])
    stmts = [a.actual_instance for a in raw_so.attribute_statements]
    assert isinstance(stmts[1], SamlAttributeStatementGroup), [type(x).__name__ for x in stmts]
    assert (stmts[1].name, stmts[1].filter_type, stmts[1].filter_value) == ("groups", "REGEX", f"Py App .*{RUN}")
    group = await add_group(client, f"Py App Group {RUN}")
    member = await create_user(client, "pyappmember")
    assert (await client.assign_user_to_group(group.id, member.id))[-1] is None

    assignment, resp, err = await client.assign_group_to_application(
        app.id, group.id, ApplicationGroupAssignment.from_dict({"priority": 0, "profile": {}})
    )
    assert err is None, err
    assert isinstance(assignment, ApplicationGroupAssignment), type(assignment)
    assert assignment.id == group.id
    assert assignment.priority == 0
    assert assignment.profile == {}
    assert assignment.last_updated
    assert assignment.links.app.href == f"{server.org_url}/api/v1/apps/{app.id}"
    assert assignment.links.group.href == f"{server.org_url}/api/v1/groups/{group.id}"

    assignments = ok(await client.list_application_group_assignments(app.id))
    assert all(isinstance(a, ApplicationGroupAssignment) for a in assignments)
    assert [a.id for a in assignments] == [group.id]
    expanded = ok(await client.list_application_group_assignments(app.id, expand="group"))
    assert expanded[0].embedded["group"]["id"] == group.id

    got = ok(await client.get_application_group_assignment(app.id, group.id))
    assert isinstance(got, ApplicationGroupAssignment)
    assert got.id == group.id

    apps = ok(await client.list_assigned_applications_for_group(group.id))
    assert [a.id for a in apps] == [app.id]
    assert isinstance(apps[0], Application)

    app_users = ok(await client.list_application_users(app.id))
    by_id = {u.id: u for u in app_users}
    assert member.id in by_id, list(by_id)
    assert by_id[member.id].scope == "GROUP"

    links = ok(await client.list_app_links(member.id))
    assert any(link.app_instance_id == app.id for link in links)

    result = await client.unassign_application_from_group(app.id, group.id)
    assert result[-1] is None, f"unassign_application_from_group failed: {result[-1]}"
    assert ok(await client.list_application_group_assignments(app.id)) == []
    assert ok(await client.list_assigned_applications_for_group(group.id)) == []
