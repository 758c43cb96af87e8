#!/usr/bin/env node
// The upload page's resumable uploads (tus) in a real Chromium, through a
// TCP proxy that this script runs between the browser and the server, so
// that it can cut the connection in the middle of a chunk or hold it.
//
// Usage:
//   node tests/browser/resumable.mjs --base http://127.0.0.1:PORT --key KEY \
//     --peer-base http://127.0.0.1:PORT2 --threshold BYTES --work DIR --shots DIR
//
//   --base       the server (the page is opened through the proxy in front of it)
//   --key        its security key
//   --peer-base  a peer server that must hold a copy of every stored file
//   --threshold  the server's [resumable] page_threshold_bytes
//   --work       a folder for the generated images (chosen by path, so that a
//                file chosen again after a reload is the same file to the page)
//   --shots      where the screenshots go (created if missing)
//   --chromium   browser binary (default: /usr/bin/chromium, or $CHROMIUM)
//
// Checks: a file below the threshold goes by the plain upload, one above it
// by tus; the connection cut once mid-chunk, the upload resumes by itself
// from a non-zero offset (one creation only) and ends with the link; the page
// reloaded mid-upload names the interrupted file and resumes it when it is
// chosen again; with an upload token (#token=…, minted with the key) instead
// of the key, every tus request carries it as Authorization: Bearer; the
// stored bytes are identical on the server and its peer.
// The only browser errors allowed are those the cut and the reload cause
// themselves: failed requests of /files/… (net::ERR_…) and Chromium's
// "Failed to load resource: net::ERR_…" line for each, and after the cut at
// most one 409 of a PATCH that Chromium replayed (see REPLAYED_PATCH).
// Exit code 0 when every check passed, 1 with a message on the first failure.

import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import crypto from "node:crypto";
import { chromium } from "playwright-core";
import { noisePng } from "./noise-png.mjs";

const OVERALL_TIMEOUT_MS = 150_000;
const SETTLE_TIMEOUT_MS = 60_000;
const CHUNK = 4 * 1024 * 1024; // the page's chunk size
const LARGE = 7.5 * 1024 * 1024; // two chunks, under the page's default threshold
const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};
const check = (cond, msg) => {
  if (!cond) fail(msg);
};
const log = (...a) => console.log(...a);
const passed = [];
function ok(msg) {
  passed.push(msg);
  log(`  ok  ${msg}`);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) fail(`bad arguments near ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ["base", "key", "peer-base", "threshold", "work", "shots"]) {
    if (!out[name]) fail(`--${name} is required`);
  }
  return {
    base: out.base.replace(/\/+$/, ""),
    key: out.key,
    peerBase: out["peer-base"].replace(/\/+$/, ""),
    threshold: Number(out.threshold),
    work: out.work,
    shots: out.shots,
    chromium: out.chromium || process.env.CHROMIUM || "/usr/bin/chromium",
  };
}

// A TCP proxy to the server. Counts the bytes the browser sends once armed;
// `cutAt`: destroys every connection when that many have passed (once);
// `holdAt`: stops forwarding on that connection from then on (the upload
// stalls; other connections go on) until `release()` closes it.
function startProxy(target) {
  const pairs = new Set();
  const state = { armedBytes: 0, cutAt: null, holdAt: null, cuts: 0, held: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    const pair = { client, upstream, held: false };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (data) => {
      if (pair.held) return;
      if (state.cutAt !== null || state.holdAt !== null) state.armedBytes += data.length;
      if (state.cutAt !== null && state.armedBytes >= state.cutAt) {
        state.cutAt = null;
        state.cuts++;
        for (const p of [...pairs]) {
          p.client.destroy();
          p.upstream.destroy();
          pairs.delete(p);
        }
        return;
      }
      if (state.holdAt !== null && state.armedBytes >= state.holdAt) {
        state.holdAt = null;
        state.held++;
        pair.held = true;
        client.pause();
        return;
      }
      upstream.write(data);
    });
    upstream.on("data", (data) => client.write(data));
    client.on("close", close);
    upstream.on("close", close);
    client.on("error", close);
    upstream.on("error", close);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: server.address().port,
        state,
        arm(what) {
          state.armedBytes = 0;
          Object.assign(state, what);
        },
        release() {
          for (const p of [...pairs].filter((x) => x.held)) {
            p.client.destroy();
            p.upstream.destroy();
            pairs.delete(p);
          }
        },
        close() {
          for (const p of pairs) {
            p.client.destroy();
            p.upstream.destroy();
          }
          server.close();
        },
      });
    });
  });
}


// Console errors, uncaught page errors and failed requests of a page.
function watchErrors(page, sink) {
  page.on("console", (msg) => {
    if (msg.type() === "error") sink.push(`console error: ${msg.text()} (${msg.location().url || "?"})`);
  });
  page.on("pageerror", (err) => sink.push(`page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    const why = req.failure() ? req.failure().errorText : "?";
    sink.push(`request failed: ${req.method()} ${req.url()} (${why})`);
  });
}

