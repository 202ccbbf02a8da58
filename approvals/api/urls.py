from django.urls import include, path
from rest_framework.routers import DefaultRouter

from approvals.api import views

router = DefaultRouter()
router.register("connectors", views.ConnectorViewSet)
router.register("zones", views.ZoneViewSet)
router.register("templates", views.CatalogueTemplateViewSet)
router.register("policies", views.PolicyViewSet)
router.register("freezes", views.FreezeWindowViewSet)
router.register("chat-hooks", views.ChatHookViewSet)
router.register("users", views.UserViewSet)
router.register("tickets", views.TicketViewSet, basename="ticket")

urlpatterns = [path("", include(router.urls))]
