// edgedistill.mjs: an edgedistill web folder's classifier through transformers.js, in a page or in Node.js.
//
//   import { loadClassifier } from "./edgedistill.mjs";
//   const clf = await loadClassifier();                      // ./model/ beside this file; WASM from ./vendor/
//   const [top] = await clf.classify(["What a lovely film"]); // {label, score, probs: {label: probability}}
//
// A multi-label package (config.json's edgedistill.task "multi_label") gives each text
// {labels: [{label, score}, ...], probs}: every label whose sigmoid(logit / temperature) reaches its threshold
// (edgedistill.thresholds), best first, possibly none; probs holds each label's own probability (not summing to 1).
//
// Texts are tokenized as the Python runtime (runtime/classifier.py) tokenizes them, so that both
// give the same probabilities: truncated to config.max_length tokens keeping the closing special
// token(s) (transformers.js would cut them off), sorted by length, cut into batches of `batchSize`
// and padded to the longest text of each batch. Nothing is fetched from outside the folder.
// A package that reads long texts otherwise (config.json's edgedistill.long_texts, runtime/views.py) cuts them
// the same way here (windowsOf): "head+tail" (the first quarter and the last three quarters of the room) or
// "chunks" (windows sharing chunk_stride tokens, at most max_chunks, whose probabilities are pooled: the mean, or
// for a multi-label model the maximum per label; a batch of texts' windows run batchSize at a time).
//
// Two kinds of model (config.json's edgedistill.kind): "transformer", loaded by transformers.js's
// sequence-classification class for its model_type, and "static" (the static student: a token table, a
// masked mean and a head), which no class of transformers.js describes: its ONNX graph runs as it is through
// transformers.js's generic PreTrainedModel (the same onnxruntime, dtype, device and threads), fed exactly
// the inputs the graph declares.

const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";

/**
 * Probabilities of one row of logits, as the Python runtime's predict_proba gives them: softmax(logits / temperature
 * + biases), or for a multi-label model sigmoid(logits / temperature), each label on its own.
 */
export function probabilitiesOf(logits, { temperature = 1, biases = null, multiLabel = false } = {}) {
  const row = Array.from(logits, (x, j) => x / temperature + (biases ? biases[j] : 0));
  if (multiLabel) return row.map((x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))));
  const top = Math.max(...row), e = row.map((x) => Math.exp(x - top)), sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

export const HEAD_SHARE = 0.25;  // runtime/views.py's: head+tail's share of the room taken from the text's start

/** Python's round() of a number >= 0: halves to the even neighbour (Math.round takes them up). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return x - Math.floor(x) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * A text's token ids as the windows the Python runtime reads (runtime/views.py's view(), exactly): `lead` special
 * tokens open `ids` and `trail` close them; mode "truncate" and "head+tail" give one window, "chunks" one per
 * stretch of the text (neighbours sharing `stride` tokens, at most `maxChunks`). A text within `maxLength` tokens
 * is one window, unchanged, in every mode.
 */
export function windowsOf(ids, { maxLength, mode = "truncate", lead = 1, trail = 1, stride = 32, maxChunks = 8 }) {
  if (ids.length <= maxLength) return [Array.from(ids)];
  const start = ids.slice(0, lead), body = ids.slice(lead, ids.length - trail);
  const end = trail ? ids.slice(ids.length - trail) : [];
  const room = maxLength - lead - trail;
  if (mode === "truncate") return [start.concat(body.slice(0, room), end)];
  if (mode === "head+tail") {
    const head = roundHalfEven(room * HEAD_SHARE);
    return [start.concat(body.slice(0, head), body.slice(body.length - (room - head)), end)];
  }
  if (mode !== "chunks") throw new Error(`long_texts=${JSON.stringify(mode)}: choose truncate, head+tail or chunks`);
  const step = Math.max(1, room - Math.min(stride, room - 1)), out = [];
  for (let s = 0; s < body.length; s += step) {
    out.push(start.concat(body.slice(s, s + room), end));
    if (s + room >= body.length || out.length === maxChunks) break;
  }
  return out;
}

/** One text's probabilities from its windows' rows: their mean, or for a multi-label model their maximum per
 * label (as the Python runtime pools chunks). */
export function poolRows(rows, { multiLabel = false } = {}) {
  if (rows.length === 1) return rows[0];
  return rows[0].map((_, j) => multiLabel ? Math.max(...rows.map((r) => r[j]))
    : rows.reduce((sum, r) => sum + r[j], 0) / rows.length);
}

