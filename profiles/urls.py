from django.urls import path

from sessions_app.views import index

from . import views

app_name = "profiles"

urlpatterns = [
    path("p/<slug:slug>/", index, name="page"),
    path("p/<slug:slug>/session", views.new_session, name="session"),
    path("p/<slug:slug>/embed", views.embed, name="embed"),
    path("embed.js", views.embed_js, name="embed_js"),
]
