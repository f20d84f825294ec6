"""Apps API (SAML 2.0 apps), driven through Okta's own Python SDK (PyPI `okta` 3.4.6).

The SDK's models are strict pydantic: Latchkey's JSON for a SAML app (SamlApplication, with
settings.signOn), an AppUser and AssignedAppLinks must deserialize into them.
okta 3.x calls return (data, response, error) tuples.
"""

from __future__ import annotations

import json
import secrets

from okta.models import (
    AppUser,
    AppUserAssignRequest,
    AssignedAppLink,
    CreateUserRequest,
    SamlApplication,
    SamlApplicationSettingsSignOn,
)

PASSWORD = "Xk9#mQv2!Lp7wZ"
RUN = secrets.token_hex(3)
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def saml_app(label: str, acs: str, audience: str) -> SamlApplication:
    return SamlApplication.from_dict(
        {
            "label": label,
            "signOnMode": "SAML_2_0",
            "settings": {
                "signOn": {
                    "ssoAcsUrl": acs,
                    "recipient": acs,
                    "destination": acs,
                    "audience": audience,
                    "subjectNameIdTemplate": "${user.userName}",
                    "subjectNameIdFormat": EMAIL,
                    "responseSigned": True,
                    "assertionSigned": True,
                    "signatureAlgorithm": "RSA_SHA256",
                    "digestAlgorithm": "SHA256",
                    "honorForceAuthn": True,
                    "authnContextClassRef": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
                    "attributeStatements": [
                        {
                            "type": "EXPRESSION",
                            "name": "email",
                            "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified",
                            "values": ["user.email"],
                        }
                    ],
                }
            },
        }
    )


async def create_user(client, tag: str):
    login = f"{tag}.{RUN}@example.com"
    body = CreateUserRequest.from_dict(
        {
            "profile": {"firstName": "Ada", "lastName": "Lovelace", "email": login, "login": login},
            "credentials": {"password": {"value": PASSWORD}},
        }
    )
    user, _, err = await client.create_user(body, activate=True)
    assert err is None, f"create_user failed: {err}"
    return user


async def test_saml_app_create_list_assign_app_links_delete(client, server):
    acs = "http://127.0.0.1:9/py/acs"
    audience = f"https://sp-py.example.test/{RUN}"
    app, resp, err = await client.create_application(saml_app("Python SP", acs, audience))
    assert err is None, f"create_application failed: {err}"
    assert isinstance(app, SamlApplication), type(app)
    assert app.sign_on_mode.value == "SAML_2_0"
    assert app.status.value == "ACTIVE"
    assert app.name.startswith("latchkey_python_sp")
    so = app.settings.sign_on
    assert so.sso_acs_url == acs
    assert so.audience == audience
    assert so.subject_name_id_template == "${user.userName}"
    assert so.subject_name_id_format == EMAIL
    # okta 3.4.6 quirk, independent of the JSON: through Application.from_dict (the signOnMode
    # discriminator) SamlAttributeStatement (anyOf EXPRESSION | GROUP) loses its actual_instance,
    # even for locally built data. So the statements are checked on the raw body, parsed by the
    # SDK's own SamlApplicationSettingsSignOn model.
    assert len(so.attribute_statements) == 1
    raw_so = SamlApplicationSettingsSignOn.from_dict(json.loads(resp.raw_data)["settings"]["signOn"])
    stmts = [a.actual_instance for a in raw_so.attribute_statements]
    assert [(type(s).__name__, s.name, s.values) for s in stmts] == [("SamlAttributeStatementExpression", "email", ["user.email"])]
    embed = app.links.app_links[0].href
    assert embed.startswith(f"{server.org_url}/home/{app.name}/{app.id}/"), embed
    assert app.links.metadata.href == f"{server.org_url}/api/v1/apps/{app.id}/sso/saml/metadata"

    got, _, err = await client.get_application(app.id)
    assert err is None, f"get_application failed: {err}"
    assert isinstance(got, SamlApplication)
    assert got.settings.sign_on.audience == audience

    apps, _, err = await client.list_applications()
    assert err is None, f"list_applications failed: {err}"
    mine = [a for a in apps if a.id == app.id]
    assert len(mine) == 1, [a.id for a in apps]
    assert isinstance(mine[0], SamlApplication)

    user = await create_user(client, "pyapps")
    assigned, _, err = await client.assign_user_to_application(app.id, AppUserAssignRequest.from_dict({"id": user.id}))
    assert err is None, f"assign_user_to_application failed: {err}"
    assert isinstance(assigned, AppUser)
    assert assigned.id == user.id

    links, _, err = await client.list_app_links(user.id)
    assert err is None, f"list_app_links failed: {err}"
    assert all(isinstance(link, AssignedAppLink) for link in links)
    link = next((link for link in links if link.app_instance_id == app.id), None)
    assert link is not None, links
    assert link.link_url == embed
    assert link.app_name == app.name
    assert link.label == "Python SP"

    result = await client.deactivate_application(app.id)
    assert result[-1] is None, f"deactivate_application failed: {result[-1]}"
    result = await client.delete_application(app.id)
    assert result[-1] is None, f"delete_application failed: {result[-1]}"
    _, _, err = await client.get_application(app.id)
    assert err is not None and err.status == 404, err
