from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from accounts.models import UserSession


@receiver(user_logged_in)
def remember_session(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        if request.session.session_key is None:
            request.session.save()
        UserSession.objects.get_or_create(session_key=request.session.session_key, defaults={"user": user})
