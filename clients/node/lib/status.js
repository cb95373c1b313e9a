'use strict';
// Decodes the grpc-status-details-bin trailer (a google.rpc.Status) with a
// few lines of protobuf wire format, so that the package needs nothing but
// @grpc/grpc-js and @grpc/proto-loader. Only the messages the daemon puts
// there are understood: google.rpc.ErrorInfo, google.rpc.BadRequest and
// streammgr.v1.LimitOverrunError; others keep their raw bytes.

/** Iterates the fields of one message: {field, wire, value}. */
function* fields(buf) {
  let i = 0;
  const varint = () => {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value;
    switch (wire) {
      case 0:
        value = varint();
        break;
      case 1:
        value = buf.subarray(i, i + 8);
        i += 8;
        break;
      case 2: {
        const n = varint();
        if (i + n > buf.length) throw new Error('truncated field');
        value = buf.subarray(i, i + n);
        i += n;
        break;
      }
      case 5:
        value = buf.subarray(i, i + 4);
        i += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wire}`);
    }
    yield { field, wire, value };
  }
}

// int64 varints of negative numbers are 10 bytes of two's complement; the
// values here (offsets, counts) are never negative.
const str = (v) => Buffer.from(v).toString('utf8');

function decodeErrorInfo(buf) {
  const out = { reason: '', domain: '', metadata: {} };
  for (const f of fields(buf)) {
    if (f.field === 1 && f.wire === 2) out.reason = str(f.value);
    else if (f.field === 2 && f.wire === 2) out.domain = str(f.value);
    else if (f.field === 3 && f.wire === 2) {
      let k = '';
      let v = '';
      for (const e of fields(f.value)) {
        if (e.field === 1 && e.wire === 2) k = str(e.value);
        else if (e.field === 2 && e.wire === 2) v = str(e.value);
      }
      out.metadata[k] = v;
    }
  }
  return out;
}

function decodeBadRequest(buf) {
  const out = { field_violations: [] };
  for (const f of fields(buf)) {
    if (f.field !== 1 || f.wire !== 2) continue;
    const fv = { field: '', description: '' };
    for (const e of fields(f.value)) {
      if (e.field === 1 && e.wire === 2) fv.field = str(e.value);
      else if (e.field === 2 && e.wire === 2) fv.description = str(e.value);
    }
    out.field_violations.push(fv);
  }
  return out;
}

function decodeLimitOverrun(buf) {
  const out = { consumed: 0, found: false, next_offset: 0 };
  for (const f of fields(buf)) {
    if (f.wire !== 0) continue;
    if (f.field === 1) out.consumed = f.value;
    else if (f.field === 2) out.found = f.value !== 0;
    else if (f.field === 3) out.next_offset = f.value;
  }
  return out;
}

const DECODERS = {
  'type.googleapis.com/google.rpc.ErrorInfo': decodeErrorInfo,
  'type.googleapis.com/google.rpc.BadRequest': decodeBadRequest,
  'type.googleapis.com/streammgr.v1.LimitOverrunError': decodeLimitOverrun,
};

/**
 * Decodes a google.rpc.Status: {code, message, details}, each detail a
 * plain object with its '@type'.
 */
function decodeStatus(buf) {
  const st = { code: 0, message: '', details: [] };
  for (const f of fields(buf)) {
    if (f.field === 1 && f.wire === 0) st.code = f.value;
    else if (f.field === 2 && f.wire === 2) st.message = str(f.value);
    else if (f.field === 3 && f.wire === 2) {
      let typeUrl = '';
      let value = Buffer.alloc(0);
      for (const e of fields(f.value)) {
        if (e.field === 1 && e.wire === 2) typeUrl = str(e.value);
        else if (e.field === 2 && e.wire === 2) value = Buffer.from(e.value);
      }
      const dec = DECODERS[typeUrl];
      st.details.push(dec ? { '@type': typeUrl, ...dec(value) } : { '@type': typeUrl, value });
    }
  }
  return st;
}

/** The decoded google.rpc.Status of a grpc-js error's metadata, or null. */
function statusFromMetadata(metadata) {
  if (!metadata || typeof metadata.get !== 'function') return null;
  const raw = metadata.get('grpc-status-details-bin')[0];
  if (!raw) return null;
  try {
    return decodeStatus(Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'base64'));
  } catch {
    return null; // a malformed trailer: the plain status is all there is
  }
}

module.exports = { decodeStatus, statusFromMetadata };
