#!/usr/bin/env node
// Uploads from a browser without a key in the address, in a real Chromium:
//
//   A. the upload page, its links on a configured `domain` (another origin
//      than the page's): it uploads and shows every thumbnail, with no CSP
//      violation and no console error;
//   B. a site's own page on another origin (site/index.html, served here by a
//      second listener) uploads several images through CORS and shows their
//      links and thumbnails, drawn on a canvas, with no console error;
//   C. the same page with a token minted for another origin is refused and
//      shows the server's refusal;
//   D. the upload page opened without a credential asks for one; the key
//      typed into its field uploads, and so does a token (which the page
//      tells from a key by its form, and shows until when it is valid).
//
// Usage:
//   node tests/browser/origins.mjs --base URL --domain URL --key KEY
//     --site-port PORT --kid ID --secret SECRET --images DIR --shots DIR
//     [--chromium PATH]
//
//   --base           the server the pages upload to (http://127.0.0.1:PORT)
//   --domain         its configured `domain`: the same server under another origin
//   --key            its security key (D types it in)
//   --site-port      where the site's own page is served (http://127.0.0.1:PORT,
//                    listed in the server's [cors] allowed_origins)
//   --kid, --secret  one of the server's [auth] token_secrets: every upload
//                    token is minted here with it (SPEC §12), as a site's
//                    back end would
//
// Exit code 0 when every check passed, 1 with a message on the first failure.

import fs from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import crypto from "node:crypto";
import { chromium } from "playwright-core";

const OVERALL_TIMEOUT_MS = 120_000;
const SETTLE_TIMEOUT_MS = 45_000;
const LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const here = path.dirname(fileURLToPath(import.meta.url));

class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg); };
const check = (cond, msg) => { if (!cond) fail(msg); };
const passed = [];
const ok = (msg) => { passed.push(msg); console.log(`  ok  ${msg}`); };

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    check(argv[i].startsWith("--") && argv[i + 1] !== undefined, `bad arguments near ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ["base", "domain", "key", "site-port", "kid", "secret", "images", "shots"]) {
    check(out[name], `--${name} is required`);
  }
  out.chromium = out.chromium || process.env.CHROMIUM || "/usr/bin/chromium";
  const site = `http://127.0.0.1:${out["site-port"]}`;
  out.token = mint(out.kid, out.secret, {});
  out.siteToken = mint(out.kid, out.secret, { origin: site, max_files: 10 });
  out.foreignToken = mint(out.kid, out.secret, { origin: "https://elsewhere.example" });
  return out;
}

// An upload token as SPEC §12 defines it: base64url(claims) "."
// base64url(HMAC-SHA256(secret, base64url(claims))), without padding.
function mint(kid, secret, claims) {
  const body = Buffer.from(JSON.stringify({
    kid,
    exp: Math.floor(Date.now() / 1000) + 600,
    jti: crypto.randomBytes(16).toString("hex"),
    ...claims,
  })).toString("base64url");
  return `${body}.${crypto.createHmac("sha256", secret).update(body).digest("base64url")}`;
}

