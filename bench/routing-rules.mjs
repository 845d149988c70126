// Cost of routing (issue 11): one tags header read (CT_small), and explaining 100 rules over 20 series.
// Run after `npm run build`: node bench/routing-rules.mjs
const { readHeaderTags } = await import('../dist/src/ingest/header-tags.js');
const { explainRouting } = await import('../dist/src/pipeline/routing.js');
const f = new URL('../test/fixtures/dicom/CT_small.dcm', import.meta.url).pathname;
for (let i = 0; i < 20; i++) await readHeaderTags(f, ['00080008', '00181030']);
let t = process.hrtime.bigint();
const N = 500;
for (let i = 0; i < N; i++) await readHeaderTags(f, ['00080008', '00181030']);
console.log('readHeaderTags CT_small: us/read', Number(process.hrtime.bigint() - t) / 1e3 / N);
const series = Array.from({ length: 20 }, (_, i) => ({
  seriesInstanceUid: `1.${i}`,
  modalities: ['CT'],
  sopClassUids: ['1.2'],
  bodyPartsExamined: ['CHEST'],
  seriesDescriptions: [`Series ${i} axial`],
  tags: { '00080008': ['ORIGINAL', 'PRIMARY', 'AXIAL'] },
}));
const rules = Array.from({ length: 100 }, (_, i) => ({
  name: `r${i}`,
  destination: 'b',
  match: {
    modality: ['CT'],
    seriesDescription: `nomatch${i}|zz`,
    tags: [{ tag: '00080008', keyword: 'ImageType', regex: 'AXIAL' }],
  },
}));
const facts = { callingAeTitles: [], calledAeTitles: [], series };
for (let i = 0; i < 20; i++) explainRouting(rules, 'o', facts);
t = process.hrtime.bigint();
for (let i = 0; i < 200; i++) explainRouting(rules, 'o', facts);
console.log('explainRouting 100 rules x 20 series: ms/eval', Number(process.hrtime.bigint() - t) / 1e6 / 200);
