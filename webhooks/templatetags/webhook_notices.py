from django import template

from ..models import Endpoint

register = template.Library()


@register.inclusion_tag("webhooks/disabled_notice.html")
def disabled_webhooks_notice():
    """Staff pages say when repeated failures have disabled a webhook endpoint."""
    return {"endpoints": Endpoint.objects.filter(active=False, disabled_at__isnull=False)}
