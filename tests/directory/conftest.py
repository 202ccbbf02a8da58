from tests.browser.conftest import browser  # noqa: F401 - Debian's Chromium, as the browser tests drive it
from tests.fixtures.oidc_provider import oidc_directory, oidc_provider  # noqa: F401
from tests.fixtures.slapd import ldap_directory, slapd  # noqa: F401 - fixtures for this folder
