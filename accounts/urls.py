from django.urls import include, path

from accounts import views

urlpatterns = [
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("logout-everywhere/", views.logout_everywhere, name="logout_everywhere"),
    path("", include("django.contrib.auth.urls")),
]
