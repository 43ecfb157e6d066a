from django.urls import path

from . import views

# Paths exactly as on api.liveavatar.com, under /liveavatar-emulator/.
urlpatterns = [
    path("v1/sessions/token", views.create_token),
    path("v1/sessions/start", views.start),
    path("v1/sessions/keep-alive", views.keep_alive),
    path("v1/sessions/stop", views.stop),
    path("v1/sessions", views.list_sessions),
    path("v1/sessions/<str:session_id>", views.session_detail),
    path("v1/sessions/<str:session_id>/transcript", views.transcript),
    path("v1/sessions/<str:session_id>/events", views.delete_events),
    path("v1/avatars", views.avatars),
    path("v1/avatars/public", views.public_avatars),
    path("v1/voices", views.voices),
    path("v1/contexts", views.contexts),
    path("v1/contexts/<str:context_id>", views.context_detail),
    path("v1/voice_agents", views.voice_agents),
    path("v1/voice_agents/<str:agent_id>", views.voice_agent_detail),
    path("v1/languages", views.languages),
    path("v1/users/credits", views.credits),
    # The emulated LiveKit server's HTTP side: livekit-client asks here why a join was refused.
    path("rtc/v1/validate", views.rtc_validate),
    path("rtc/validate", views.rtc_validate),
]
