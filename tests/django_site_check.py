"""Run inside a ``django-admin startproject`` site (by tests/test_django_project.py).

Logs a real superuser in to the admin and out again with Django's test
client (CSRF checks on), and prints what it saw as JSON on the last line.
"""

from __future__ import annotations

import json
import os
import re
import sys

import django

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from wsgi_session.django import SessionStore  # noqa: E402

setup_test_environment()  # the test client's host, as Django's test runner allows it
call_command("migrate", verbosity=0, interactive=False)
get_user_model().objects.create_superuser("admin", "admin@example.com", "a-long-password-1")
NAME = settings.SESSION_COOKIE_NAME
seen: dict[str, object] = {}

client = Client(enforce_csrf_checks=True)
before = client.session  # a stored session before login, holding one key
before["cart"] = ["book"]
before.save()
seen["before"] = before.session_key

page = client.get("/admin/login/?next=/admin/")
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
assert token is not None, "no CSRF token on the admin login page"
response = client.post(
    "/admin/login/?next=/admin/",
    {
        "username": "admin",
        "password": "a-long-password-1",
        "csrfmiddlewaretoken": token.group(1),
        "next": "/admin/",
    },
)
seen["login_status"] = response.status_code
seen["after"] = client.cookies[NAME].value
seen["before_alive"] = SessionStore().exists(str(seen["before"]))
admin = client.get("/admin/")
seen["admin_status"] = admin.status_code
seen["admin_page"] = "Site administration" in admin.content.decode()
seen["cart"] = SessionStore(str(seen["after"])).get("cart")

token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', admin.content.decode())
assert token is not None, "no CSRF token on the admin index"
response = client.post("/admin/logout/", {"csrfmiddlewaretoken": token.group(1)})
seen["logout_status"] = response.status_code
seen["after_alive"] = SessionStore().exists(str(seen["after"]))
replay = Client()
replay.cookies[NAME] = str(seen["after"])
seen["replay_status"] = replay.get("/admin/").status_code  # the old id is no login
print(json.dumps(seen))
