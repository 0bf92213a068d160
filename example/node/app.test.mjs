// Tests of app.mjs with `caddy spotify-fake`: unit tests with the headers
// the plugin would send (from the fake's control API) and an end-to-end
// login through a real Caddy.
//
//	CADDY=/path/to/caddy node --test
//
// Without CADDY they skip, or fail when CI=true.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { createApp } from "./app.mjs";

const CADDY = process.env.CADDY;
const skip = !CADDY && process.env.CI !== "true" ? "set CADDY to a Caddy binary with the spotify_auth plugin" : false;
const here = path.dirname(new URL(import.meta.url).pathname);

// startFake runs `caddy spotify-fake` on a free port; its first line has the URL.
async function startFake(...flags) {
  if (!CADDY) throw new Error("CADDY: no Caddy binary with the spotify_auth plugin");
  const proc = spawn(CADDY, ["spotify-fake", "--listen", "127.0.0.1:0", ...flags], { stdio: ["ignore", "pipe", "inherit"] });
  const [first] = await once(readline.createInterface({ input: proc.stdout }), "line");
  proc.stdout.resume();
  const url = first.replace("spotify-fake listening on ", "");
  const control = async (op, body, method = "POST") => {
    const res = await fetch(`${url}/_spotifytest/${op}`, { method, body: body && JSON.stringify(body) });
    assert.equal(res.status, 200, `${op}: ${res.status}`);
    return res.json();
  };
  return { url, control, stop: () => proc.kill() };
}

async function listen(server) {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${server.address().port}`;
}

async function freePort() {
  const s = net.createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const ALICE = {
  id: "alice", display_name: "Alice Liddell", email: "alice@example.com", product: "premium",
  top_tracks: [{ name: "Gopher Groove", artist: "The Channels" }],
};

describe("unit: the app alone, with the headers spotify_auth sends", { skip }, () => {
  let fake, app, appURL;
  before(async () => {
    fake = await startFake();
    await fake.control("users", ALICE);
    app = createApp(fake.url);
    appURL = await listen(app);
  });
  after(() => { app?.close(); fake?.stop(); });

  test("the page greets alice and lists her top track", async () => {
    const { headers } = await fake.control("forwarded", { user: "alice", scopes: ["user-top-read"] });
    const res = await fetch(appURL + "/", { headers });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(body, /Hello, Alice Liddell/);
    assert.match(body, /Gopher Groove by The Channels/);
  });

  test("an expired token gets 401 with the hint that makes the plugin refresh", async () => {
    const fwd = await fake.control("forwarded", { user: "alice", scopes: ["user-top-read"] });
    assert.deepEqual(await fake.control("expire", { token: fwd.access_token }), { known: true });
    const res = await fetch(appURL + "/", { headers: fwd.headers });
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate"), /invalid_token/);
  });
});

describe("e2e: a login through a real Caddy", { skip }, () => {
  let fake, app, caddy, site, storage;
  before(async () => {
    const port = await freePort();
    site = `http://127.0.0.1:${port}`;
    fake = await startFake("--client", `e2e:e2e-secret=${site}/oauth2/spotify/callback`, "--auto-approve", "alice");
    await fake.control("users", ALICE);
    app = createApp(fake.url);
    const appURL = await listen(app);
    storage = mkdtempSync(path.join(os.tmpdir(), "e2e-"));
    caddy = spawn(CADDY, ["run", "--config", path.join(here, "..", "e2e.Caddyfile")], {
      stdio: "ignore",
      env: { ...process.env, FAKE_URL: fake.url, SITE_PORT: String(port), E2E_STORAGE: storage, APP_ADDR: appURL.slice(7) },
    });
    for (let i = 0; i < 150; i++) { // until Caddy answers, for 15 seconds
      try { await fetch(site + "/"); return; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    throw new Error("Caddy did not start");
  });
  after(() => { caddy?.kill(); app?.close(); fake?.stop(); rmSync(storage, { recursive: true, force: true }); });

  test("logging in as alice lands on her page, and the cookie keeps her logged in", async () => {
    // Follow the redirects (site -> fake's /authorize -> auto-approved
    // callback -> site), keeping cookies. The plugin sends a page load to
    // log in, and answers API calls 401: Node's fetch always says
    // Sec-Fetch-Mode: cors, an API call, so this uses node:http.
    const jar = new Map();
    const get = (url) => new Promise((resolve, reject) => {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      http.get(url, { headers: { Accept: "text/html", ...(cookie && { Cookie: cookie }) } }, (res) => {
        for (const c of res.headers["set-cookie"] ?? []) {
          const [kv] = c.split(";");
          const i = kv.indexOf("=");
          jar.set(kv.slice(0, i), kv.slice(i + 1));
        }
        let body = "";
        res.setEncoding("utf8").on("data", (d) => (body += d)).on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
      }).on("error", reject);
    });
    let url = site + "/";
    let res = await get(url);
    for (let hops = 0; res.status >= 300 && res.status < 400 && hops < 10; hops++) {
      url = new URL(res.headers.location, url).href;
      res = await get(url);
    }
    assert.equal(res.status, 200, res.body);
    assert.match(res.body, /Hello, Alice Liddell/);
    assert.match(res.body, /Gopher Groove/);

    const who = JSON.parse((await get(site + "/whoami")).body);
    assert.equal(who.id, "alice");
    assert.equal((await fake.control("counts", undefined, "GET")).code_exchanges, 1);
  });
});
