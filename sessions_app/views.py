from django.http import HttpResponse, JsonResponse


def index(request):
    return HttpResponse("avatar_site")


def healthz(request):
    return JsonResponse({"ok": True})
