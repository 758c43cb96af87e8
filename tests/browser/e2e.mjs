#!/usr/bin/env node
// End-to-end test of the browser upload page (/.m/upload) in a real Chromium.
//
// Usage:
//   node tests/browser/e2e.mjs --base http://127.0.0.1:PORT --key KEY \
//     --peer-base http://127.0.0.1:PORT2 --images DIR --bad FILE --shots DIR
//
//   --base       the server the page is opened on
//   --key        its security key
//   --peer-base  a peer server that must hold a copy of every stored file
//   --images     a directory whose files (all of them) are real images to upload
//   --bad        a file that is not an image but is named like one (e.g. HTML in x.jpg)
//   --shots      where the screenshots go (created if missing)
//   --chromium   browser binary (default: /usr/bin/chromium, or $CHROMIUM)
//
// Needs `npm install` in tests/browser (playwright-core) and the system Chromium
// (Debian: apt-get install chromium). It never downloads a browser.
// Exit code 0 when every check passed, 1 with a message on the first failure.

import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import crypto from "node:crypto";
import { chromium } from "playwright-core";
import { noisePng } from "./noise-png.mjs";

const OVERALL_TIMEOUT_MS = 120_000;
const SETTLE_TIMEOUT_MS = 45_000;
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

function fail(msg) {
  throw new Failure(msg);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

const log = (...a) => console.log(...a);
const passed = [];
function ok(msg) {
  passed.push(msg);
  log(`  ok  ${msg}`);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) fail(`unexpected argument: ${a}`);
    const eq = a.indexOf("=");
    if (eq > 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
    } else {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith("--")) fail(`missing value for ${a}`);
      out[a.slice(2)] = v;
      i++;
    }
  }
  const here = path.dirname(fileURLToPath(import.meta.url));
  const opts = {
    base: out.base,
    key: out.key,
    peerBase: out["peer-base"],
    images: out.images,
    bad: out.bad,
    shots: out.shots || path.join(here, "screenshots"),
    chromium: out.chromium || process.env.CHROMIUM || "/usr/bin/chromium",
  };
  for (const [name, v] of [["base", opts.base], ["key", opts.key], ["peer-base", opts.peerBase],
    ["images", opts.images], ["bad", opts.bad]]) {
    if (!v) fail(`--${name} is required\nusage: node e2e.mjs --base URL --key KEY --peer-base URL --images DIR --bad FILE --shots DIR`);
  }
  opts.base = opts.base.replace(/\/+$/, "");
  opts.peerBase = opts.peerBase.replace(/\/+$/, "");
  return opts;
}

