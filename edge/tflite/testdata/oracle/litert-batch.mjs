// Runs many .tflite models in one LiteRT.js process (the one-model runner,
// ../../../../../shared/oracle/litert-run.mjs, pays ~0.5 s of start-up per call). Same
// loader, deterministic input and error rule as that runner.
//
// usage: node litert-batch.mjs LITERT_DIR MODEL...
// Prints one JSON line per model: {model, outputs:[{name,dtype,shape,data}]} or {model, error}.
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';
import vm from 'node:vm'; import fs from 'node:fs'; import path from 'node:path';

const [dir, ...models] = process.argv.slice(2);
globalThis.self = globalThis;
globalThis.require = createRequire(path.join(dir, 'litert-run.mjs'));
globalThis.importScripts = (u) => {
  const f = String(u).startsWith('file:') ? fileURLToPath(String(u)) : String(u);
  globalThis.__filename = f; globalThis.__dirname = path.dirname(f);
  vm.runInThisContext(fs.readFileSync(f, 'utf8'), {filename: f});
};
// LiteRT reports kernel errors on the console yet may still return numbers: collect them.
let errors = [];
console.error = (...a) => { const t = a.join(' '); if (/ERROR/.test(t)) errors.push(t); };
console.warn = console.info = console.log = () => {};
const lrt = await import(path.join(dir, 'node_modules/@litertjs/core/dist/index_int8.js'));
await lrt.loadLiteRt(path.join(dir, 'node_modules/@litertjs/core/wasm/'));

const TA = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array};
const dims = (s) => Array.from(s, x => x < 0 ? 1 : x);
function pattern(d) {
  const n = dims(d.shape).reduce((a, b) => a * b, 1), a = new TA[d.dtype](n);
  for (let i = 0; i < n; i++) { const u = (i * 37) % 256; a[i] = d.dtype === 'float32' ? u / 255 : d.dtype === 'int8' ? u - 128 : u; }
  return a;
}
for (const model of models) {
  errors = [];
  let line;
  try {
    const m = await lrt.loadAndCompile(new Uint8Array(fs.readFileSync(model)), {accelerator: 'wasm'});
    const outs = m.getOutputDetails();
    const tensors = m.getInputDetails().map(d => new lrt.Tensor(pattern(d), dims(d.shape)));
    const res = await m.run(tensors);
    if (errors.length) throw new Error('runtime reported: ' + [...new Set(errors)].slice(0, 3).join(' | '));
    line = {model, outputs: res.map((t, i) => ({name: outs[i].name, dtype: outs[i].dtype, shape: dims(outs[i].shape), data: Array.from(t.toTypedArray())}))};
    res.forEach(t => t.delete()); tensors.forEach(t => t.delete()); m.delete();
  } catch (e) {
    line = {model, error: String(e && e.message || e) + (errors.length ? ' ' + errors.slice(0, 3).join(' | ') : '')};
  }
  process.stdout.write(JSON.stringify(line) + '\n');
}
