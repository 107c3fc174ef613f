// Runs many (model, inputs) jobs in one LiteRT.js process, so that the engine's oracle test
// pays LiteRT's start-up once instead of once per run.
//
// usage: node litert-batch.mjs ORACLE_DIR JOBS.json
//   ORACLE_DIR  where ../shared/oracle/setup-litert.sh installed LiteRT.js (holds litert-run.mjs)
//   JOBS.json   [{"model": "m.tflite", "inputs": ["in0.bin", ...], "out": "out.json"}, ...]
// Each job writes {outputs:[{name,dtype,shape,data}]} or {error} to its "out" file.
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';
import vm from 'node:vm'; import fs from 'node:fs'; import path from 'node:path';

const [oracleDir, jobsFile] = process.argv.slice(2);
if (!oracleDir || !jobsFile) {
  console.error('usage: node litert-batch.mjs ORACLE_DIR JOBS.json');
  process.exit(2);
}
// LiteRT.js expects a browser or worker global scope.
globalThis.self = globalThis;
globalThis.require = createRequire(path.join(oracleDir, 'package.json'));
globalThis.importScripts = (u) => {
  const f = String(u).startsWith('file:') ? fileURLToPath(String(u)) : String(u);
  globalThis.__filename = f; globalThis.__dirname = path.dirname(f);
  vm.runInThisContext(fs.readFileSync(f, 'utf8'), {filename: f});
};
// Kernel errors arrive on the console while run() may still resolve: collect them per job.
let errors = [];
const stderr = console.error.bind(console);
console.error = (...a) => { const t = a.join(' '); if (/ERROR/.test(t)) errors.push(t); };
console.warn = console.info = console.log = () => {};
const lrt = await import(path.join(oracleDir, 'node_modules/@litertjs/core/dist/index_int8.js'));
await lrt.loadLiteRt(path.join(oracleDir, 'node_modules/@litertjs/core/wasm/'));

const TA = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array};
const dims = (s) => Array.from(s, x => x < 0 ? 1 : x);
const compiled = new Map();
for (const job of JSON.parse(fs.readFileSync(jobsFile, 'utf8'))) {
  errors = [];
  try {
    let m = compiled.get(job.model);
    if (!m) {
      m = await lrt.loadAndCompile(new Uint8Array(fs.readFileSync(job.model)), {accelerator: 'wasm'});
      compiled.set(job.model, m);
    }
    const ins = m.getInputDetails(), outs = m.getOutputDetails();
    if (job.inputs.length !== ins.length) throw new Error(`model has ${ins.length} inputs, job gives ${job.inputs.length}`);
    const tensors = ins.map((d, i) => {
      const b = fs.readFileSync(job.inputs[i]), C = TA[d.dtype];
      return new lrt.Tensor(new C(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)), dims(d.shape));
    });
    const res = await m.run(tensors);
    if (errors.length) throw new Error('runtime reported: ' + [...new Set(errors)].slice(0, 3).join(' | '));
    const doc = {outputs: res.map((t, i) => ({name: outs[i].name, dtype: outs[i].dtype, shape: dims(outs[i].shape), data: Array.from(t.toTypedArray())}))};
    res.forEach(t => t.delete()); tensors.forEach(t => t.delete());
    fs.writeFileSync(job.out, JSON.stringify(doc));
  } catch (e) {
    fs.writeFileSync(job.out, JSON.stringify({error: String(e && e.message || e)}));
  }
}
stderr(`litert-batch: ${compiled.size} models`);