// Console errors, uncaught page errors and failed requests of a page.
function watchErrors(page, label, sink) {
  page.on("console", (msg) => {
    if (msg.type() === "error") sink.push(`${label}: console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => sink.push(`${label}: page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    const why = req.failure() ? req.failure().errorText : "?";
    sink.push(`${label}: request failed: ${req.method()} ${req.url()} (${why})`);
  });
}

// Fails on any collected error that is not expected; clears the list.
function assertNoErrors(sink, what, allowed = []) {
  const bad = sink.filter((e) => !allowed.some((re) => re.test(e)));
  sink.length = 0;
  check(bad.length === 0, `${what}: errors in the browser:\n    ${bad.join("\n    ")}`);
}

// Everything the test needs to know about the rows, read from the page.
function readRows(page) {
  return page.$$eval(".file-row", (rows) =>
    rows.map((r) => {
      const a = r.querySelector("a.file-link");
      const img = r.querySelector("img");
      return {
        name: r.getAttribute("data-name") || (r.querySelector(".file-name") || {}).textContent || "",
        state: r.getAttribute("data-state"),
        path: r.getAttribute("data-path") || "",
        sha256: r.getAttribute("data-sha256") || "",
        linkText: a ? a.textContent.trim() : "",
        href: a ? a.getAttribute("href") || "" : "",
        error: ((r.querySelector(".file-error") || {}).textContent || "").trim(),
        status: ((r.querySelector(".file-status") || {}).textContent || "").trim(),
        thumb: img ? img.getAttribute("src") || "" : "",
        hasProgress: !!r.querySelector("progress"),
        replicas: Array.from(r.querySelectorAll(".replica")).map((x) => ({
          peer: x.getAttribute("data-peer"),
          ok: x.getAttribute("data-ok"),
          text: x.textContent.trim(),
        })),
      };
    }),
  );
}

// Waits until there are `count` rows and none of them is queued or uploading.
async function waitSettled(page, count, what) {
  try {
    await page.waitForFunction(
      (n) => {
        const rows = document.querySelectorAll(".file-row");
        if (rows.length < n) return false;
        return Array.from(rows).every((r) => !["queued", "uploading"].includes(r.getAttribute("data-state")));
      },
      count,
      { timeout: SETTLE_TIMEOUT_MS, polling: 100 },
    );
  } catch (e) {
    const rows = await readRows(page).catch(() => []);
    fail(`${what}: rows did not finish within ${SETTLE_TIMEOUT_MS / 1000} s: ` +
      JSON.stringify(rows.map((r) => ({ name: r.name, state: r.state, error: r.error }))));
  }
  return readRows(page);
}

const STORED_PATH = /^\d{4}\/\d{1,2}\/\d{1,2}\/[0-9a-fA-F-]{36}\.(jpg|png|gif|webp|bmp)$/;

async function fetchBytes(url) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 15_000);
  try {
    const res = await fetch(url, { signal: ctl.signal });
    check(res.status === 200, `GET ${url} answered HTTP ${res.status}, expected 200`);
    return Buffer.from(await res.arrayBuffer());
  } catch (e) {
    if (e instanceof Failure) throw e;
    fail(`GET ${url} failed: ${e.message}`);
  } finally {
    clearTimeout(t);
  }
}

// A stored row: link well formed, bytes identical on this server and on the peer.
async function verifyStored(opts, row, localBytes, what) {
  check(row.state === "done", `${what}: "${row.name}" ended in state ${row.state}: ${row.error || row.status}`);
  check(row.linkText, `${what}: "${row.name}" shows no link`);
  check(row.href === row.linkText, `${what}: "${row.name}" link href ${row.href} differs from its text ${row.linkText}`);
  let url;
  try {
    url = new URL(row.linkText);
  } catch {
    fail(`${what}: "${row.name}" link is not a URL: ${row.linkText}`);
  }
  const storedPath = url.pathname.replace(/^\/+/, "");
  check(STORED_PATH.test(storedPath), `${what}: "${row.name}" link path ${storedPath} is not yyyy/M/d/uuid.ext`);
  check(row.path === storedPath, `${what}: "${row.name}": files[].path ${JSON.stringify(row.path)} in the answer differs from the link's path ${storedPath}`);
  const sha = crypto.createHash("sha256").update(localBytes).digest("hex");
  check(row.sha256.toLowerCase() === sha, `${what}: "${row.name}": files[].sha256 ${JSON.stringify(row.sha256)} in the answer is not the file's SHA-256 ${sha}`);
  const here = await fetchBytes(`${opts.base}/${storedPath}`);
  check(here.equals(localBytes), `${what}: ${opts.base}/${storedPath} differs from the local ${row.name} (${here.length} vs ${localBytes.length} bytes)`);
  const peer = await fetchBytes(`${opts.peerBase}/${storedPath}`);
  check(peer.equals(localBytes), `${what}: the peer's copy ${opts.peerBase}/${storedPath} differs from the local ${row.name} (${peer.length} vs ${localBytes.length} bytes)`);
  check(row.replicas.some((r) => r.ok === "1"),
    `${what}: "${row.name}" shows no .replica with data-ok="1": ${JSON.stringify(row.replicas)}`);
  return storedPath;
}


