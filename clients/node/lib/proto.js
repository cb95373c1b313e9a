'use strict';
// Loads streammgr.v1.StreamService from the .proto at run time with
// @grpc/proto-loader. The .proto is looked up in, in order:
//   1. $STREAMMGR_PROTO_DIR (a directory holding streammgr/v1/streammgr.proto);
//   2. this package's own proto/ (copied there by `npm pack`: see
//      scripts/copy-proto.js);
//   3. ../../proto beside the package: the streammgr repository's own
//      proto/ when the package is used from the repository
//      (clients/node, or `npm install ./clients/node`, which links it).
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_FILE = path.join('streammgr', 'v1', 'streammgr.proto');

function candidates() {
  const out = [];
  if (process.env.STREAMMGR_PROTO_DIR) out.push(path.resolve(process.env.STREAMMGR_PROTO_DIR));
  const pkgDir = path.resolve(__dirname, '..');
  out.push(path.join(pkgDir, 'proto'));
  out.push(path.resolve(pkgDir, '..', '..', 'proto'));
  return out;
}

/** The directory holding streammgr/v1/streammgr.proto. */
function findProtoDir() {
  const tried = candidates();
  for (const dir of tried) {
    if (fs.existsSync(path.join(dir, PROTO_FILE))) return dir;
  }
  throw new Error(
    `streammgr: cannot find ${PROTO_FILE}; looked in ${tried.join(', ')}. ` +
      'Set STREAMMGR_PROTO_DIR to the streammgr repository\'s proto/ directory.',
  );
}

let loaded = null;

/**
 * The generated service client constructor, loaded once. Messages keep
 * the .proto's field names (keepCase), int64s are Numbers (byte counts and
 * offsets, far below 2^53), bytes are Buffers.
 */
function service() {
  if (loaded) return loaded;
  const protoDir = findProtoDir();
  const def = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [protoDir],
    keepCase: true,
    longs: Number,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def);
  loaded = { StreamService: pkg.streammgr.v1.StreamService, protoDir };
  return loaded;
}

module.exports = { service, findProtoDir, PROTO_FILE };
