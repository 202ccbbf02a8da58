from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts.activation_views import ActivateView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("audit.api.urls")),
    path("api/", include("approvals.api.urls")),
    path("accounts/activate/<uidb64>/<token>/", ActivateView.as_view(), name="account-activate"),
    path("accounts/", include("accounts.urls")),
    path("", include("approvals.urls")),
    path("", include("audit.urls")),
]
