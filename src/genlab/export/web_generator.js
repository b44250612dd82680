// genlab's text generator in the browser, over onnxruntime-web (loaded before this file as `ort`): the run's
// tokenizer (characters or byte-level BPE, from vocab.json), the exported GPT with its key/value cache
// (model.onnx), and the sampler (temperature, top-k, a seeded generator). Past the context window it recomputes
// the last block_size tokens, as genlab's step engine does, so greedy text is genlab's text token for token.
//
//   const gen = await GenlabWeb.load("./");            // the folder holding vocab.json, model.onnx, ort's files
//   for await (const piece of gen.generate("Once", 200, 0.8, 1)) output.textContent += piece;
"use strict";
const GenlabWeb = (() => {
  // GPT-2's byte-level alphabet: byte b is written as one printable character (what BPE tokens are made of).
  function byteAlphabet() {
    const printable = [];
    for (let b = 33; b <= 126; b++) printable.push(b);
    for (let b = 161; b <= 172; b++) printable.push(b);
    for (let b = 174; b <= 255; b++) printable.push(b);
    const toChar = new Map(), toByte = new Map();
    let extra = 0;
    for (let b = 0; b < 256; b++) {
      const code = printable.includes(b) ? b : 256 + extra++;
      toChar.set(b, String.fromCodePoint(code));
      toByte.set(String.fromCodePoint(code), b);
    }
    return { toChar, toByte };
  }

  // The tokenizer of the run, as genlab's tokenizer.json defines it: characters, or byte-level BPE (the
  // pre-tokenizer's regex, then the lowest-ranked merge first, as the tokenizers library does).
  function makeTokenizer(vocab) {
    const ids = new Map(vocab.tokens.map((t, i) => [t, i]));
    if (vocab.kind === "char") {
      return {
        encode(text) {
          const unknown = [...text].find((c) => !ids.has(c));
          if (unknown !== undefined) throw new Error(`"${unknown}" is not a character this model knows`);
          return [...text].map((c) => ids.get(c));
        },
        decoder() { return (id) => vocab.tokens[id]; },
      };
    }
    const { toChar, toByte } = byteAlphabet();
    const ranks = new Map(vocab.merges.map(([a, b], i) => [a + " " + b, i]));
    const pieces = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
    function merge(word) {
      let parts = [...word];
      for (;;) {
        let best = -1, bestRank = Infinity;
        for (let i = 0; i + 1 < parts.length; i++) {
          const r = ranks.get(parts[i] + " " + parts[i + 1]);
          if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
        }
        if (best < 0) return parts;
        const a = parts[best], b = parts[best + 1], merged = [];
        for (let i = 0; i < parts.length; i++) {  // every occurrence of the pair, left to right
          if (i + 1 < parts.length && parts[i] === a && parts[i + 1] === b) { merged.push(a + b); i++; } else merged.push(parts[i]);
        }
        parts = merged;
      }
    }
    return {
      encode(text) {
        const out = [];
        for (const piece of text.match(pieces) || []) {
          const word = [...new TextEncoder().encode(piece)].map((b) => toChar.get(b)).join("");
          for (const part of merge(word)) {
            if (!ids.has(part)) throw new Error(`the tokenizer has no token for "${part}"`);
            out.push(ids.get(part));
          }
        }
        return out;
      },
      decoder() {  // bytes to text as they come: a character split across tokens appears once whole
        const utf8 = new TextDecoder("utf-8");
        return (id) => utf8.decode(Uint8Array.from([...vocab.tokens[id]].map((c) => toByte.get(c))), { stream: true });
      },
    };
  }

  function mulberry32(seed) {  // a small seeded generator: the same seed, the same text
    return function () {
      seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function pick(logits, temperature, topK, random) {
    if (temperature <= 0) { let best = 0; for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i; return best; }
    let order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    if (topK > 0) order = order.slice(0, topK);
    const top = logits[order[0]];
    const weights = order.map((i) => Math.exp((logits[i] - top) / temperature));
    let u = random() * weights.reduce((a, b) => a + b, 0);
    for (let j = 0; j < order.length; j++) { u -= weights[j]; if (u <= 0) return order[j]; }
    return order[order.length - 1];
  }

  async function load(base) {
    ort.env.wasm.wasmPaths = base;
    ort.env.wasm.numThreads = 1;
    const vocab = await (await fetch(base + "vocab.json")).json();
    const session = await ort.InferenceSession.create(base + "model.onnx", { executionProviders: ["wasm"] });
    const tokenizer = makeTokenizer(vocab);
    const emptyPast = () => new ort.Tensor("float32", new Float32Array(0), [vocab.n_layer, 1, vocab.n_head, 0, vocab.head_size]);

    async function run(ids, start, pastK, pastV) {  // (1, T) new tokens after `start` cached ones -> last logits, cache
      const T = ids.length;
      const feeds = {
        input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, T]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map((_, i) => BigInt(start + i))), [1, T]),
        attention_mask: new ort.Tensor("int64", new BigInt64Array(start + T).fill(1n), [1, start + T]),
        past_keys: pastK, past_values: pastV,
      };
      const out = await session.run(feeds);
      const V = vocab.tokens.length;
      return { logits: out.logits.data.slice((T - 1) * V, T * V), keys: out.present_keys, values: out.present_values };
    }

    async function* generate(prompt, n, temperature, seed) {  // yields each new token's text (may be "" mid-character)
      let tokens = prompt ? tokenizer.encode(prompt) : [];
      if (tokens.length === 0) tokens = vocab.empty_prompt.slice();
      const show = tokenizer.decoder(), random = mulberry32(seed);
      let past = null;
      for (let step = 0; step < n; step++) {
        let result;
        if (tokens.length > vocab.block_size) {  // past the context: the last block_size tokens, as training saw them
          result = await run(tokens.slice(-vocab.block_size), 0, emptyPast(), emptyPast());
          past = null;
        } else if (past === null) {
          result = past = await run(tokens, 0, emptyPast(), emptyPast());
        } else {
          result = past = await run(tokens.slice(-1), tokens.length - 1, past.keys, past.values);
        }
        const next = pick(result.logits, temperature, vocab.top_k, random);
        tokens.push(next);
        yield show(next);
      }
    }

    return { vocab, encode: (text) => tokenizer.encode(text), generate };
  }

  return { load };
})();
