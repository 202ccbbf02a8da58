import pytest
from django.test import Client


@pytest.fixture
def page():
    """A client factory: page(user) gives a browser-like client signed in as user."""

    def client_for(user=None):
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return client_for