// What a cut or an abandoned page causes, and nothing else: a tus request
// that failed at the network level, and Chromium's console line for it.
const NETWORK_ERRORS = [
  /^request failed: (HEAD|PATCH|POST) http:\/\/127\.0\.0\.1:\d+\/files\/\S* \(net::ERR_[A-Z_]+\)$/,
  /^console error: Failed to load resource: net::ERR_[A-Z_]+ \(http:\/\/127\.0\.0\.1:\d+\/files\/\S*\)$/,
];
// A request cut on a kept-alive connection is sent again by Chromium itself,
// unseen by the page: that PATCH still carries the old Upload-Offset, and
// the server, which kept the bytes that had arrived, answers 409 (the page's
// tus client then asks HEAD for the offset and goes on). Chromium logs that
// answer; at most one per cut.
const REPLAYED_PATCH = /^console error: Failed to load resource: the server responded with a status of 409 \(Conflict\) \(http:\/\/127\.0\.0\.1:\d+\/files\/\S+\)$/;

function assertNoErrors(sink, what, allowed = []) {
  const bad = sink.filter((e) => !allowed.some((re) => re.test(e)));
  const seen = sink.filter((e) => allowed.some((re) => re.test(e)));
  sink.length = 0;
  check(bad.length === 0, `${what}: errors in the browser:\n    ${bad.join("\n    ")}`);
  for (const e of seen) log(`      expected: ${e}`);
  return seen.length;
}

// The tus and plain upload requests the page makes, in order.
function watchRequests(page, sink) {
  page.on("request", (req) => {
    const url = new URL(req.url());
    if (url.pathname.startsWith("/files/") || url.pathname === "/do.ashx") {
      const headers = req.headers();
      sink.push({
        method: req.method(),
        path: url.pathname,
        offset: headers["upload-offset"],
        bearer: /^Bearer \S+$/.test(headers.authorization || ""),
        key: headers["x-security-key"] !== undefined,
      });
    }
  });
}

function readRows(page) {
  return page.$$eval(".file-row", (rows) =>
    rows.map((r) => {
      const a = r.querySelector("a.file-link");
      return {
        name: r.getAttribute("data-name"),
        state: r.getAttribute("data-state"),
        path: r.getAttribute("data-path") || "",
        sha256: r.getAttribute("data-sha256") || "",
        link: a ? a.textContent.trim() : "",
        error: (r.querySelector(".file-error").textContent || "").trim(),
        status: (r.querySelector(".file-status").textContent || "").trim(),
        percent: Number(r.querySelector("progress").value),
        replicas: Array.from(r.querySelectorAll(".replica")).map((x) => x.getAttribute("data-ok")),
      };
    }),
  );
}

async function waitRow(page, name, what) {
  try {
    await page.waitForFunction(
      (n) => {
        const r = document.querySelector(`.file-row[data-name="${n}"]`);
        return r && !["queued", "uploading"].includes(r.getAttribute("data-state"));
      },
      name,
      { timeout: SETTLE_TIMEOUT_MS, polling: 100 },
    );
  } catch {
    fail(`${what}: ${name} did not finish within ${SETTLE_TIMEOUT_MS / 1000} s: ` +
      JSON.stringify(await readRows(page).catch(() => [])));
  }
  return (await readRows(page)).find((r) => r.name === name);
}

