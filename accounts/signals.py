from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import UserSession
from accounts.services import password_bind
from accounts.sessions import stored_key


@receiver(user_logged_in)
def remember_session(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        if request.session.session_key is None:
            request.session.save()
        UserSession.objects.get_or_create(session_key=stored_key(request.session.session_key), defaults={"user": user})


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def bind_password(sender, instance, created, **kwargs):
    """Bind a password the portal set: on an account it creates
    (create_user hashes without set_password), or through set_password,
    which Django marks (`_password`) until the save after it. A hash
    written into the table by other means is never bound here, whatever
    saves the row later."""
    if (created and instance.has_usable_password()) or getattr(instance, "_password", None) is not None:
        password_bind(instance)
