"""Flask with wsgi_session: ``flask.session``, flash, Flask-Login and CSRF.

    cd examples && python flask_app.py            # http://127.0.0.1:8000
    cd examples && gunicorn --threads 8 flask_app:app

One line (``init_app``) moves ``flask.session`` to the server: flash
messages and Flask-Login keep their state in the store, and no SECRET_KEY
is needed. Logging in and out gives the session a new id (init_app hooks
Flask-Login's signals); every POST carries the session's CSRF token.
"""

from __future__ import annotations

import flask_login
from flask import Flask, abort, flash, get_flashed_messages, redirect, request, session
from markupsafe import escape
from werkzeug.wrappers import Response

from wsgi_session.flask import init_app

app = Flask(__name__)
init_app(app, max_lifetime=1800, cookie_name="session_id", samesite="Lax")
login_manager = flask_login.LoginManager(app)


class User(flask_login.UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


@login_manager.user_loader
def load_user(user_id: str) -> User:
    return User(user_id)


@app.before_request
def check_csrf() -> None:
    if request.method == "POST" and not session.check_csrf_token(request.form.get("csrf_token")):
        abort(403)


PAGE = """<!doctype html><title>Flask + wsgi_session</title>
{flashes}<p id="visits">Visits: {visits}</p><p id="user">{user}</p>
<form method="post" action="/login"><input type="hidden" name="csrf_token" value="{csrf}">
<input name="user" value="alice"><input name="password" type="password" value="wonderland">
<button id="login">Log in</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{csrf}">
<button id="logout">Log out</button></form>
"""


@app.get("/")
def index() -> str:
    session["visits"] = session.get("visits", 0) + 1
    user = flask_login.current_user
    who = f"Logged in as {escape(user.id)}" if user.is_authenticated else "Not logged in"
    flashes = "".join(f'<p class="flash">{escape(m)}</p>' for m in get_flashed_messages())
    return PAGE.format(flashes=flashes, visits=session["visits"], user=who, csrf=session.csrf_token)


@app.post("/login")
def login() -> Response:
    name = request.form.get("user", "alice")
    # A real app checks the password here.
    flask_login.login_user(User(name))  # and the session gets a new id
    flash(f"Welcome, {name}!")
    return redirect("/", 303)


@app.post("/logout")
def logout() -> Response:
    flask_login.logout_user()
    session.destroy()  # forget everything else too; the old id is dead
    flash("Logged out.")  # kept in a new session
    return redirect("/", 303)


if __name__ == "__main__":
    app.run(port=8000)
