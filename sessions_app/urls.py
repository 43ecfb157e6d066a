from django.urls import path

from . import views

app_name = "sessions_app"

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("sessions/new", views.new_session, name="new_session"),
    # Event beacon and staff dashboard (issue 4).
    path("sessions/<uuid:session_id>/events", views.session_events, name="session_events"),
    path("dashboard/", views.dashboard_page, name="dashboard"),
]
