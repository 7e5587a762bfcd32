#!/usr/bin/env node
/*
 * client.js - a DCP initiator for testing the scheduler double: dcp-client 5.6.1's own Connection
 * (require('dcp/protocol').Connection, initiator role) with a fresh random identity, driven over
 * newline-delimited JSON on stdin/stdout like double.js.
 *
 * Usage: node tests/scheduler/client.js URL [--transports websocket,polling]
 * --transports is the engine.io transport list handed to socket.io-client (through the Connection's
 * `socketio` options); "polling" alone also turns upgrades off, so the session stays on long-polling.
 *
 * First line: {"event":"ready","address":"0x... (client identity)","transports":[...]}
 * Commands ({"id", "cmd", ...}; replies {"id","ok":true,...} or {"id","ok":false,"error"}):
 *   connect  {}                       -> {dcpsid, peerAddress, engineTransport}
 *   request  {operation, data}        -> {success, payload}   (an error payload is ok:true, success:false)
 *   state    {}                       -> {state, dcpsid, engineTransport, connects, disconnects}
 *   close    {}                       -> {} once the Connection has closed
 *   shutdown {}                       -> {} then exit 0
 * Requests from the target are answered with {answeredBy:"node-client", operation, data} (after
 * data.delayMs milliseconds when the data is an object with a positive delayMs) and reported
 * as {"event":"request","operation","data","messageId"}. Other events: connect, disconnect, session,
 * end, closed, error. Exits when stdin closes.
 */
'use strict';

const {
  emitLine, keepStdoutClean, oneLine, logError, useScratchEnvironment, loadDcpClient, runCommandLoop,
  reportUncaught,
} = require('./common');

const LABEL = 'scheduler double client';
keepStdoutClean();
const removeScratch = useScratchEnvironment('dcp-scheduler-client-');

let conn;
let shuttingDown = false;
const counters = { connects: 0, disconnects: 0 };

function parseArgs(argv)
{
  const args = { url: null, transports: ['websocket', 'polling'] };
  for (let i = 0; i < argv.length; i++)
  {
    const arg = argv[i];
    if (arg === '--transports')
    {
      const value = argv[++i];
      if (!value)
        throw new Error('missing value for --transports');
      args.transports = value.split(',').filter(Boolean);
    }
    else if (!args.url && !arg.startsWith('--'))
      args.url = arg;
    else
      throw new Error(`unknown argument ${arg}`);
  }
  if (!args.url)
    throw new Error('usage: client.js URL [--transports websocket,polling]');
  return args;
}

/** The engine.io transport under the Connection right now: "websocket", "polling" or null. */
function engineTransport()
{
  try
  {
    return conn.transport.socket.io.engine.transport.name;
  }
  catch (error)
  {
    return null;
  }
}

function waitForClose(timeoutMs)
{
  return new Promise((resolve) => {
    if (String(conn.state) === 'closed')
      return resolve(true);
    const timer = setTimeout(() => resolve(false), timeoutMs);
    conn.once('close', () => { clearTimeout(timer); resolve(true); });
  });
}

const commands = {
  async connect()
  {
    /* connect() settles once the transport is up; the session is established when the connect
     * response arrives, which the Connection announces with 'ready'. */
    const ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no session within 30 s')), 30000);
      conn.once('ready', () => { clearTimeout(timer); resolve(); });
    });
    await conn.connect();
    if (!(conn.dcpsid && String(conn.state) === 'established'))
      await ready;
    return { dcpsid: conn.dcpsid, peerAddress: String(conn.peerAddress), engineTransport: engineTransport() };
  },

  async request(cmd)
  {
    if (typeof cmd.operation !== 'string' || !cmd.operation)
      throw new Error('operation must be a non-empty string');
    const response = await conn.request(cmd.operation, cmd.data);
    return { success: response.success, payload: response.payload };
  },

  async state()
  {
    return {
      state:           String(conn.state),
      dcpsid:          conn.dcpsid || null,
      engineTransport: engineTransport(),
      connects:        counters.connects,
      disconnects:     counters.disconnects,
    };
  },

  async close()
  {
    conn.close();
    if (!await waitForClose(15000))
      throw new Error(`the Connection did not close within 15 s (state ${conn.state})`);
    return {};
  },

  async shutdown(cmd)
  {
    setImmediate(() => shutdown(cmd.id));
    return undefined;
  },
};

function shutdown(replyId)
{
  if (shuttingDown)
    return;
  shuttingDown = true;
  const finish = () => {
    removeScratch();
    if (replyId !== undefined)
      emitLine({ id: replyId, ok: true });
    process.exit(0);
  };
  setTimeout(finish, 250).unref(); /* a graceful close is polite, not needed */
  if (conn && String(conn.state) !== 'closed')
  {
    conn.once('close', finish);
    conn.close();
  }
  else
    finish();
}

async function main()
{
  const args = parseArgs(process.argv.slice(2));
  const { protocol, wallet } = await loadDcpClient();

  const identity = await new wallet.Keystore(null, '');
  const socketio = { transports: args.transports };
  if (!args.transports.includes('websocket'))
    socketio.upgrade = false;
  conn = new protocol.Connection({ location: new URL(args.url) }, { identity, socketio });

  conn.on('connect',    () => { counters.connects++;    emitLine({ event: 'connect', engineTransport: engineTransport() }); });
  conn.on('disconnect', () => { counters.disconnects++; emitLine({ event: 'disconnect' }); });
  conn.on('session',    () => emitLine({ event: 'session', dcpsid: conn.dcpsid }));
  conn.on('end',        () => emitLine({ event: 'end' }));
  conn.on('close',      () => emitLine({ event: 'closed' }));
  conn.on('error',      (error) => emitLine({ event: 'error', error: oneLine(error), code: error && error.code }));
  conn.on('request', (request) => {
    const { operation, data } = request.payload;
    emitLine({ event: 'request', operation, data, messageId: request.id });
    const respond = () => request.respond({ answeredBy: 'node-client', operation, data }).catch((error) => {
      emitLine({ event: 'error', error: `respond to ${operation}: ${oneLine(error)}` });
    });
    const delayMs = data && typeof data === 'object' ? Number(data.delayMs) : 0;
    if (delayMs > 0)
      setTimeout(respond, delayMs);
    else
      respond();
  });

  runCommandLoop(commands, { isClosing: () => shuttingDown, onEnd: () => shutdown() });
  emitLine({ event: 'ready', address: String(identity.address), transports: args.transports, pid: process.pid });
}

reportUncaught(LABEL);
main().catch((error) => {
  logError(LABEL, 'cannot start', error);
  emitLine({ event: 'fatal', error: oneLine(error) });
  removeScratch();
  process.exit(3);
});
