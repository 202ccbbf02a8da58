from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import otp_views, passkey_views, views
from accounts.directory import oidc

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # OpenID Connect sign-in (404 unless OIDC_ISSUER is set).
    path("oidc/start/", oidc.OIDCStartView.as_view(), name="oidc_start"),
    path("oidc/callback/", oidc.OIDCCallbackView.as_view(), name="oidc_callback"),
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("logout-everywhere/", views.logout_everywhere, name="logout_everywhere"),
    path("otp/enrol/", otp_views.enrol, name="otp_enrol"),
    path("otp/verify/", otp_views.verify, name="otp_verify"),
    path("passkeys/", passkey_views.passkey_list, name="passkeys"),
    path("passkeys/options/", passkey_views.passkey_register_options, name="passkey_register_options"),
    path("passkeys/register/", passkey_views.passkey_register, name="passkey_register"),
    # Answer 404 unless a mail backend that delivers is configured.
    path("password_reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password_reset/done/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
