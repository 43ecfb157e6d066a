"""What a newcomer meets before the site runs: the make banner, the environment settings and the system checks."""

import secrets
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from avatar_site.settings import envbool, envfloat, envint, envlist
from sessions_app.checks import check_liveavatar, check_secret_key

ROOT = Path(__file__).resolve().parents[1]


def banner(env: dict) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", "banner"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout + result.stderr


def test_the_run_banner_says_which_liveavatar_without_printing_the_key():
    key = f"sk-{secrets.token_hex(16)}"
    shown = banner({"PATH": "/usr/bin:/bin", "LIVEAVATAR_API_KEY": key})
    assert "LiveAvatar: real service" in shown
    assert key not in shown and key[3:11] not in shown
    assert "LiveAvatar: built-in emulator" in banner({"PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("yes", True), ("TRUE", True), ("off", False), ("0", False), ("", True)]
)
def test_boolean_settings_read_the_usual_words(monkeypatch, value, expected):
    monkeypatch.setenv("SOME_FLAG", value)
    assert envbool("SOME_FLAG", True) is expected


def test_settings_with_a_wrong_value_name_the_variable_and_the_value(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match=r"SOME_FLAG must be true or false, not 'maybe'"):
        envbool("SOME_FLAG", False)
    monkeypatch.setenv("SOME_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match=r"SOME_NUMBER must be a whole number, not 'ten'"):
        envint("SOME_NUMBER", 1)
    with pytest.raises(ImproperlyConfigured, match=r"SOME_NUMBER must be a number, not 'ten'"):
        envfloat("SOME_NUMBER", 1.0)


def test_number_and_list_settings_fall_back_to_their_defaults(monkeypatch):
    monkeypatch.delenv("SOME_NUMBER", raising=False)
    assert (envint("SOME_NUMBER", 7), envfloat("SOME_NUMBER", 0.5)) == (7, 0.5)
    monkeypatch.setenv("SOME_NUMBER", "12")
    assert (envint("SOME_NUMBER", 7), envfloat("SOME_NUMBER", 0.5)) == (12, 12.0)
    monkeypatch.setenv("SOME_HOSTS", " a.example , ,b.example")
    assert envlist("SOME_HOSTS", "x") == ["a.example", "b.example"]


def check_ids() -> set[str]:
    return {message.id for message in check_secret_key(None) + check_liveavatar(None)}


def test_a_development_checkout_passes_the_checks():
    assert check_ids() == set()


def test_production_with_the_development_secret_key_is_refused(settings):
    settings.PRODUCTION = True
    settings.SECRET_KEY = settings.DEV_SECRET_KEY
    assert "sessions_app.E001" in check_ids()
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    assert "sessions_app.E001" not in check_ids()


def test_unknown_liveavatar_options_are_refused(settings):
    settings.LIVEAVATAR_INTERACTIVITY = "SHOUTING"
    settings.LIVEAVATAR_VIDEO_QUALITY = "4k"
    assert {"sessions_app.E002", "sessions_app.E003"} <= check_ids()


def test_production_warns_about_the_emulator_and_the_memory_layer(settings):
    settings.PRODUCTION = True
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.LIVEAVATAR_EMULATOR = True
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert check_ids() == {"sessions_app.W001", "sessions_app.W002"}
    settings.LIVEAVATAR_EMULATOR = False
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}}
    assert check_ids() == set()
