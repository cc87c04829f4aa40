"""Flask with wsgi_session: a visit counter with log in and log out.

    cd examples && python flask_app.py            # http://127.0.0.1:8000
    cd examples && gunicorn --threads 8 flask_app:app
"""

from __future__ import annotations

from flask import Flask, redirect, request
from markupsafe import escape
from werkzeug.wrappers import Response

from wsgi_session import SessionMiddleware, get_session

app = Flask(__name__)
app.wsgi_app = SessionMiddleware(app.wsgi_app, max_lifetime=1800)

PAGE = """<!doctype html><title>Flask + wsgi_session</title>
<p id="visits">Visits: {visits}</p><p id="user">{user}</p>
<form method="post" action="/login"><input name="user" value="alice"><button>Log in</button></form>
<form method="post" action="/logout"><button>Log out</button></form>
"""


@app.get("/")
def index() -> str:
    session = get_session(request.environ)
    session["visits"] = session.get("visits", 0) + 1
    user = session.get("user")
    who = f"Logged in as {escape(user)}" if user else "Not logged in"
    return PAGE.format(visits=session["visits"], user=who)


@app.post("/login")
def login() -> Response:
    session = get_session(request.environ)
    # A real app checks a password (and a CSRF token) here.
    session.regenerate()  # a privilege change: never keep the old id
    session["user"] = request.form.get("user", "alice")
    return redirect("/", 303)


@app.post("/logout")
def logout() -> Response:
    get_session(request.environ).destroy()  # the response deletes the cookie
    return redirect("/", 303)


if __name__ == "__main__":
    app.run(port=8000)
