#!/usr/bin/env node
// headless.mjs: open an edgedistill web page in headless Chromium and classify or time texts there.
// Used by tests/runtime/test_webexport.py and benchmarks/web_bench.py; handy to smoke-test a web folder in CI.
//
// Needs playwright-core (it drives the system's Chromium; it never downloads a browser):
//   npm install --ignore-scripts --no-audit --no-fund playwright-core@1.65.1
// (EDGEDISTILL_NODE_MODULES: the folder holding that node_modules, when it is not beside this script.)
//
// Usage: node headless.mjs < job.json > result.json, where job.json is
//   {"url": "http://localhost:8000/index.html", "chromium": "/usr/bin/chromium",
//    "mode": "classify" | "bench" | "screenshot",
//    "texts": [...], "batch_size": 32,              classify: all texts, batched as the Python runtime does
//    "ui_text": "...",                              classify: then type this into the page and read its result
//    "warmup_s": 2, "rounds": 5, "parity": false,   bench: warm up by time, then each text alone, `rounds` times
//                                                    (parity: then classify all texts too, as in classify)
//    "screenshot": "page.png", "width": 760, "height": 640}
// Every request that is not to localhost / 127.0.0.1 is blocked and listed in the result ("blocked").

import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const modules = process.env.EDGEDISTILL_NODE_MODULES;
const require = createRequire(modules ? path.join(path.resolve(modules), "noop.js") : import.meta.url);
const { chromium } = require("playwright-core");

// Chromium as root in a container, quiet and offline (see SOURCES.md).
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];

async function readJob() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function isLocal(url) {
  const u = new URL(url);
  if (u.protocol === "data:" || u.protocol === "blob:") return true;
  return ["localhost", "127.0.0.1", "[::1]"].includes(u.hostname);
}

/** Type a text into the demo page (and press Classify, or let it classify as you type); read what it shows. */
async function typeIn(page, text, { click = true } = {}) {
  await page.fill("#text", text);
  if (click) await page.click("#go");
  await page.waitForFunction((t) => document.querySelector("#log li span:last-child")?.title === t, text);
  return page.evaluate(() => ({
    label: document.querySelector("#label").textContent,
    latency: document.querySelector("#latency").textContent,
    bars: [...document.querySelectorAll("#bars .row")].map((r) => ({
      name: r.querySelector(".name").textContent, pct: r.querySelector(".pct").textContent,
      best: r.classList.contains("best") })),
  }));
}

async function main() {
  const job = await readJob();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "edgedistill-chromium-"));
  const blocked = [], errors = [];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: job.chromium ?? "/usr/bin/chromium", headless: true, args: FLAGS,
    viewport: { width: job.width ?? 760, height: job.height ?? 640 },
  });
  try {
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (isLocal(url)) return route.continue();
      blocked.push(url);
      return route.abort("blockedbyclient");
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

    const started = Date.now();
    await page.goto(job.url, { waitUntil: "load" });
    const info = await page.evaluate(() => window.edgedistill.ready);
    const readyMs = Date.now() - started;  // navigation start -> model ready (page, scripts, WASM, model)
    const result = { info, ready_ms: readyMs, user_agent: await page.evaluate(() => navigator.userAgent) };

    if (job.mode === "classify") {
      result.results = await page.evaluate(([texts, batchSize]) => window.edgedistill.classify(texts, { batchSize }),
                                           [job.texts, job.batch_size ?? 32]);
      if (job.ui_text !== undefined) result.ui = await typeIn(page, job.ui_text);
    } else if (job.mode === "bench") {
      result.bench = await page.evaluate(async ([texts, warmupS, rounds]) => {
        const one = (t) => window.edgedistill.classify([t]);
        const w0 = performance.now();
        let warm = 0;
        while (performance.now() - w0 < warmupS * 1000) { await one(texts[warm % texts.length]); warm++; }
        const ms = [];
        for (let r = 0; r < rounds; r++) {
          for (const t of texts) { const t0 = performance.now(); await one(t); ms.push(performance.now() - t0); }
        }
        return { warmup_calls: warm, latencies_ms: ms };
      }, [job.texts, job.warmup_s ?? 2, job.rounds ?? 5]);
      if (job.parity) {  // then all texts at once, batched as the Python runtime batches them
        result.results = await page.evaluate(([texts, batchSize]) => window.edgedistill.classify(texts, { batchSize }),
                                             [job.texts, job.batch_size ?? 32]);
      }
    } else if (job.mode === "screenshot") {
      if (job.text) await typeIn(page, job.text, { click: false });
      await page.screenshot({ path: job.screenshot, fullPage: false });
    } else {
      throw new Error(`unknown mode ${job.mode}`);
    }
    result.blocked = blocked;
    result.errors = errors;
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`headless.mjs: ${err?.stack ?? err}\n`);
  process.exit(1);
});
