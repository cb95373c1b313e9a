'use strict';
// streammgr: net.Socket-like streams and servers through streammgrd.
//
//   const sm = require('streammgr');
//   const sock = sm.connect({ host: '127.0.0.1', port: 8888 }, () => sock.end('Hello World!'));
//   sock.on('data', (b) => console.log(b.toString()));
//
// See README.md.
const { Socket, connect, attach, socketPair } = require('./lib/socket');
const { Server, createServer } = require('./lib/server');
const { Client, defaultAddress } = require('./lib/client');
const { IncompleteReadError, LimitOverrunError, LineTooLongError, toNodeError } = require('./lib/errors');
const { readLine, readExactly, readUntil, read, DEFAULT_LIMIT } = require('./lib/readers');
const { findProtoDir } = require('./lib/proto');

module.exports = {
  connect,
  createConnection: connect,
  createServer,
  attach,
  socketPair,
  Socket,
  Server,
  Client,
  defaultAddress,
  readLine,
  readExactly,
  readUntil,
  read,
  DEFAULT_LIMIT,
  IncompleteReadError,
  LimitOverrunError,
  LineTooLongError,
  toNodeError,
  findProtoDir,
};
