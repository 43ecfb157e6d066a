from django.contrib import admin  # noqa: F401

from .api import admin as api_admin  # noqa: F401  (registers ApiKey)
