"""Sessions in PostgreSQL under a keyed digest of their key.

Django's database sessions keep the cookie's key in the clear: a database
administrator who reads `django_session` could take over anyone who is
signed in, an approver included, and approve in their name. Here the table
holds only an HMAC of the key under SECRET_KEY, which the cookie's key
cannot be recovered from; and the session data is signed with SECRET_KEY
(Django's own encoding), so a row copied under a key of the writer's
choosing opens nothing either. SESSION_ENGINE = "accounts.sessions"."""

from __future__ import annotations

from django.contrib.sessions.backends import db
from django.utils import timezone
from django.utils.crypto import salted_hmac

SALT = "twokey.sessions.key"


def stored_key(session_key: str) -> str:
    """What the session table holds for a cookie's `session_key`. Under
    SECRET_KEY alone: rotating it signs everybody out."""
    return salted_hmac(SALT, session_key, algorithm="sha256").hexdigest()[:40]


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        found = None
        if self.session_key:
            found = self.model.objects.filter(
                session_key=stored_key(self.session_key), expire_date__gt=timezone.now()
            ).first()
        if found is None:
            self._session_key = None
        return found

    async def _aget_session_from_db(self):
        found = None
        if self.session_key:
            found = await self.model.objects.filter(
                session_key=stored_key(self.session_key), expire_date__gt=timezone.now()
            ).afirst()
        if found is None:
            self._session_key = None
        return found

    def exists(self, session_key):
        return self.model.objects.filter(session_key=stored_key(session_key)).exists()

    async def aexists(self, session_key):
        return await self.model.objects.filter(session_key=stored_key(session_key)).aexists()

    def create_model_instance(self, data):
        instance = super().create_model_instance(data)
        instance.session_key = stored_key(instance.session_key)
        return instance

    async def acreate_model_instance(self, data):
        instance = await super().acreate_model_instance(data)
        instance.session_key = stored_key(instance.session_key)
        return instance

    def delete(self, session_key=None):
        session_key = session_key or self.session_key
        if session_key:
            self.model.objects.filter(session_key=stored_key(session_key)).delete()

    async def adelete(self, session_key=None):
        session_key = session_key or self.session_key
        if session_key:
            await self.model.objects.filter(session_key=stored_key(session_key)).adelete()