async function listImages(dir) {
  const names = (await fs.readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isFile() && !d.name.startsWith("."))
    .map((d) => d.name)
    .sort();
  check(names.length > 0, `--images ${dir} holds no files`);
  const files = [];
  for (const name of names) {
    const full = path.join(dir, name);
    files.push({ name, path: path.resolve(full), bytes: await fs.readFile(full) });
  }
  return files;
}

async function run(opts, state) {
  const images = await listImages(opts.images);
  const badBytes = await fs.readFile(opts.bad);
  const badName = path.basename(opts.bad);
  await fs.mkdir(opts.shots, { recursive: true });
  const shot = (name) => path.join(opts.shots, name);
  const pageUrl = `${opts.base}/.m/upload?SecurityKey=${encodeURIComponent(opts.key)}`;
  log(`upload page e2e: ${images.length} image(s), bad file ${badName} (${badBytes.length} bytes)`);

  const browser = await chromium.launch({
    executablePath: opts.chromium,
    args: LAUNCH_ARGS,
    headless: true,
    timeout: 30_000,
  });
  state.browser = browser;
  const errors = [];

  // 1. Without a key: the page asks for a key or a token; a wrong key: the 403 page.
  log("1. page without a key, with a wrong key");
  {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
    const page = await ctx.newPage();
    const res = await page.goto(`${opts.base}/.m/upload`, { waitUntil: "load", timeout: 15_000 });
    check(res, "no response for /.m/upload");
    check(res.status() === 200, `/.m/upload without a key answered HTTP ${res.status()}, expected 200 (the page asks for one)`);
    check(await page.locator("#credential-input").isVisible(), "/.m/upload without a key does not show the key or token field");
    check(!(await page.locator("#drop-zone").isVisible()), "/.m/upload without a key shows the drop zone before a key is given");
    await page.screenshot({ path: shot("01-no-key.png"), fullPage: true });
    ok("GET /.m/upload without a key: 200, the page asks for a key or an upload token");
    const wrong = await page.goto(`${opts.base}/.m/upload?SecurityKey=${encodeURIComponent(opts.key + "-wrong")}`,
      { waitUntil: "load", timeout: 15_000 });
    check(wrong.status() === 403, `/.m/upload with a wrong key answered HTTP ${wrong.status()}, expected 403`);
    const text = await page.evaluate(() => document.body.innerText);
    check(/security ?key/i.test(text) && /密钥/.test(text),
      `the 403 page does not mention the security key in English and Chinese: ${JSON.stringify(text.slice(0, 300))}`);
    check(/\/\.m\/upload\?SecurityKey=/i.test(text), "the 403 page does not show how to open the page (/.m/upload?SecurityKey=...)");
    await page.screenshot({ path: shot("01-forbidden.png"), fullPage: true });
    ok("GET /.m/upload with a wrong key: 403, the page explains the key (en + zh)");
    const aspx = await page.goto(`${opts.base}/.m/upload.aspx?SECURITYKEY=${encodeURIComponent(opts.key)}`,
      { waitUntil: "load", timeout: 15_000 });
    check(aspx.status() === 200, `/.m/upload.aspx?SECURITYKEY=… answered HTTP ${aspx.status()}, expected 200`);
    check(await page.locator("#file-input").count() === 1, "/.m/upload.aspx did not show the upload page");
    ok("GET /.m/upload.aspx?SECURITYKEY=… (upper-case parameter name): 200, the upload page");
    await ctx.close();
  }

  // 2. Desktop: upload every image, check links, bytes here and on the peer, replicas.
  log("2. desktop upload");
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
  let page = await desktop.newPage();
  watchErrors(page, "desktop", errors);
  // Listen for file pickers before the page loads: interception is switched on
  // asynchronously, and a key press right after adding a listener can beat it.
  const choosers = [];
  const onChooser = (c) => choosers.push(c);
  page.on("filechooser", onChooser);
  {
    const res = await page.goto(pageUrl, { waitUntil: "load", timeout: 15_000 });
    check(res.status() === 200, `${pageUrl.replace(opts.key, "***")} answered HTTP ${res.status()}, expected 200`);
    const input = page.locator("#file-input");
    check(await input.count() === 1, "the page has no #file-input");
    check(await input.getAttribute("multiple") !== null, "the file input does not allow multiple files");
    check(/image/.test((await input.getAttribute("accept")) || ""), "the file input does not accept images");
    ok("GET /.m/upload?SecurityKey=…: 200, page loaded");
    const policy = res.headers()["content-security-policy"] || "";
    check(/frame-ancestors 'none'/.test(policy) && /script-src 'self'/.test(policy),
      `the page has no Content-Security-Policy with frame-ancestors and script-src: "${policy}"`);
    await page.waitForFunction(() => !/securitykey=/i.test(location.search), null, { timeout: 5_000 })
      .catch(() => {});
    check(!page.url().includes(opts.key), "the key stays in the address bar after the page read it");
    ok("Content-Security-Policy with frame-ancestors 'none'; the key is taken out of the address bar");
    await page.locator("#cluster:not([hidden]) #cluster-peers li").first().waitFor({ timeout: 10_000 })
      .catch(() => fail("the cluster footer never showed the peers"));
    const footer = await page.locator("#cluster").innerText();
    check(/Server \S+/.test(footer) && /:/.test(footer), `the cluster footer says "${footer}"`);
    ok(`cluster footer: ${footer.replace(/\s+/g, " ").trim()}`);

    // Keyboard: Tab reaches the drop zone, Enter and Space open the file picker.
    let focused = false;
    for (let i = 0; i < 15 && !focused; i++) {
      await page.keyboard.press("Tab");
      focused = await page.evaluate(() => document.activeElement && document.activeElement.id === "drop-zone");
    }
    check(focused, "the drop zone cannot be reached with Tab");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check(outline && outline !== "none", "the focused drop zone has no visible outline");
    for (const keyName of ["Enter", "Space"]) {
      const before = choosers.length;
      await page.keyboard.press(keyName);
      for (let i = 0; i < 50 && choosers.length === before; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      check(choosers.length > before, `${keyName} on the drop zone did not open the file picker`);
      check(choosers[choosers.length - 1].isMultiple(), "the file picker does not allow several files");
    }
    page.off("filechooser", onChooser);
    ok("keyboard: Tab focuses the drop zone (visible outline), Enter and Space open the file picker");

    await page.setInputFiles("#file-input", images.map((f) => f.path));
    const early = await readRows(page);
    check(early.length === images.length, `${images.length} files set, ${early.length} rows shown`);
    check(early.every((r) => r.hasProgress), "a row has no <progress> bar");
    for (const r of early) {
      // The local preview, or already the server's thumbnail if the upload was quick.
      check(r.thumb.startsWith("blob:") || /-t\.jpg$/.test(r.thumb), `"${r.name}" has no preview thumbnail`);
    }
    const rows = await waitSettled(page, images.length, "desktop upload");
    // Each stored row shows the server's thumbnail ({link}-t.jpg), loaded.
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('.file-row[data-state="done"]')).every((r) => {
        const img = r.querySelector("img.thumb-img");
        return img && img.complete && img.naturalWidth > 0 && img.getAttribute("src") === r.getAttribute("data-thumb");
      }),
      null,
      { timeout: 20_000 },
    ).catch(() => fail("a stored row does not show the server's thumbnail (-t.jpg, naturalWidth > 0)"));
    for (const r of await readRows(page)) {
      if (r.state !== "done") continue;
      check(r.thumb === `${r.linkText}-t.jpg`, `"${r.name}" shows ${r.thumb}, expected its thumbnail ${r.linkText}-t.jpg`);
    }
    ok("every stored row shows the server's thumbnail");
    for (const f of images) {
      const row = rows.find((r) => r.name === f.name);
      check(row, `no row for ${f.name}`);
      const p = await verifyStored(opts, row, f.bytes, "desktop upload");
      log(`      ${f.name} -> ${p} (${row.replicas.map((x) => `${x.peer}:${x.ok === "1" ? "ok" : "queued"}`).join(", ")})`);
    }
    ok(`${images.length} image(s) stored; links work; bytes identical on ${opts.base} and on the peer ${opts.peerBase}; replicas shown`);

    // The copy button puts the link on the clipboard.
    await desktop.grantPermissions(["clipboard-read", "clipboard-write"], { origin: opts.base });
    const copyAndRead = async (row) => {
      await row.locator("button.btn-copy").click();
      await row.locator("button.btn-copy.is-copied").waitFor({ timeout: 5_000 })
        .catch(() => fail("the copy button did not report that it copied"));
      return page.evaluate(() => (window.__clipboard || navigator.clipboard).readText());
    };
    const first = page.locator(".file-row").first();
    const clip = await copyAndRead(first);
    const firstLink = await first.locator("a.file-link").textContent();
    check(clip === firstLink, `the copy button put ${JSON.stringify(clip)} on the clipboard, expected the link ${firstLink}`);
    // Plain http on a real host name is not a secure context: no navigator.clipboard there.
    await page.evaluate(() => {
      window.__clipboard = navigator.clipboard;
      Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true });
    });
    const last = page.locator(".file-row").last();
    const clip2 = await copyAndRead(last);
    const lastLink = await last.locator("a.file-link").textContent();
    check(clip2 === lastLink, `without navigator.clipboard the copy button put ${JSON.stringify(clip2)} on the clipboard, expected ${lastLink}`);
    ok("the copy button copies the link (clipboard API, and the fallback without it)");
    await last.locator("button.btn-copy-thumb").click();
    await last.locator("button.btn-copy-thumb.is-copied").waitFor({ timeout: 5_000 })
      .catch(() => fail("the copy thumbnail button did not report that it copied"));
    const clip3 = await page.evaluate(() => (window.__clipboard || navigator.clipboard).readText());
    check(clip3 === `${lastLink}-t.jpg`, `the copy thumbnail button put ${JSON.stringify(clip3)} on the clipboard, expected ${lastLink}-t.jpg`);
    ok("the copy thumbnail button copies {link}-t.jpg");
    assertNoErrors(errors, "desktop upload");
  }

  // 3. A file that is not an image, named .jpg: refused with a clear 415 message.
  log("3. refused file");
  {
    await page.setInputFiles("#file-input", { name: badName, mimeType: "image/jpeg", buffer: badBytes });
    const rows = await waitSettled(page, images.length + 1, "bad file");
    const row = rows.find((r) => r.name === badName);
    check(row, `no row for ${badName}`);
    check(row.state === "error", `${badName} ended in state ${row.state}, expected error`);
    check(row.error.length > 0, `${badName}: .file-error is empty`);
    check(/415/.test(row.error) && /type|类型/i.test(row.error),
      `${badName}: the error does not say it is the type (415): ${JSON.stringify(row.error)}`);
    check(!row.linkText, `${badName} shows a link although it was refused`);
    ok(`${badName} refused: ${JSON.stringify(row.error.split("\n")[0])}`);
    // Chromium itself logs every non-2xx XHR answer; the 415 is the expected one.
    assertNoErrors(errors, "bad file", [/status of 415/]);
    await page.screenshot({ path: shot("02-desktop.png"), fullPage: true });
  }

  // 3b. Progress bars move, at most 3 uploads at once (upload bandwidth throttled).
  log("3b. progress bars and the limit of 3 parallel uploads (throttled network)");
  {
    const p2 = await desktop.newPage();
    watchErrors(p2, "progress", errors);
    const cdp = await desktop.newCDPSession(p2);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 512 * 1024,
    });
    await p2.goto(pageUrl, { waitUntil: "load", timeout: 15_000 });
    const big = [];
    for (let i = 0; i < 4; i++) {
      big.push({ name: `noise-${i + 1}.png`, mimeType: "image/png", buffer: noisePng(320, 320, 1234 + i) });
    }
    await p2.setInputFiles("#file-input", big);
    let rows = await readRows(p2);
    const uploading = rows.filter((r) => r.state === "uploading").length;
    const queued = rows.filter((r) => r.state === "queued").length;
    check(uploading === 3 && queued === 1, `4 files: expected 3 uploading and 1 queued, got ${uploading} uploading and ${queued} queued`);
    ok("at most 3 uploads run at once (4 files: 3 uploading, 1 waiting)");
    const moving = await p2.waitForFunction(() => Array.from(document.querySelectorAll('.file-row[data-state="uploading"]'))
      .some((r) => {
        const v = r.querySelector("progress").value;
        return v > 0 && v < 100 && r.querySelector(".file-percent").textContent === `${v}%`;
      }), null, { timeout: 15_000, polling: 50 }).then(() => true, () => false);
    check(moving, "no progress bar showed a value between 0% and 100% while uploading");
    await p2.screenshot({ path: shot("02b-progress.png"), fullPage: true });
    ok("progress bars move with a percentage while uploading");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
    });
    rows = await waitSettled(p2, big.length, "throttled upload");
    for (const f of big) {
      await verifyStored(opts, rows.find((r) => r.name === f.name) || { name: f.name, state: "missing" }, f.buffer, "throttled upload");
    }
    ok(`the ${big.length} larger images (${big[0].buffer.length} bytes each) are stored and copied to the peer`);
    assertNoErrors(errors, "progress");
    await p2.close();
  }

  // 3c. Cancel while queued and while uploading; retry (uploads held in flight).
  log("3c. cancel and retry");
  {
    const p3 = await desktop.newPage();
    watchErrors(p3, "cancel", errors);
    await p3.goto(pageUrl, { waitUntil: "load", timeout: 15_000 });
    await p3.route("**/do.ashx**", () => {
      // never answered: the uploads stay in flight until cancelled
    });
    const held = [];
    for (let i = 0; i < 5; i++) {
      held.push({ name: `held-${i + 1}-${images[0].name}`, mimeType: "image/png", buffer: images[0].bytes });
    }
    await p3.setInputFiles("#file-input", held);
    let rows = await readRows(p3);
    check(rows.filter((r) => r.state === "uploading").length === 3 && rows.filter((r) => r.state === "queued").length === 2,
      `5 held files: expected 3 uploading and 2 queued, got ${rows.map((r) => r.state).join(",")}`);
    // A queued one first, then whatever is running (a waiting one starts when a slot frees).
    await p3.locator('.file-row[data-state="queued"] button.btn-cancel').last().click();
    check(await p3.locator(".file-row").last().getAttribute("data-state") === "cancelled", "cancelling a waiting file did not mark it cancelled");
    for (let i = 0; i < 20; i++) {
      const b = p3.locator('.file-row:is([data-state="uploading"],[data-state="queued"]) button.btn-cancel');
      if ((await b.count()) === 0) break;
      await b.first().click();
    }
    rows = await readRows(p3);
    check(rows.every((r) => r.state === "cancelled"), `after cancelling all: ${rows.map((r) => r.state).join(",")}`);
    check(await p3.locator('.file-row button.btn-cancel:visible').count() === 0, "cancel buttons still shown after cancelling");
    ok("cancel works for waiting and for running uploads");
    await p3.unroute("**/do.ashx**");
    await p3.locator('.file-row[data-state="cancelled"] button.btn-retry').first().click();
    rows = await waitSettled(p3, held.length, "retry");
    const retried = rows.filter((r) => r.state === "done");
    check(retried.length === 1, `retry: expected one stored row, got ${rows.map((r) => r.state).join(",")}`);
    await verifyStored(opts, retried[0], images[0].bytes, "retry");
    ok("retry after cancel stores the file");
    // Chromium reports the aborted requests as failed requests; nothing else may appear.
    assertNoErrors(errors, "cancel", [/request failed: POST \S*\/do\.ashx\?\S* \(net::ERR_ABORTED\)/]);
    await p3.close();
  }
  // 3d. Drag and drop onto the drop zone.
  log("3d. drag and drop");
  {
    const p4 = await desktop.newPage();
    watchErrors(p4, "drop", errors);
    await p4.goto(pageUrl, { waitUntil: "load", timeout: 15_000 });
    const f = images[0];
    const dt = await p4.evaluateHandle(({ name, b64 }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const d = new DataTransfer();
      d.items.add(new File([bytes], name, { type: "" }));
      return d;
    }, { name: `dropped-${f.name}`, b64: f.bytes.toString("base64") });
    await p4.dispatchEvent("#drop-zone", "dragenter", { dataTransfer: dt });
    await p4.dispatchEvent("#drop-zone", "dragover", { dataTransfer: dt });
    check(await p4.locator("#drop-zone.is-dragover").count() === 1, "the drop zone does not show that a file is dragged over it");
    await p4.dispatchEvent("#drop-zone", "drop", { dataTransfer: dt });
    const rows = await waitSettled(p4, 1, "drop");
    check(rows.length === 1, `one file dropped, ${rows.length} rows shown`);
    await verifyStored(opts, rows[0], f.bytes, "drop");
    ok("a file dropped on the drop zone is stored");
    assertNoErrors(errors, "drop");
    await p4.close();
  }
  await desktop.close();

  // 4. Phone width, Chinese: upload one image, no horizontal scrolling.
  log("4. phone width (375 px), zh-CN");
  {
    const phone = await browser.newContext({
      viewport: { width: 375, height: 740 },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
      locale: "zh-CN",
    });
    page = await phone.newPage();
    watchErrors(page, "phone", errors);
    // The parameter name is case-insensitive.
    const res = await page.goto(`${opts.base}/.m/upload?securitykey=${encodeURIComponent(opts.key)}`,
      { waitUntil: "load", timeout: 15_000 });
    check(res.status() === 200, `/.m/upload?securitykey=… (lower case) answered HTTP ${res.status()}, expected 200`);
    const title = await page.locator("h1").textContent();
    check(/[\u4e00-\u9fff]/.test(title), `zh-CN browser: the title is not Chinese: ${title}`);
    const img = images[images.length - 1];
    await page.setInputFiles("#file-input", img.path);
    const rows = await waitSettled(page, 1, "phone upload");
    await verifyStored(opts, rows[0], img.bytes, "phone upload");
    const widths = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      inner: window.innerWidth,
    }));
    check(widths.scroll <= widths.inner,
      `phone: the page scrolls sideways (scrollWidth ${widths.scroll} > innerWidth ${widths.inner})`);
    ok(`phone: Chinese text, one image stored, no horizontal scroll (scrollWidth ${widths.scroll} <= ${widths.inner})`);
    await page.screenshot({ path: shot("03-phone.png"), fullPage: true });
    assertNoErrors(errors, "phone");
    await phone.close();
  }

  await browser.close();
  state.browser = null;
}

async function main() {
  const state = { browser: null };
  const timer = setTimeout(() => {
    console.error(`FAIL: the test took longer than ${OVERALL_TIMEOUT_MS / 1000} s`);
    if (state.browser) state.browser.close().catch(() => {});
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  let code = 0;
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
    await run(opts, state);
    log(`\nupload page e2e: ${passed.length} passed, 0 failed`);
    log(`screenshots in ${opts.shots}: 01-no-key.png 01-forbidden.png 02-desktop.png 02b-progress.png 03-phone.png`);
  } catch (e) {
    code = 1;
    const msg = e instanceof Failure ? e.message : (e && e.stack) || String(e);
    console.error(`\nFAIL: ${msg}`);
    log(`upload page e2e: ${passed.length} passed, 1 failed`);
  } finally {
    if (state.browser) await state.browser.close().catch(() => {});
    clearTimeout(timer);
  }
  process.exit(code);
}

main();
