#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with the pinned solcjs into ABI + bytecode artifacts.
// Usage: node tools/compile.js [OUT_DIR]   (default: src/verinfer/chain/artifacts)
// Written by hand because solcjs has no project driver; forge cannot fetch solc offline.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const root = path.resolve(__dirname, '..');
const srcDir = path.join(root, 'contracts', 'src');
const outDir = path.resolve(process.argv[2] || path.join(root, 'src', 'verinfer', 'chain', 'artifacts'));
const nodeModules = path.join(__dirname, 'node_modules');
const EVM_VERSION = 'cancun';
const OPTIMIZER_RUNS = 200;

function listSol(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return listSol(p);
    return e.name.endsWith('.sol') ? [p] : [];
  }).sort();
}

function findImport(importPath) {
  for (const base of [nodeModules, srcDir, root]) {
    const p = path.join(base, importPath);
    if (fs.existsSync(p)) return { contents: fs.readFileSync(p, 'utf8') };
  }
  return { error: `import not found: ${importPath}` };
}

const sources = {};
for (const file of listSol(srcDir)) {
  sources[path.relative(srcDir, file).split(path.sep).join('/')] = { content: fs.readFileSync(file, 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
    evmVersion: EVM_VERSION,
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) process.stderr.write(e.formattedMessage + '\n');
if (errors.length) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
let count = 0;
for (const [file, contracts] of Object.entries(output.contracts)) {
  if (!(file in sources)) continue; // imported library code (OpenZeppelin) gets no artifact
  for (const [name, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts have no bytecode
    const artifact = {
      contractName: name,
      sourceName: file,
      compiler: { version: solc.version(), evmVersion: EVM_VERSION, optimizerRuns: OPTIMIZER_RUNS },
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    };
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
    count += 1;
  }
}
process.stdout.write(`compiled ${Object.keys(sources).length} sources into ${count} artifacts in ${path.relative(root, outDir)}\n`);
