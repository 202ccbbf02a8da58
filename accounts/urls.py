from django.urls import include, path

from accounts import otp_views, views

urlpatterns = [
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("logout-everywhere/", views.logout_everywhere, name="logout_everywhere"),
    path("otp/enrol/", otp_views.enrol, name="otp_enrol"),
    path("otp/verify/", otp_views.verify, name="otp_verify"),
    path("", include("django.contrib.auth.urls")),
]
