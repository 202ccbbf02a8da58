from tests.fixtures.slapd import ldap_directory, slapd  # noqa: F401 - fixtures for this folder
