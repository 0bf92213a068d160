"""A small app behind spotify_auth, standard library only.

Caddy's spotify_auth lets a request through only with a Spotify session
and adds who the user is and their access token:

    Authorization: Bearer <access token>
    X-Spotify-User-Id: alice
    X-Spotify-User-Name: Alice%20Liddell   (percent-encoded UTF-8)
    X-Spotify-Token-Expires: 2026-12-02T03:00:00Z

GET /        greets the user and lists their top tracks, read from the
             Spotify Web API with their token
GET /whoami  the identity headers as JSON

Run it on loopback only (anything that reaches it directly could forge
the headers):

    APP_ADDR=127.0.0.1:3000 SPOTIFY_API_URL=https://api.spotify.com python3 app.py
"""

import html
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def top_tracks(api_url, token, limit=5):
    """The user's top tracks as "name by artist", from the Web API."""
    req = urllib.request.Request(
        f"{api_url}/v1/me/top/tracks?limit={limit}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        items = json.load(resp)["items"]
    return [f"{t['name']} by {t['artists'][0]['name']}" for t in items]


class Handler(BaseHTTPRequestHandler):
    api_url = "https://api.spotify.com"  # set by make_server

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        user_id = self.headers.get("X-Spotify-User-Id")
        auth = self.headers.get("Authorization", "")
        if not user_id or not auth.startswith("Bearer "):
            # Only spotify_auth's requests carry these: without them the
            # app is being reached around Caddy.
            return self.send(401, "text/plain", "no Spotify session\n")
        token = auth[len("Bearer "):]
        name = urllib.parse.unquote(self.headers.get("X-Spotify-User-Name", "")) or user_id
        if path == "/whoami":
            body = json.dumps({
                "id": user_id,
                "name": name,
                "email": urllib.parse.unquote(self.headers.get("X-Spotify-User-Email", "")),
                "scopes": self.headers.get("X-Spotify-Scopes", "").split(),
                "token_expires": self.headers.get("X-Spotify-Token-Expires", ""),
            })
            return self.send(200, "application/json", body)
        if path != "/":
            return self.send(404, "text/plain", "not found\n")
        try:
            tracks = top_tracks(self.api_url, token)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                # Spotify refused the token: this hint makes spotify_auth
                # refresh the session on its next request.
                return self.send(401, "text/html", "<p>Spotify did not accept the session. <a href=\"/\">Try again</a></p>\n",
                                 {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return self.send(502, "text/plain", f"Spotify answered {e.code}\n")
        items = "".join(f"<li>{html.escape(t)}</li>" for t in tracks)
        self.send(200, "text/html", f"<h1>Hello, {html.escape(name)}</h1>\n<ol>{items}</ol>\n")

    def send(self, status, content_type, body, headers=None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass  # keep test output readable; never log the Authorization header


def make_server(api_url, host="127.0.0.1", port=0):
    """The app on host:port (0: a free port), calling the Web API at api_url."""
    handler = type("AppHandler", (Handler,), {"api_url": api_url.rstrip("/")})
    return ThreadingHTTPServer((host, port), handler)


if __name__ == "__main__":
    host, _, port = os.environ.get("APP_ADDR", "127.0.0.1:3000").rpartition(":")
    server = make_server(os.environ.get("SPOTIFY_API_URL", "https://api.spotify.com"), host, int(port))
    print(f"app listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
