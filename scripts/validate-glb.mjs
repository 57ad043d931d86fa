#!/usr/bin/env node
// Validates binary glTF files with the Khronos glTF-Validator (npm `gltf-validator`, pinned in package.json).
//
// Usage: node scripts/validate-glb.mjs FILE_OR_DIR...
//
// Every argument is a .glb file or a directory searched recursively for *.glb. One line is printed per file:
//   ok|FAIL  PATH  errors=E warnings=W infos=I hints=H
// followed by up to MAX_SHOWN messages (most severe first) indented below it.
//
// Exit status: 0 when every file has 0 errors and 0 warnings; 1 when any file has an error or a warning, cannot
// be read, or when no .glb file was found at all; 2 on a usage error or a missing validator package.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** How many messages to print per file. */
const MAX_SHOWN = 5;
/** How many messages the validator collects per file (the counts stay exact beyond it). */
const MAX_ISSUES = 100;
/** Validator severity codes. */
const SEVERITY = ['error', 'warning', 'info', 'hint'];

/** Recursively collects `*.glb` paths under `path` (or `path` itself when it is a file), sorted. */
function collect(path, out) {
  const st = statSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path).sort()) {
      collect(join(path, name), out);
    }
  } else if (path.toLowerCase().endsWith('.glb')) {
    out.push(path);
  }
}

async function main(args) {
  if (args.length === 0 || args.includes('-h') || args.includes('--help')) {
    console.error('usage: node scripts/validate-glb.mjs FILE_OR_DIR...');
    return 2;
  }
  let validator;
  try {
    validator = await import('gltf-validator');
  } catch (e) {
    console.error(`validate-glb: cannot load the npm package gltf-validator (run \`npm ci\`): ${e.message}`);
    return 2;
  }
  const files = [];
  for (const arg of args) {
    try {
      collect(arg, files);
    } catch (e) {
      console.error(`FAIL  ${arg}  cannot read: ${e.message}`);
      return 1;
    }
  }
  if (files.length === 0) {
    console.error(`validate-glb: no .glb file found in ${args.join(' ')}`);
    return 1;
  }

  let failed = 0;
  for (const file of files) {
    let report;
    try {
      report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
        uri: file,
        maxIssues: MAX_ISSUES,
        // Everything must be embedded in the GLB: any external reference is itself a failure.
        externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri} not allowed`)),
      });
    } catch (e) {
      failed += 1;
      console.log(`FAIL  ${file}  validator threw: ${e.message ?? e}`);
      continue;
    }
    const is = report.issues;
    const bad = is.numErrors > 0 || is.numWarnings > 0;
    if (bad) failed += 1;
    console.log(
      `${bad ? 'FAIL' : 'ok  '}  ${file}  errors=${is.numErrors} warnings=${is.numWarnings} ` +
        `infos=${is.numInfos} hints=${is.numHints}`,
    );
    const shown = [...is.messages].sort((a, b) => a.severity - b.severity).slice(0, MAX_SHOWN);
    for (const m of shown) {
      const where = m.pointer ?? (m.offset !== undefined ? `@${m.offset}` : '');
      console.log(`      ${SEVERITY[m.severity] ?? m.severity} ${m.code} ${where}: ${m.message}`);
    }
  }
  console.log(`validate-glb: ${files.length} file(s), ${failed} with errors or warnings`);
  return failed > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
