// A small app behind spotify_auth, Node's standard library only: the
// JavaScript twin of example/python/app.py.
//
// GET /        greets the user (X-Spotify-User-Name, percent-encoded) and
//              lists their top tracks, read from the Web API with their token
// GET /whoami  the identity headers as JSON
//
//	APP_ADDR=127.0.0.1:3000 SPOTIFY_API_URL=https://api.spotify.com node app.mjs
//
// Listen on loopback only: anything that reaches the app directly could
// forge the headers.
import http from "node:http";
import { pathToFileURL } from "node:url";

const escapeHTML = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function createApp(apiUrl) {
  return http.createServer(async (req, res) => {
    const send = (status, type, body, headers = {}) => {
      res.writeHead(status, { "Content-Type": `${type}; charset=utf-8`, ...headers });
      res.end(body);
    };
    const userId = req.headers["x-spotify-user-id"];
    const auth = req.headers["authorization"] ?? "";
    if (!userId || !auth.startsWith("Bearer ")) {
      return send(401, "text/plain", "no Spotify session\n"); // reached around Caddy
    }
    const name = decodeURIComponent(req.headers["x-spotify-user-name"] ?? "") || userId;
    const path = new URL(req.url, "http://app").pathname;
    if (path === "/whoami") {
      return send(200, "application/json", JSON.stringify({
        id: userId,
        name,
        scopes: (req.headers["x-spotify-scopes"] ?? "").split(" ").filter(Boolean),
        token_expires: req.headers["x-spotify-token-expires"] ?? "",
      }));
    }
    if (path !== "/") return send(404, "text/plain", "not found\n");
    const api = await fetch(`${apiUrl}/v1/me/top/tracks?limit=5`, { headers: { Authorization: auth } });
    if (api.status === 401) {
      // Spotify refused the token: this hint makes spotify_auth refresh
      // the session on its next request.
      return send(401, "text/html", '<p>Spotify did not accept the session. <a href="/">Try again</a></p>\n',
        { "WWW-Authenticate": 'Bearer error="invalid_token"' });
    }
    if (!api.ok) return send(502, "text/plain", `Spotify answered ${api.status}\n`);
    const { items } = await api.json();
    const list = items.map((t) => `<li>${escapeHTML(`${t.name} by ${t.artists[0].name}`)}</li>`).join("");
    send(200, "text/html", `<h1>Hello, ${escapeHTML(name)}</h1>\n<ol>${list}</ol>\n`);
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [host, port] = (process.env.APP_ADDR ?? "127.0.0.1:3000").split(":");
  const server = createApp(process.env.SPOTIFY_API_URL ?? "https://api.spotify.com");
  server.listen(Number(port), host, () => console.log(`app listening on http://${host}:${server.address().port}`));
}
