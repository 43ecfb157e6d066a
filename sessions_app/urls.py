from django.urls import path
from django.views.generic import TemplateView

from . import views

app_name = "sessions_app"

urlpatterns = [
    path("", views.index, name="index"),
    path("robots.txt", TemplateView.as_view(template_name="robots.txt", content_type="text/plain")),
    path("favicon.ico", views.favicon),
    path("sessions/new", views.new_session, name="new_session"),
    path("sessions/<uuid:session_id>/events", views.session_events, name="session_events"),
    path("sessions/<uuid:session_id>/start", views.session_start, name="session_start"),
    path("sessions/<uuid:session_id>/keep-alive", views.session_keep_alive, name="session_keep_alive"),
    path("sessions/<uuid:session_id>/stop", views.session_stop, name="session_stop"),
    path("dashboard/", views.dashboard_page, name="dashboard"),
    path("dashboard/figures", views.dashboard_figures, name="dashboard_figures"),
]