async function fetchBytes(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  check(res.status === 200, `GET ${url} answered HTTP ${res.status}, expected 200`);
  return Buffer.from(await res.arrayBuffer());
}

// The row shows the link; the bytes behind it, here and on the peer, are the file's.
async function verifyStored(opts, row, bytes, what) {
  check(row && row.state === "done", `${what}: the row ended in state ${row && row.state}: ${row && (row.error || row.status)}`);
  check(row.link, `${what}: the row shows no link`);
  const storedPath = new URL(row.link).pathname.replace(/^\/+/, "");
  check(row.path === storedPath, `${what}: data-path ${row.path} differs from the link's path ${storedPath}`);
  const sha = crypto.createHash("sha256").update(bytes).digest("hex");
  check(row.sha256 === sha, `${what}: data-sha256 ${row.sha256} is not the file's SHA-256 ${sha}`);
  const here = await fetchBytes(`${opts.base}/${storedPath}`);
  check(here.equals(bytes), `${what}: ${storedPath} on the server differs from the file (${here.length} vs ${bytes.length} bytes)`);
  const peer = await fetchBytes(`${opts.peerBase}/${storedPath}`);
  check(peer.equals(bytes), `${what}: the peer's ${storedPath} differs from the file (${peer.length} vs ${bytes.length} bytes)`);
  check(row.replicas.includes("1"), `${what}: the row shows no copied replica: ${JSON.stringify(row.replicas)}`);
  return storedPath;
}

// Writes a noise PNG of at least `bytes` bytes to the work folder.
async function bigImage(opts, name, bytes, seed) {
  const side = Math.ceil(Math.sqrt(bytes / 3));
  const data = noisePng(side, side, seed);
  const file = path.join(opts.work, name);
  await fs.writeFile(file, data);
  return { name, path: file, bytes: data };
}

