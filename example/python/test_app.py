"""Tests of app.py with the fake Spotify of `caddy spotify-fake`.

Unit tests call the app directly with the headers spotify_auth would send,
which the fake's control API builds; the end-to-end test logs in through
a real Caddy. They need the Caddy binary with the plugin:

    CADDY=/path/to/caddy python3 -m unittest -v test_app.py

Without it they skip, or fail when CI=true.
"""

import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import app

HERE = os.path.dirname(os.path.abspath(__file__))
CADDY = shutil.which(os.environ.get("CADDY", "caddy"))


def need_caddy():
    if CADDY is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CADDY: no Caddy binary with the spotify_auth plugin")
        raise unittest.SkipTest("set CADDY to a Caddy binary with the spotify_auth plugin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fake:
    """`caddy spotify-fake` on a free port, and its control API."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen([CADDY, "spotify-fake", "--listen", "127.0.0.1:0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()  # "spotify-fake listening on URL"
        if not first.startswith("spotify-fake listening on "):
            self.proc.kill()
            raise RuntimeError("spotify-fake did not start: " + first + self.proc.stdout.read())
        self.url = first.split()[-1]
        # Keep reading its output so that it never blocks on a full pipe.
        self.reader = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self.reader.start()

    def control(self, op, body=None, method="POST"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/_spotifytest/{op}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        self.proc.stdout.close()


def get(url, headers=None, opener=None):
    """GET url: (status, headers, body), whatever the status."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


ALICE = {"id": "alice", "display_name": "Alice Liddell", "email": "alice@example.com", "product": "premium",
         "top_tracks": [{"name": "Gopher Groove", "artist": "The Channels"}]}


class UnitTests(unittest.TestCase):
    """The app alone, with the headers spotify_auth would send."""

    @classmethod
    def setUpClass(cls):
        need_caddy()
        cls.fake = Fake()
        cls.addClassCleanup(cls.fake.close)
        cls.server = app.make_server(cls.fake.url)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.addClassCleanup(cls.server.server_close)
        cls.addClassCleanup(cls.server.shutdown)
        cls.app_url = f"http://127.0.0.1:{cls.server.server_address[1]}"
        cls.fake.control("users", ALICE)

    def forwarded(self, user, *scopes):
        return self.fake.control("forwarded", {"user": user, "scopes": list(scopes)})

    def test_page_greets_the_user_and_lists_their_top_tracks(self):
        fwd = self.forwarded("alice", "user-top-read")
        status, _, body = get(self.app_url + "/", fwd["headers"])
        self.assertEqual(status, 200, body)
        self.assertIn("Hello, Alice Liddell", body)
        self.assertIn("Gopher Groove by The Channels", body)

    def test_whoami_decodes_a_percent_encoded_name(self):
        self.fake.control("users", {"id": "zoe", "display_name": "Zoë"})
        fwd = self.forwarded("zoe")
        self.assertEqual(fwd["headers"]["X-Spotify-User-Name"], "Zo%C3%AB")
        status, _, body = get(self.app_url + "/whoami", fwd["headers"])
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["name"], "Zoë")

    def test_the_app_calls_the_web_api_as_the_user(self):
        self.fake.control("reset")
        get(self.app_url + "/", self.forwarded("alice", "user-top-read")["headers"])
        calls = [(r["path"], r["user"]) for r in self.fake.control("requests", method="GET")["api"]]
        self.assertEqual(calls, [("/v1/me/top/tracks", "alice")])

    def test_an_expired_token_gets_401_with_the_refresh_hint(self):
        fwd = self.forwarded("alice", "user-top-read")
        self.assertEqual(self.fake.control("expire", {"token": fwd["access_token"]}), {"known": True})
        status, headers, _ = get(self.app_url + "/", fwd["headers"])
        self.assertEqual(status, 401)
        self.assertIn('error="invalid_token"', headers["WWW-Authenticate"])

    def test_a_spotify_outage_is_a_502(self):
        self.fake.control("faults", {"endpoint": "api", "path": "/v1/me/top/*", "status": 503, "times": 1})
        self.addCleanup(self.fake.control, "faults", method="DELETE")
        status, _, body = get(self.app_url + "/", self.forwarded("alice", "user-top-read")["headers"])
        self.assertEqual(status, 502, body)

    def test_a_request_around_caddy_is_refused(self):
        status, _, _ = get(self.app_url + "/", {"X-Spotify-User-Id": "alice"})
        self.assertEqual(status, 401)


class EndToEndTest(unittest.TestCase):
    """A login through a real Caddy in front of the app."""

    @classmethod
    def setUpClass(cls):
        need_caddy()
        site_port = free_port()
        cls.site = f"http://127.0.0.1:{site_port}"
        cls.fake = Fake("--client", f"e2e:e2e-secret={cls.site}/oauth2/spotify/callback", "--auto-approve", "alice")
        cls.addClassCleanup(cls.fake.close)
        cls.fake.control("users", ALICE)
        cls.server = app.make_server(cls.fake.url)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.addClassCleanup(cls.server.server_close)
        cls.addClassCleanup(cls.server.shutdown)
        storage = tempfile.mkdtemp()
        cls.addClassCleanup(shutil.rmtree, storage, True)
        env = dict(os.environ, FAKE_URL=cls.fake.url, SITE_PORT=str(site_port), E2E_STORAGE=storage,
                   APP_ADDR=f"127.0.0.1:{cls.server.server_address[1]}")
        caddy = subprocess.Popen([CADDY, "run", "--config", os.path.join(HERE, "..", "e2e.Caddyfile")],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.addClassCleanup(caddy.wait, 10)
        cls.addClassCleanup(caddy.terminate)
        for _ in range(150):  # until Caddy answers, for 15 seconds
            try:
                get(cls.site + "/")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Caddy did not start")

    def test_login_through_caddy_shows_alices_top_tracks(self):
        # Cookies kept and redirects followed: site -> fake's /authorize ->
        # callback (auto-approved as alice) -> the page. Accept: text/html
        # makes it a page load, which the plugin sends to log in.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, _, body = get(self.site + "/", {"Accept": "text/html"}, opener)
        self.assertEqual(status, 200, body)
        self.assertIn("Hello, Alice Liddell", body)
        self.assertIn("Gopher Groove by The Channels", body)

        status, _, body = get(self.site + "/whoami", opener=opener)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["id"], "alice")
        self.assertEqual(self.fake.control("counts", method="GET")["code_exchanges"], 1)


if __name__ == "__main__":
    unittest.main()
