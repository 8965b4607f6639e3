// Run the original TFJS graph model (pure-JS @tensorflow/tfjs, CPU backend) on the
// preprocessed inputs written by `tools/convert_faceres.py --write-inputs DIR` (or
// tools/convert_detectors.py) and write DIR/tfjs_outputs.json for `--check DIR`.
// Usage: (cd /tmp/tfjs && npm install @tensorflow/tfjs@4)
//        NODE_PATH=/tmp/tfjs/node_modules node tools/faceres_reference.mjs MODEL_JSON DIR
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';

const require = createRequire(path.join(process.env.NODE_PATH || process.cwd(), 'x.js'));
const tf = require('@tensorflow/tfjs');

const [modelJson, dir] = process.argv.slice(2);
const model = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
const base = path.dirname(modelJson);
const specs = [];
const bufs = [];
for (const g of model.weightsManifest) {
  specs.push(...g.weights);
  for (const p of g.paths) bufs.push(fs.readFileSync(path.join(base, p)));
}
const all = Buffer.concat(bufs);
const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
const handler = tf.io.fromMemory({
  modelTopology: model.modelTopology, weightSpecs: specs, weightData, format: model.format,
  generatedBy: model.generatedBy, convertedBy: model.convertedBy, signature: model.signature,
});

await tf.setBackend('cpu');
const graph = await tf.loadGraphModel(handler);
const meta = JSON.parse(fs.readFileSync(path.join(dir, 'input.json'), 'utf8'));
const raw = fs.readFileSync(path.join(dir, 'input.bin'));
const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), meta.shape, 'float32');
// output nodes: as input.json names them (tools/convert_detectors.py), else FaceRes's three
const names = meta.outputs || ['global_pooling/Mean', 'age_pred/Softmax', 'gender_pred/Sigmoid'];
// one input at a time: some graphs (the detectors) are fixed to a batch of 1
const perInput = tf.unstack(x).map((one) => graph.execute(one.expandDims(0), names));
const result = { backend: tf.getBackend(), tfjs_version: tf.version.tfjs };
names.forEach((n, i) => { result[n] = tf.concat(perInput.map((outs) => outs[i])).arraySync(); });
fs.writeFileSync(path.join(dir, 'tfjs_outputs.json'), JSON.stringify(result));
console.log('tfjs', tf.version.tfjs, 'backend', tf.getBackend(), 'wrote', path.join(dir, 'tfjs_outputs.json'));