/** A multi-label model's answer for one row of probabilities: [{label, score}] of the labels that reach their
 * thresholds, best first (ties in label order), possibly empty. */
export function labelsOf(probs, labels, thresholds) {
  return labels.map((label, j) => ({ label, score: probs[j], j }))
    .filter((r) => r.score >= thresholds[r.j])
    .sort((a, b) => b.score - a.score || a.j - b.j)
    .map(({ label, score }) => ({ label, score }));
}

/**
 * Load the classifier of a web folder.
 * @param {object} [options]
 * @param {object} [options.transformers] the transformers.js module (default: ./vendor/transformers.min.js;
 *   Node.js passes `await import("@huggingface/transformers")`)
 * @param {string} [options.root] the web folder (default: the folder of this file): a URL path in a
 *   browser (a full http URL makes transformers.js skip the tokenizer), a file path in Node.js
 * @param {string} [options.model] the model folder inside root (default "model")
 * @param {number} [options.threads] WASM threads in a browser (more than one needs cross-origin
 *   isolation), intra-op threads in Node.js; default: onnxruntime's choice
 * @param {string} [options.dtype] default: config.json's transformers.js_config.dtype ("fp32" or "q8")
 * @param {function} [options.onProgress] transformers.js's progress_callback
 */
export async function loadClassifier({ transformers, root, model = "model", threads, dtype, device,
                                       onProgress } = {}) {
  const started = performance.now();
  transformers ??= await import(new URL("./vendor/transformers.min.js", import.meta.url).href);
  const { env, AutoConfig, AutoTokenizer, AutoModelForSequenceClassification, PreTrainedModel, Tensor } = transformers;
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useWasmCache = false;
  if (IS_NODE) {
    const { fileURLToPath } = await import("node:url");
    root ??= fileURLToPath(new URL("./", import.meta.url));
    env.useFSCache = false;
  } else {
    root ??= new URL("./", import.meta.url).pathname;
    env.useBrowserCache = false;
    const wasm = env.backends.onnx.wasm;
    wasm.wasmPaths = {
      mjs: new URL("./vendor/ort-wasm-simd-threaded.asyncify.mjs", import.meta.url).href,
      wasm: new URL("./vendor/ort-wasm-simd-threaded.asyncify.wasm", import.meta.url).href,
    };
    wasm.proxy = false;
    if (threads) wasm.numThreads = threads;
  }
  env.localModelPath = root.endsWith("/") ? root : root + "/";

  const config = await AutoConfig.from_pretrained(model, { progress_callback: onProgress });
  const cfg = config.edgedistill;
  if (!cfg) throw new Error(`${root}${model}/config.json has no "edgedistill" section: rebuild the folder with ` +
                            "`edgedistill web PACKAGE OUTDIR`");
  const kind = cfg.kind ?? "transformer";  // folders written before the static kind: transformers only
  const Model = { transformer: AutoModelForSequenceClassification, static: PreTrainedModel }[kind];
  if (!Model) throw new Error(`${root}${model}/config.json: unknown edgedistill.kind ${JSON.stringify(kind)}`);
  const tokenizer = await AutoTokenizer.from_pretrained(model, { progress_callback: onProgress });
  const net = await Model.from_pretrained(model, {
    config,
    dtype,
    device: device ?? (IS_NODE ? "cpu" : "wasm"),
    session_options: IS_NODE && threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : undefined,
    progress_callback: onProgress,
  });
  const inputNames = net.sessions.model.inputNames;  // transformers.js feeds the graph these, picked by name
  const expected = cfg.input_names ?? inputNames;
  if (inputNames.length !== expected.length || !expected.every((n) => inputNames.includes(n))) {
    throw new Error(`${root}${model}: the ONNX model takes ${inputNames.join(", ")} but config.json says ` +
                    `${expected.join(", ")}`);
  }
  const outputName = cfg.output_name ?? "logits";
  const labels = cfg.labels;
  const after = cfg.special_tokens_after;
  const temperature = cfg.temperature ?? 1;  // folders written before calibration: the raw softmax
  const biases = cfg.biases ?? null;  // per-class decision biases, added after the temperature
  const runsAlone = cfg.runs_alone ?? false;
  const multiLabel = cfg.task === "multi_label";  // folders written before the task: single-label
  const thresholds = multiLabel ? (cfg.thresholds ?? labels.map(() => 0.5)) : null;
  const scoring = { temperature, biases, multiLabel };
  const longTexts = cfg.long_texts ?? "truncate";  // folders written before the field: truncated
  const reading = { maxLength: cfg.max_length, mode: longTexts, lead: cfg.special_tokens_before ?? 1, trail: after,
                    stride: cfg.chunk_stride, maxChunks: cfg.max_chunks };  // chunks: both always written

  /** Each text's windows of token ids (windowsOf): one a text, but for chunks. */
  function windows(texts) {
    return tokenizer(texts, { return_tensor: false }).input_ids.map((ids) => windowsOf(ids, reading));
  }

  /** input_ids and attention_mask for `texts` (one batch), padded to its longest text (for chunks: one row a
   * window). */
  function encode(texts) {
    return pad(windows(texts).flat());
  }

  /** input_ids and attention_mask of rows of token ids, padded to the longest. */
  function pad(rows) {
    const n = rows.length, width = Math.max(...rows.map((r) => r.length));
    const ids = new BigInt64Array(n * width).fill(BigInt(cfg.pad_token_id));
    const mask = new BigInt64Array(n * width);
    rows.forEach((r, i) => r.forEach((id, j) => { ids[i * width + j] = BigInt(id); mask[i * width + j] = 1n; }));
    return { input_ids: new Tensor("int64", ids, [n, width]), attention_mask: new Tensor("int64", mask, [n, width]) };
  }

  /** Probabilities (probabilitiesOf) for one batch of rows of token ids, one array per row. */
  async function probabilities(rows) {
    const logits = (await net(pad(rows)))[outputName];  // transformer: SequenceClassifierOutput; static: raw
    if (!logits) throw new Error(`the model gives no output named ${outputName}`);
    const k = logits.dims[1], data = logits.data;
    if (k !== labels.length) throw new Error(`the model gives ${k} logits for ${labels.length} labels`);
    return rows.map((_, i) => probabilitiesOf(data.subarray(i * k, (i + 1) * k), scoring));
  }

  /**
   * Classify texts: [{label, score, probs}] in input order ([{labels: [{label, score}], probs}] for a multi-label
   * model: the labels that reach their thresholds, best first, possibly none). Batches as the Python runtime's
   * predict_proba(texts, batch_size): stable sort by length (in code points), then slices; a model
   * whose answers would depend on batch-mates (config runs_alone: dynamic int8) takes one text per run.
   * Chunks: a slice's windows run batchSize at a time (one a run for runs_alone), each text's rows then pooled.
   */
  async function classify(texts, { batchSize = 32 } = {}) {
    if (runsAlone) batchSize = 1;
    if (!Array.isArray(texts)) throw new TypeError("classify() takes an array of strings");
    texts.forEach((t, i) => { if (typeof t !== "string") throw new TypeError(`texts[${i}] is not a string`); });
    const out = new Array(texts.length);
    const order = texts.length === 1 ? [0]
      : texts.map((t, i) => [[...t].length, i]).sort((a, b) => a[0] - b[0]).map(([, i]) => i);
    for (let s = 0; s < order.length; s += batchSize) {
      const idx = order.slice(s, s + batchSize);
      const perText = windows(idx.map((i) => texts[i])), rows = perText.flat(), probs = [];
      for (let r = 0; r < rows.length; r += batchSize) probs.push(...await probabilities(rows.slice(r, r + batchSize)));
      let first = 0;
      idx.forEach((i, j) => {
        const p = poolRows(probs.slice(first, first += perText[j].length), scoring);
        const byLabel = Object.fromEntries(labels.map((l, c) => [l, p[c]]));
        if (multiLabel) {
          out[i] = { labels: labelsOf(p, labels, thresholds), probs: byLabel };
          return;
        }
        const best = p.indexOf(Math.max(...p));
        out[i] = { label: labels[best], score: p[best], probs: byLabel };
      });
    }
    return out;
  }

  return {
    labels, classify, encode, kind,
    dtype: cfg.dtype, variant: cfg.variant, maxLength: cfg.max_length, temperature, biases, runsAlone, multiLabel,
    thresholds, longTexts, chunkStride: reading.stride ?? null, maxChunks: reading.maxChunks ?? null,
    device: device ?? (IS_NODE ? "cpu" : "wasm"),
    threads: IS_NODE ? (threads ?? null) : env.backends.onnx.wasm.numThreads ?? null,
    loadMs: performance.now() - started,
    transformersVersion: env.version,
  };
}
