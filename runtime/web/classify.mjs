#!/usr/bin/env node
// classify.mjs: classify lines of stdin with an edgedistill web folder under Node.js (20+).
//
// Install transformers.js once, beside this script (in the web folder) or anywhere else:
//   npm install --ignore-scripts --no-audit --no-fund @huggingface/transformers@4.3.1
// (--ignore-scripts: onnxruntime-node's install script downloads from NuGet and fails offline;
//  its CPU binary is already in the npm package. ONNXRUNTIME_NODE_INSTALL=skip does the same.)
// If it is installed elsewhere, point EDGEDISTILL_NODE_MODULES at the folder holding that node_modules.
//
// Usage:
//   node classify.mjs [WEB_FOLDER] [--threads N] [--batch-size N] < texts.txt > predictions.jsonl
// WEB_FOLDER (default: this script's folder) holds model/ as written by `edgedistill web PACKAGE OUTDIR`.
// Each non-empty line of stdin is one text; each line of stdout is
//   {"text": ..., "label": ..., "score": ..., "probs": {"label": probability, ...}}
// in input order ({"text": ..., "labels": [{"label": ..., "score": ...}, ...], "probs": {...}} for a multi-label
// model: the labels that reach their thresholds, best first). Texts are batched and padded as the Python runtime's
// predict_proba does.

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadClassifier } from "./edgedistill.mjs";

function parseArgs(argv) {
  const args = { root: path.dirname(fileURLToPath(import.meta.url)), threads: undefined, batchSize: 32 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const int = (name) => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${name} needs an integer >= 1, got ${argv[i]}`);
      return v;
    };
    if (a === "--threads") args.threads = int(a);
    else if (a === "--batch-size") args.batchSize = int(a);
    else if (a === "-h" || a === "--help") args.help = true;
    else if (a.startsWith("-")) throw new Error(`unknown option ${a}`);
    else args.root = path.resolve(a);
  }
  return args;
}

async function importTransformers() {
  const modules = process.env.EDGEDISTILL_NODE_MODULES;
  if (modules) return createRequire(path.join(path.resolve(modules), "noop.js"))("@huggingface/transformers");
  return import("@huggingface/transformers");
}

async function readLines() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8").split(/\r?\n/).filter((line) => line.trim() !== "");
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write("usage: node classify.mjs [WEB_FOLDER] [--threads N] [--batch-size N] < texts.txt\n");
    return;
  }
  const transformers = await importTransformers();
  const clf = await loadClassifier({ transformers, root: args.root, threads: args.threads });
  const texts = await readLines();
  const results = texts.length ? await clf.classify(texts, { batchSize: args.batchSize }) : [];
  const lines = results.map((r, i) => JSON.stringify({ text: texts[i], ...r }));
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "");
}

main().catch((err) => {
  process.stderr.write(`classify.mjs: ${err?.stack ?? err}\n`);
  process.exit(1);
});
