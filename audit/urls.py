from django.urls import path

from audit import views

urlpatterns = [
    path("audit/", views.audit_log, name="audit"),
    path("audit/chain/", views.audit_chain, name="audit-chain"),
    path("findings/", views.findings, name="findings"),
    path("findings/<int:pk>/acknowledge/", views.finding_acknowledge_view, name="finding-acknowledge"),
]