// Console errors, page errors, failed requests and CSP violations of a page.
async function watch(page, label, sink) {
  page.on("console", (msg) => {
    if (msg.type() === "error") sink.push(`${label}: console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => sink.push(`${label}: page error: ${err.message}`));
  page.on("requestfailed", (req) => sink.push(`${label}: request failed: ${req.method()} ${req.url()} (${req.failure()?.errorText})`));
  await page.exposeFunction("__violation", (text) => sink.push(`${label}: CSP violation: ${text}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__violation(`${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
}

function assertClean(sink, what) {
  check(sink.length === 0, `${what}:\n    ${sink.join("\n    ")}`);
}

async function images(dir) {
  const names = (await fs.readdir(dir)).filter((n) => !n.startsWith(".")).sort();
  check(names.length >= 2, `--images ${dir}: at least two images needed`);
  return names.map((n) => path.resolve(dir, n));
}

// The upload page's rows, once none is queued or uploading.
async function settledRows(page, count, what) {
  await page.waitForFunction((n) => {
    const rows = document.querySelectorAll(".file-row");
    return rows.length >= n && Array.from(rows).every((r) => !["queued", "uploading"].includes(r.dataset.state));
  }, count, { timeout: SETTLE_TIMEOUT_MS, polling: 100 }).catch(() => fail(`${what}: the uploads did not finish`));
  return page.$$eval(".file-row", (rows) => rows.map((r) => ({
    name: r.dataset.name,
    state: r.dataset.state,
    error: r.querySelector(".file-error").textContent,
    link: r.querySelector("a.file-link").textContent,
    thumb: r.dataset.thumb || "",
  })));
}

// Every stored row shows the server's thumbnail, loaded.
async function thumbnailsShown(page, what, errors) {
  await page.waitForFunction(() => Array.from(document.querySelectorAll('.file-row[data-state="done"]')).every((r) => {
    const img = r.querySelector("img.thumb-img");
    return img && img.complete && img.naturalWidth > 0 && img.getAttribute("src") === r.dataset.thumb;
  }), null, { timeout: 20_000 })
    .catch(() => fail(`${what}: a stored row does not show its server thumbnail:\n    ${errors.join("\n    ")}`));
}

// A. The upload page with a configured domain, the token from #token=.
async function uploadPage(browser, opts, files) {
  const errors = [];
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
  const page = await ctx.newPage();
  await watch(page, "upload page", errors);
  const sent = [];
  page.on("request", (req) => sent.push({ url: req.url(), headers: req.headers() }));
  const url = `${opts.base}/.m/upload#token=${opts.token}`;
  const res = await page.goto(url, { waitUntil: "load", timeout: 15_000 });
  check(res.status() === 200, `${url} answered HTTP ${res.status()}`);
  check(!(await page.locator("#credential-form").isVisible()), "the page asks for a credential although the address has one");
  await page.setInputFiles("#file-input", files);
  const rows = await settledRows(page, files.length, "upload page");
  for (const r of rows) {
    check(r.state === "done", `upload page: ${r.name} ended ${r.state}: ${r.error}`);
    check(r.link.startsWith(`${opts.domain}/`), `upload page: the link ${r.link} is not on the domain ${opts.domain}`);
  }
  await thumbnailsShown(page, "upload page", errors);
  await page.screenshot({ path: path.join(opts.shots, "10-domain-thumbnails.png"), fullPage: true });
  assertClean(errors, "upload page with a configured domain");
  ok(`upload page: ${rows.length} images stored, thumbnails from ${opts.domain} shown, no CSP violation, no console error`);
  const address = await page.evaluate(() => location.href);
  check(!address.includes(opts.token), `the token stays in the address bar: ${address}`);
  check(sent.every((s) => !s.url.includes(opts.token)), "the token went into a URL");
  const uploads = sent.filter((s) => s.url.includes("action=upload"));
  check(uploads.length === files.length && uploads.every((s) => s.headers.authorization === `Bearer ${opts.token}`),
    "an upload did not carry the token in Authorization: Bearer");
  ok("#token=: taken out of the address bar, sent only as Authorization: Bearer, never in a URL");
  await ctx.close();
}

// The site's own page, served from another origin by a second listener.
function serveSite(port, fill) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(async (req, res) => {
      if (req.url !== "/") {
        res.writeHead(404).end();
        return;
      }
      const page = await fs.readFile(path.join(here, "site", "index.html"), "utf8");
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
      res.end(page.replace(/\{\{(\w+)\}\}/g, (all, name) => fill[name] ?? ""));
    });
    server.on("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

async function sitePage(browser, opts, files, token, what) {
  const fill = { SERVER: opts.base, TOKEN: token };
  const server = await serveSite(Number(opts["site-port"]), fill);
  const errors = [];
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await ctx.newPage();
  try {
    await watch(page, what, errors);
    const site = `http://127.0.0.1:${opts["site-port"]}/`;
    await page.goto(site, { waitUntil: "load", timeout: 15_000 });
    await page.setInputFiles("input[type=file]", files);
    await page.waitForFunction((n) => {
      const rows = document.querySelectorAll("#links li");
      return rows.length >= n && Array.from(rows).every((r) => r.dataset.state !== "uploading");
    }, files.length, { timeout: SETTLE_TIMEOUT_MS, polling: 100 })
      .catch(() => fail(`${what}: the uploads did not finish (errors: ${errors.join("; ")})`));
    const rows = await page.$$eval("#links li", (lis) => lis.map((li) => ({
      name: li.dataset.name,
      state: li.dataset.state,
      canvas: li.dataset.canvas,
      text: li.textContent,
      link: li.querySelector("a")?.textContent || "",
      thumb: li.querySelector("img")?.naturalWidth || 0,
    })));
    await page.screenshot({ path: path.join(opts.shots, `11-${what.replace(/\W+/g, "-")}.png`), fullPage: true });
    return { rows, errors };
  } finally {
    await ctx.close();
    await new Promise((r) => server.close(r));
  }
}

// D. No credential in the address: the page asks, what is typed in uploads.
async function typedCredential(browser, opts, file, credential, what) {
  const errors = [];
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
  const page = await ctx.newPage();
  await watch(page, what, errors);
  const sent = [];
  page.on("request", (req) => sent.push(req.headers()));
  const res = await page.goto(`${opts.base}/.m/upload`, { waitUntil: "load", timeout: 15_000 });
  check(res.status() === 200, `/.m/upload without a credential answered HTTP ${res.status()}, expected 200`);
  check(await page.locator("#credential-input").isVisible(), "no field for a key or a token");
  await page.fill("#credential-input", credential);
  await page.press("#credential-input", "Enter");
  check(await page.locator("#drop-zone").isVisible(), "the drop zone is not shown after a key was entered");
  check(!(await page.locator("#credential-form").isVisible()), "the field stays after a key was entered");
  await page.setInputFiles("#file-input", file);
  const rows = await settledRows(page, 1, what);
  check(rows[0].state === "done", `${what}: ${rows[0].name} ended ${rows[0].state}: ${rows[0].error}`);
  assertClean(errors, what);
  const isToken = credential !== opts.key;
  const upload = sent.find((h) => h.authorization || h["x-security-key"]);
  check(upload && (isToken ? upload.authorization === `Bearer ${credential}` : upload["x-security-key"] === credential),
    `${what}: the upload did not carry it in ${isToken ? "Authorization: Bearer" : "X-Security-Key"}`);
  if (isToken) {
    const info = await page.locator("#credential-info").textContent();
    check(/valid until/.test(info) && /10 files/.test(info), `${what}: the page does not show the token's limits: ${info}`);
  }
  ok(`no credential in the address: the page asks for one; ${what} uploads`);
  await ctx.close();
}

async function run(opts, state) {
  const files = await images(opts.images);
  await fs.mkdir(opts.shots, { recursive: true });
  const browser = await chromium.launch({ executablePath: opts.chromium, args: LAUNCH_ARGS, headless: true, timeout: 30_000 });
  state.browser = browser;

  console.log("A. the upload page, links on a configured domain");
  await uploadPage(browser, opts, files);

  console.log("B. a site's own page on another origin");
  const b = await sitePage(browser, opts, files, opts.siteToken, "site page");
  assertClean(b.errors, "site page");
  for (const r of b.rows) {
    check(r.state === "done", `site page: ${r.name} ended ${r.state}: ${r.text}`);
    check(/^http:\/\/\S+\/\d{4}\/\d{1,2}\/\d{1,2}\/[0-9a-f-]{36}\.\w+$/.test(r.link), `site page: ${r.name} shows no link: ${r.text}`);
    check(r.thumb > 0, `site page: ${r.name} shows no thumbnail`);
    check(r.canvas === "ok", `site page: ${r.name}'s thumbnail could not be read on a canvas`);
  }
  ok(`site page on another origin: ${b.rows.length} images stored through CORS, links and thumbnails shown, thumbnails readable on a canvas, no console error`);

  console.log("C. the site's page with a token for another origin");
  const c = await sitePage(browser, opts, files.slice(0, 1), opts.foreignToken, "foreign token");
  const refused = c.rows[0];
  check(refused.state === "refused", `a token for another origin: ${refused.state}: ${refused.text}`);
  check(/403/.test(refused.text) && /origin/i.test(refused.text), `the page does not show the server's refusal: ${refused.text}`);
  // Chromium logs every non-2xx answer as a console error; that one is expected.
  assertClean(c.errors.filter((e) => !/status of 403/.test(e)), "foreign token");
  ok(`a token for another origin is refused, the page shows why: ${JSON.stringify(refused.text)}`);

  console.log("D. the upload page without a credential");
  await typedCredential(browser, opts, files[0], opts.key, "a key typed in");
  await typedCredential(browser, opts, files[0], mint(opts.kid, opts.secret, { max_files: 10 }), "a token typed in");

  await browser.close();
  state.browser = null;
}

async function main() {
  const state = { browser: null };
  const timer = setTimeout(() => {
    console.error(`FAIL: the test took longer than ${OVERALL_TIMEOUT_MS / 1000} s`);
    state.browser?.close().catch(() => {});
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  let code = 0;
  try {
    await run(parseArgs(process.argv.slice(2)), state);
    console.log(`\norigins e2e: ${passed.length} passed, 0 failed`);
  } catch (e) {
    code = 1;
    console.error(`\nFAIL: ${e instanceof Failure ? e.message : e?.stack || e}`);
    console.log(`origins e2e: ${passed.length} passed, 1 failed`);
  } finally {
    await state.browser?.close().catch(() => {});
    clearTimeout(timer);
  }
  process.exit(code);
}

main();
