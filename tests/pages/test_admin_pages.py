"""The Django admin for portal admins: every configuration page opens, and a
connector's password is never shown back."""

import pytest

pytestmark = pytest.mark.django_db

ADMIN_LISTS = [
    "/admin/connectors/connector/",
    "/admin/approvals/zone/",
    "/admin/approvals/policy/",
    "/admin/approvals/cataloguetemplate/",
    "/admin/auth/user/",
    "/admin/auth/group/",
]


def test_portal_admin_opens_the_configuration_pages(page, lab, portal_admin):
    client = page(portal_admin)
    assert 'href="/admin/"' in client.get("/").content.decode()  # the header links to the admin
    for url in ADMIN_LISTS:
        assert client.get(url).status_code == 200, url
        assert client.get(f"{url}add/").status_code == 200, url


def test_connector_password_is_write_only_in_the_admin(page, lab, portal_admin, vcsim):
    html = page(portal_admin).get(f"/admin/connectors/connector/{lab.pk}/change/").content.decode()
    assert 'type="password" name="password"' in html and 'name="password" value=' not in html
    assert vcsim.password not in html and lab.password_encrypted not in html


def test_other_roles_get_no_admin(page, lab, requester, approver, auditor):
    for user in (requester, approver, auditor):
        client = page(user)
        assert 'href="/admin/"' not in client.get("/").content.decode()
        response = client.get("/admin/connectors/connector/")
        assert response.status_code == 302 and response.url.startswith("/admin/login/")
