from django.urls import path

from . import views

app_name = "sessions_app"

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("sessions/new", views.new_session, name="new_session"),
]
