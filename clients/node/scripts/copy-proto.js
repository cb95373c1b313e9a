#!/usr/bin/env node
'use strict';
// Copies the repository's proto/ into this package (proto/streammgr/v1/...)
// so that a packed tarball (npm pack, npm publish) carries the service
// definition. Run by the prepack script; postpack removes the copy again
// (--clean), so that the repository's checkout resolves ../../proto, the
// one source of truth. lib/proto.js looks for the copy first.
const fs = require('node:fs');
const path = require('node:path');

const REL = path.join('streammgr', 'v1', 'streammgr.proto');
const pkgDir = path.resolve(__dirname, '..');
const src = path.resolve(pkgDir, '..', '..', 'proto', REL);
const dest = path.join(pkgDir, 'proto', REL);

if (process.argv.includes('--clean')) {
  fs.rmSync(path.join(pkgDir, 'proto'), { recursive: true, force: true });
  process.exit(0);
}
if (!fs.existsSync(src)) {
  if (fs.existsSync(dest)) process.exit(0); // a packed copy already has it
  console.error(`copy-proto: ${src} not found (run from the streammgr repository)`);
  process.exit(1);
}
fs.mkdirSync(path.dirname(dest), { recursive: true });
fs.copyFileSync(src, dest);
console.error(`copy-proto: ${path.relative(pkgDir, dest)} from ${path.relative(pkgDir, src)}`);
