from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("sessions_app.api.urls")),
    path("", include("operations.urls")),
    path("", include("profiles.urls")),
    path("", include("sessions_app.urls")),
]

# The emulator stands in for LiveAvatar only when no real API key is configured.
if settings.LIVEAVATAR_EMULATOR:
    urlpatterns.insert(0, path("liveavatar-emulator/", include("sessions_app.emulator.urls")))
