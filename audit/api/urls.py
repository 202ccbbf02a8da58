from django.urls import include, path
from rest_framework.routers import SimpleRouter

from audit.api import views

# SimpleRouter: the API root view belongs to the approvals router.
router = SimpleRouter()
router.register("audit", views.AuditEntryViewSet, basename="audit")
router.register("findings", views.FindingViewSet, basename="finding")

urlpatterns = [path("", include(router.urls))]