async function run(opts, state) {
  await fs.mkdir(opts.shots, { recursive: true });
  await fs.mkdir(opts.work, { recursive: true });
  const target = new URL(opts.base);
  const proxy = await startProxy({ host: target.hostname, port: Number(target.port) });
  state.proxy = proxy;
  const front = `http://127.0.0.1:${proxy.port}`;
  const pageUrl = `${front}/.m/upload?SecurityKey=${encodeURIComponent(opts.key)}`;
  check(opts.threshold > 1024 * 1024 && opts.threshold < 8 * 1024 * 1024,
    `--threshold ${opts.threshold}: give one between 1 and 8 MiB, so that a file between it and the default shows whose threshold the page uses`);

  const browser = await chromium.launch({ executablePath: opts.chromium, args: LAUNCH_ARGS, headless: true, timeout: 30_000 });
  state.browser = browser;
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
  const page = await ctx.newPage();
  const errors = [];
  const requests = [];
  watchErrors(page, errors);
  watchRequests(page, requests);
  // Leaving the page mid-upload asks first; the test leaves.
  page.on("dialog", (d) => d.accept());

  log("1. the page learns the server's threshold; a small file goes by the plain upload");
  {
    const res = await page.goto(pageUrl, { waitUntil: "load", timeout: 15_000 });
    check(res.status() === 200, `the page answered HTTP ${res.status()}`);
    const policy = res.headers()["content-security-policy"] || "";
    check(/script-src 'self'(;|$)/.test(policy), `the page's CSP lets other scripts in: ${policy}`);
    const attr = await page.getAttribute("html", "data-tus-threshold");
    check(Number(attr) === opts.threshold, `data-tus-threshold is ${attr}, the server's page_threshold_bytes is ${opts.threshold}`);
    check(await page.evaluate(() => !!(window.tus && window.tus.isSupported)), "tus-js-client did not load (window.tus)");
    const small = { name: "small.png", mimeType: "image/png", buffer: noisePng(200, 200, 7) };
    await page.setInputFiles("#file-input", small);
    const row = await waitRow(page, small.name, "small file");
    await verifyStored(opts, row, small.buffer, "small file");
    check(requests.length > 0 && requests.every((r) => r.path === "/do.ashx"),
      `a file below the threshold made these requests: ${JSON.stringify(requests)}`);
    ok(`data-tus-threshold = ${attr} (the server's); tus-js-client loaded under the CSP; a ${small.buffer.length}-byte file went by POST /do.ashx`);
    assertNoErrors(errors, "small file");
  }

  log("2. a file over the threshold goes by tus; the connection is cut once mid-chunk");
  {
    requests.length = 0;
    // Between the server's threshold and the page's default (8 MiB): only
    // the server's threshold sends it through tus. Two chunks.
    const big = await bigImage(opts, "large-cut.png", LARGE, 11);
    check(big.bytes.length > opts.threshold && big.bytes.length < 8 * 1024 * 1024, `the large file is ${big.bytes.length} bytes`);
    // Half way through the second chunk.
    proxy.arm({ cutAt: CHUNK + CHUNK / 2 });
    await page.setInputFiles("#file-input", big.path);
    const row = await waitRow(page, big.name, "cut upload");
    check(proxy.state.cuts === 1, `the proxy cut the connection ${proxy.state.cuts} times, expected once`);
    const storedPath = await verifyStored(opts, row, big.bytes, "cut upload");
    const posts = requests.filter((r) => r.method === "POST");
    check(posts.length === 1 && posts[0].path === "/files/",
      `expected one POST /files/ (one creation, never restarted from zero), saw ${JSON.stringify(requests)}`);
    const patches = requests.filter((r) => r.method === "PATCH");
    const heads = requests.filter((r) => r.method === "HEAD");
    check(heads.length >= 1, `no HEAD asked for the offset after the cut: ${JSON.stringify(requests)}`);
    const firstAfterHead = requests.slice(requests.indexOf(heads[0]) + 1).find((r) => r.method === "PATCH");
    check(firstAfterHead && Number(firstAfterHead.offset) > 0,
      `after the cut the upload did not resume from a non-zero offset: ${JSON.stringify(requests)}`);
    check(patches.every((r) => r.path.startsWith("/files/") && r.path.length > "/files/".length), "a PATCH went elsewhere than its upload");
    // The stored rows' thumbnails have loaded: leaving the page in step 3
    // must abort nothing but the upload.
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('.file-row[data-state="done"]')).every((r) => {
        const img = r.querySelector("img.thumb-img");
        return img && img.complete && img.getAttribute("src") === r.getAttribute("data-thumb");
      }),
      null,
      { timeout: 20_000 },
    ).catch(() => fail("a stored row does not show the server's thumbnail"));
    await page.screenshot({ path: path.join(opts.shots, "04-tus-cut.png"), fullPage: true });
    const replays = errors.filter((e) => REPLAYED_PATCH.test(e)).length;
    check(replays <= 1, `${replays} PATCHes answered 409 after one cut`);
    const expected = assertNoErrors(errors, "cut upload", [...NETWORK_ERRORS, REPLAYED_PATCH]);
    ok(`${big.bytes.length} bytes through tus, cut once mid-chunk, resumed at offset ${firstAfterHead.offset} ` +
      `(one POST /files/, ${heads.length} HEAD, ${patches.length} PATCH); ${storedPath} identical here and on the peer; ` +
      `${expected} browser error(s), all the cut's own network errors`);
  }

  log("3. the page reloaded mid-upload offers to resume; the same file chosen again resumes");
  {
    requests.length = 0;
    const big = await bigImage(opts, "large-reload.png", LARGE, 23);
    // Stalls half way through the second chunk: the first is on the server.
    proxy.arm({ holdAt: CHUNK + CHUNK / 2 });
    await page.setInputFiles("#file-input", big.path);
    for (let i = 0; i < 200 && !proxy.state.held; i++) await new Promise((r) => setTimeout(r, 50));
    check(proxy.state.held === 1, "the upload never reached the point where the proxy holds it");
    // Opened again (a reload would come back without the key: the page
    // takes it out of the address).
    await page.goto(pageUrl, { waitUntil: "load", timeout: 15_000 });
    proxy.release();
    const notice = page.locator("#resume-notice");
    await notice.waitFor({ state: "visible", timeout: 10_000 })
      .catch(() => fail("after the reload the page does not offer to resume the interrupted upload"));
    const listed = await page.locator("#resume-list li").allTextContents();
    check(listed.some((t) => t.startsWith(big.name)), `the resume notice lists ${JSON.stringify(listed)}, not ${big.name}`);
    await page.screenshot({ path: path.join(opts.shots, "05-tus-resume-offer.png"), fullPage: true });
    ok(`after a reload the page names the interrupted upload: ${JSON.stringify(listed)}`);
    await page.setInputFiles("#file-input", big.path);
    const row = await waitRow(page, big.name, "resumed upload");
    await verifyStored(opts, row, big.bytes, "resumed upload");
    const posts = requests.filter((r) => r.method === "POST");
    check(posts.length === 1, `expected one POST /files/ over both page loads, saw ${JSON.stringify(requests)}`);
    const head = requests.findIndex((r, i) => i > requests.indexOf(posts[0]) && r.method === "HEAD");
    const resumedAt = head >= 0 ? requests.slice(head).find((r) => r.method === "PATCH") : null;
    check(resumedAt && Number(resumedAt.offset) >= CHUNK,
      `after the reload the upload did not resume from the server's offset: ${JSON.stringify(requests)}`);
    check(await notice.isHidden(), "the resume notice stays after the upload was resumed and stored");
    check(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("tus::")).length) === 0,
      "a stored upload is still remembered for resuming");
    const expected = assertNoErrors(errors, "resumed upload", NETWORK_ERRORS);
    ok(`the same file chosen again resumed at offset ${resumedAt.offset} (one POST /files/ over both loads), ` +
      `identical here and on the peer; the notice is gone; ${expected} browser error(s), all the abandoned request's`);
  }

  log("4. with an upload token instead of the key");
  {
    const res = await fetch(`${opts.base}/do.ashx?action=token&format=json`, {
      method: "POST",
      headers: { "X-Security-Key": opts.key },
      signal: AbortSignal.timeout(15_000),
    });
    const minted = await res.json().catch(() => null);
    const token = minted && minted.resp && minted.resp.token;
    check(res.status === 200 && token, `action=token answered HTTP ${res.status}: ${JSON.stringify(minted)}`);
    const tokenPage = await ctx.newPage();
    watchErrors(tokenPage, errors);
    const seen = [];
    watchRequests(tokenPage, seen);
    await tokenPage.goto(`${front}/.m/upload#token=${token}`, { waitUntil: "load", timeout: 15_000 });
    const big = await bigImage(opts, "large-token.png", LARGE, 37);
    await tokenPage.setInputFiles("#file-input", big.path);
    const row = await waitRow(tokenPage, big.name, "token upload");
    await verifyStored(opts, row, big.bytes, "token upload");
    const tus = seen.filter((r) => r.path.startsWith("/files/"));
    check(tus.length >= 2 && tus.every((r) => r.bearer && !r.key),
      `every tus request must carry the token as a Bearer and no key: ${JSON.stringify(seen)}`);
    assertNoErrors(errors, "token upload");
    ok(`with #token=…: ${tus.length} tus requests, each with Authorization: Bearer and no key; stored, identical on the peer`);
    await tokenPage.close();
  }

  await browser.close();
  state.browser = null;
}

async function main() {
  const state = { browser: null, proxy: null };
  const timer = setTimeout(() => {
    console.error(`FAIL: the test took longer than ${OVERALL_TIMEOUT_MS / 1000} s`);
    if (state.browser) state.browser.close().catch(() => {});
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  let code = 0;
  try {
    await run(parseArgs(process.argv.slice(2)), state);
    log(`\nresumable upload page: ${passed.length} passed, 0 failed`);
  } catch (e) {
    code = 1;
    console.error(`\nFAIL: ${e instanceof Failure ? e.message : (e && e.stack) || String(e)}`);
    log(`resumable upload page: ${passed.length} passed, 1 failed`);
  } finally {
    if (state.browser) await state.browser.close().catch(() => {});
    if (state.proxy) state.proxy.close();
    clearTimeout(timer);
  }
  process.exit(code);
}

main();
