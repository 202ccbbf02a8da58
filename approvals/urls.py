from django.conf import settings
from django.urls import path

from approvals import config_views, inventory_views, views

urlpatterns = [
    path("", views.dashboard, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("tickets/", views.ticket_list, name="tickets"),
    path("tickets/new/", views.ticket_new, name="ticket-new"),
    path("tickets/new/<slug:kind>/", views.ticket_new, name="ticket-new-kind"),
    path("tickets/<int:pk>/", views.ticket_detail, name="ticket"),
    path("tickets/<int:pk>/live/", views.ticket_live, name="ticket-live"),
    path("tickets/<int:pk>/approve/", views.ticket_approve, name="ticket-approve"),
    path("tickets/<int:pk>/reject/", views.ticket_reject, name="ticket-reject"),
    path("tickets/<int:pk>/review/", views.ticket_review, name="ticket-review-page"),
    path("tickets/<int:pk>/cancel/", views.ticket_cancel, name="ticket-cancel"),
    path("tickets/<int:pk>/revoke/", views.ticket_revoke, name="ticket-revoke"),
    path("tickets/<int:pk>/guest-password/", views.ticket_guest_password, name="ticket-guest-password"),
    path("inventory/<int:connector>/search/", inventory_views.inventory_search, name="inventory-search"),
    path("config/", config_views.config_overview, name="config"),
    path("config/<slug:target>/new/", config_views.config_request, name="config-new"),
    path("config/<slug:target>/<int:pk>/<slug:action>/", config_views.config_request, name="config-request"),
]

if settings.BENCH_TRIVIAL_VIEW:
    urlpatterns.append(path("bench/trivial", views.bench_trivial))
