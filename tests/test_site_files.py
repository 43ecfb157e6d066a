"""What browsers, crawlers and load balancers ask of the site besides its pages."""

import pytest
from django.templatetags.static import static

pytestmark = pytest.mark.django_db(transaction=True)


def test_crawlers_are_told_to_stay_away(client):
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "User-agent: *\nDisallow: /" in response.content.decode()


def test_the_visitor_page_asks_not_to_be_indexed_and_names_its_icon(client):
    page = client.get("/").content.decode()
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert f'<link rel="icon" href="{static("img/favicon.svg")}" type="image/svg+xml">' in page


def test_the_icon_is_served_and_favicon_ico_leads_to_it(client):
    response = client.get("/favicon.ico")
    assert (response.status_code, response["Location"]) == (301, static("img/favicon.svg"))
    assert client.head("/favicon.ico").status_code == 301


def test_health_answers_head_as_it_answers_get(client):
    assert client.get("/healthz").status_code == 200
    head = client.head("/healthz")
    assert head.status_code == 200 and head.content == b""
    assert client.post("/healthz").status_code == 405
