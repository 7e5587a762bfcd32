#!/usr/bin/env node
/*
 * double.js - a test double of the DCP scheduler, built on dcp-client 5.6.1's own protocol server
 * (`require('dcp/protocol').Target`), driven over newline-delimited JSON on stdin/stdout.
 *
 * Usage: node tests/scheduler/double.js [--keystore FILE [--passphrase P]] [--close-timeout SECONDS]
 * Without --keystore the scheduler identity is a fresh random Keystore (empty passphrase).
 * --close-timeout overrides the sessions' closeTimeout connection option (dcp-client default: 7 s).
 *
 * stdout carries only protocol lines; everything else (dcp-client's own logging included) goes to
 * stderr. The first line is
 *   {"event":"ready","url":"http://127.0.0.1:PORT/","address":"0x...","dcpClient":"5.6.1","node":"v20..."}
 * or, when start-up fails, {"event":"fatal","error":"..."} followed by exit status 3.
 *
 * Commands: one JSON object a line, {"id": <integer>, "cmd": <name>, ...fields}. Replies are
 * {"id","ok":true,...} or {"id","ok":false,"error":"one line"} and may come out of order:
 *   handle       {operation, action, value?, error?:{message,code}, delayMs?, beforeAck?}
 *                how to answer client requests for operation from now on (default: echo):
 *                echo | value | error | ignore | drop (see handleRequest below)
 *   received     {}                           -> {requests:[{dcpsid, owner, operation, data, messageId, time}]}
 *   sessions     {}                           -> {sessions:[{dcpsid, peerAddress, state, ready}]}
 *   request      {dcpsid, operation, data}    -> {response} once the client answers (ok:false for
 *                                                an error payload, with the payload as "payload")
 *   drop         {dcpsid}                     -> {} after the session's socket was cut
 *   inject       {dcpsid, frame}              -> {} after frame was emitted as a socket.io 'message'
 *   close        {dcpsid}                     -> {} once the Connection has closed
 *   sign         {privateKey, body}           -> {sealed}
 *   verify       {sealed}                     -> {address, owner}; ok:false (with the recovered
 *                                                "address" when there is one) unless it verifies
 *   keystoreNew  {path, passphrase}           -> {address}
 *   keystoreRead {path, passphrase}           -> {address, privateKeyAddress, label}
 *   shutdown     {}                           -> {} then exit 0
 * Events (no id):
 *   {"event":"session","dcpsid","peerAddress"}             a session was established
 *   {"event":"request","dcpsid","operation","messageId"}   an application request reached a handler
 *   {"event":"notification","dcpsid","messageId","data"}
 *   {"event":"error","error","code",...}                   the Target or a Connection failed or refused
 *                                                          something ("shutdown":true when the
 *                                                          Connection shut down over it)
 *   {"event":"disconnect","dcpsid"}                        a session lost its socket
 *   {"event":"closed","dcpsid","reason","code"}            a Connection closed
 * The process exits when stdin closes (after letting commands in flight finish, for up to 0.5 s).
 */
'use strict';

const path = require('path');
const {
  emitLine, keepStdoutClean, oneLine, logError, useScratchEnvironment, loadDcpClient, runCommandLoop,
  reportUncaught,
} = require('./common');

const LABEL = 'scheduler double';
keepStdoutClean();

function parseArgs(argv)
{
  const args = { keystore: null, passphrase: '', closeTimeout: null };
  for (let i = 0; i < argv.length; i++)
  {
    const flag = argv[i];
    switch (flag)
    {
      case '--keystore':      args.keystore     = argv[++i]; break;
      case '--passphrase':    args.passphrase   = argv[++i]; break;
      case '--close-timeout': args.closeTimeout = Number(argv[++i]); break;
      default: throw new Error(`unknown argument ${flag}`);
    }
    if (argv[i] === undefined)
      throw new Error(`missing value for ${flag}`);
  }
  if (args.closeTimeout !== null && !(args.closeTimeout > 0))
    throw new Error('--close-timeout needs a number of seconds > 0');
  return args;
}

const removeScratch = useScratchEnvironment('dcp-scheduler-double-');

/* Filled in by main() */
let protocol, wallet, target;

/* ------------------------------------------------------------------------------------------------
 * State
 */
const handlers   = new Map();  /* operation -> { action, value, error, delayMs, beforeAck } */
const received   = [];         /* requests the application layer saw, in order */
const records    = [];         /* one per Connection the Target created */
const recordsByConnection = new WeakMap();
let   shuttingDown = false;

function findSession(dcpsid)
{
  if (typeof dcpsid !== 'string' || !dcpsid)
    throw new Error('dcpsid must be a non-empty string');
  const record = records.find(rec => rec.conn.dcpsid === dcpsid);
  if (!record)
    throw new Error(`no session ${dcpsid}`);
  return record;
}

function stateName(conn)
{
  try { return String(conn.state); } catch (error) { return 'unknown'; }
}

function peerAddressOf(conn)
{
  return conn.peerAddress ? String(conn.peerAddress) : null;
}

/** The socket.io server socket currently carrying this Connection, or undefined. */
function socketOf(conn)
{
  return conn.transport ? conn.transport.socket : undefined;
}

/* ------------------------------------------------------------------------------------------------
 * Sessions and application requests
 */
function watchConnection(conn)
{
  const record = { conn, ready: false, ackedIds: new Set(), closeReason: null };
  records.push(record);

  recordsByConnection.set(conn, record);

  /* A target may send its own messages only after the initiator acked the connect response: 'ready'. */
  record.readyPromise = new Promise((resolve) => {
    conn.once('ready', () => { record.ready = true; resolve(); });
    conn.once('end', resolve); /* then sending fails with the Connection's own error */
  });

  conn.on('session', () => {
    emitLine({ event: 'session', dcpsid: conn.dcpsid, peerAddress: peerAddressOf(conn) });
  });
  conn.on('request', (request) => handleRequest(record, request));
  conn.on('ack', (ack) => {
    record.ackedIds.add(ack && ack.messageId);
    if (record.ackedIds.size > 1000) /* only recent ones matter */
      record.ackedIds.delete(record.ackedIds.values().next().value);
  });
  conn.on('notification', (notification) => {
    emitLine({ event: 'notification', dcpsid: conn.dcpsid || null, messageId: notification.id,
               data: notification.payload ? notification.payload.data : undefined });
  });
  conn.on('error', (error) => {
    emitLine({ event: 'error', dcpsid: conn.dcpsid || null, error: oneLine(error), code: error && error.code });
  });
  conn.on('disconnect', () => emitLine({ event: 'disconnect', dcpsid: conn.dcpsid || null }));
  conn.on('close', () => {
    const reason = record.closeReason;
    emitLine({ event: 'closed', dcpsid: conn.dcpsid || null,
               reason: reason ? oneLine(reason) : null, code: reason ? reason.code || null : null });
  });
}

/** The socket.io-level cut used by the "drop" action and command: the session survives it. */
function cutTransport(conn)
{
  const socket = socketOf(conn);
  if (!socket)
    throw new Error(`session ${conn.dcpsid} has no transport attached`);
  socket.disconnect(true); /* true: close the underlying engine.io connection, not just the namespace */
}

function makeError(spec)
{
  const error = new Error(spec && spec.message !== undefined ? String(spec.message) : 'scheduler double error');
  if (spec && spec.code !== undefined)
    error.code = spec.code;
  return error;
}

/**
 * Resolves once the Connection has handed its Ack for message `messageId` to the transport (the
 * Connection signs acks asynchronously, after the request event has already fired), or after
 * timeoutMs.
 */
function ackSent(record, messageId, timeoutMs)
{
  if (record.ackedIds.has(messageId))
    return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAck = (ack) => {
      if (ack && ack.messageId !== messageId)
        return;
      clearTimeout(timer);
      record.conn.off('ack', onAck);
      resolve(true);
    };
    const timer = setTimeout(() => { record.conn.off('ack', onAck); resolve(false); }, timeoutMs);
    record.conn.on('ack', onAck);
  });
}

function handleRequest(record, request)
{
  const conn = record.conn;
  const operation = request.payload.operation;
  const data = request.payload.data;
  received.push({
    dcpsid:    conn.dcpsid,
    owner:     peerAddressOf(conn),
    operation,
    data,
    messageId: request.id,
    time:      Date.now() / 1000,
  });
  emitLine({ event: 'request', dcpsid: conn.dcpsid, operation, messageId: request.id });

  const handler = handlers.get(operation) || { action: 'echo' };
  let answer;
  switch (handler.action)
  {
    case 'ignore':
      return;
    case 'value':
      answer = () => handler.value;
      break;
    case 'error':
      answer = () => makeError(handler.error);
      break;
    case 'drop':
    case 'echo':
    default:
      answer = () => data;
      break;
  }

  const respond = () => {
    /* While the session is disconnected the Connection queues the response and sends it when the
     * initiator resumes, which is the point of the "drop" action. */
    request.respond(answer()).catch((error) => {
      emitLine({ event: 'error', dcpsid: conn.dcpsid, error: `respond to ${operation}: ${oneLine(error)}` });
    });
  };
  const delayMs = Math.max(0, Number(handler.delayMs) || 0);
  const respondLater = (extraMs) => {
    if (delayMs + extraMs > 0)
      setTimeout(respond, delayMs + extraMs);
    else
      respond();
  };

  if (handler.action !== 'drop')
    return respondLater(0);

  /* drop: cut the socket, then respond once the cut has gone through (10 ms), so the response is queued
   * rather than written to the dying socket. By default the cut waits until our Ack for the request is
   * out (the request is then delivered, only its response is in flight); with beforeAck the Ack is lost
   * with the socket too. */
  const cut = () => {
    try
    {
      cutTransport(conn);
    }
    catch (error)
    {
      emitLine({ event: 'error', dcpsid: conn.dcpsid, error: `drop: ${oneLine(error)}` });
    }
    respondLater(10);
  };
  if (handler.beforeAck)
    cut();
  else
    ackSent(record, request.id, 2000).then(() => setImmediate(cut));
}

/* ------------------------------------------------------------------------------------------------
 * Wallet helpers (dcp-client's own code)
 */
function normalizeHexKey(privateKey)
{
  if (typeof privateKey !== 'string' || !/^(0x)?[0-9a-fA-F]{64}$/.test(privateKey))
    throw new Error('privateKey must be 32 bytes of hex');
  return privateKey.startsWith('0x') ? privateKey : '0x' + privateKey;
}

const signerCache = new Map(); /* hex private key -> Promise<Keystore> */
function signerFor(privateKey)
{
  const key = normalizeHexKey(privateKey).toLowerCase();
  if (!signerCache.has(key))
  {
    const p = new wallet.Keystore(key, ''); /* the constructor is async: it yields a Promise<Keystore> */
    p.catch(() => signerCache.delete(key));
    signerCache.set(key, p);
  }
  return signerCache.get(key);
}

/** Seal a body exactly as a Connection does: identity.makeSignedMessage(body). */
async function sealBody(privateKey, body)
{
  const keystore = await signerFor(privateKey);
  return keystore.makeSignedMessage(body);
}

/** Verify a sealed message the way Connection.prototype.receive does. */
function verifySealed(sealed)
{
  if (typeof sealed !== 'string')
    throw new Error('sealed must be a string');
  const signedMessage = JSON.parse(sealed);
  if (!signedMessage || typeof signedMessage !== 'object')
    throw new Error('sealed message is not an object');
  const owner = new wallet.Address(signedMessage.owner);
  if (!signedMessage.signature)
    throw new Error('message is missing signature');
  if (!signedMessage.body)
    throw new Error('message is missing body');
  /* recoverAddressfromSignature hashes a string argument as-is; give it JSON.stringify(body), which is
   * exactly what Address#verifySignature (the receive() check) hashes. */
  const recovered = String(new wallet.Address(
    wallet.recoverAddressfromSignature(JSON.stringify(signedMessage.body), signedMessage.signature)));
  let valid = false;
  try
  {
    valid = owner.verifySignature(signedMessage.body, signedMessage.signature);
  }
  catch (error) { /* connection.js treats a throw like a bad signature */ }
  return { owner: String(owner), address: recovered, valid };
}

async function keystoreNew(file, passphrase)
{
  if (typeof file !== 'string' || !file)
    throw new Error('path must be a non-empty string');
  if (typeof passphrase !== 'string')
    throw new Error('passphrase must be a string');
  const keystore = await new wallet.Keystore(null, passphrase);
  await wallet.save(keystore, path.resolve(file));
  return { address: String(keystore.address) };
}

async function keystoreRead(file, passphrase)
{
  if (typeof file !== 'string' || !file)
    throw new Error('path must be a non-empty string');
  if (typeof passphrase !== 'string')
    throw new Error('passphrase must be a string');
  const { keystore } = await wallet.load({ name: path.resolve(file) });
  let privateKey;
  try
  {
    privateKey = await keystore.unlock(passphrase);
  }
  finally
  {
    keystore.lock();
  }
  return {
    address:           String(keystore.address),
    privateKeyAddress: String(privateKey.toAddress()),
    label:             keystore.label || null,
  };
}

/* ------------------------------------------------------------------------------------------------
 * Commands
 */
function waitForClose(conn, timeoutMs)
{
  return new Promise((resolve) => {
    if (stateName(conn) === 'closed')
      return resolve(true);
    const timer = setTimeout(() => resolve(false), timeoutMs);
    conn.once('close', () => { clearTimeout(timer); resolve(true); });
  });
}

const commands = {
  async handle(cmd)
  {
    if (typeof cmd.operation !== 'string' || !cmd.operation)
      throw new Error('operation must be a non-empty string');
    const actions = ['echo', 'value', 'error', 'ignore', 'drop'];
    if (!actions.includes(cmd.action))
      throw new Error(`action must be one of ${actions.join(', ')}`);
    if (cmd.delayMs !== undefined && !(Number(cmd.delayMs) >= 0))
      throw new Error('delayMs must be a number >= 0');
    if (cmd.beforeAck !== undefined && (typeof cmd.beforeAck !== 'boolean' || cmd.action !== 'drop'))
      throw new Error('beforeAck is a boolean, for the drop action only');
    handlers.set(cmd.operation, {
      action:    cmd.action,
      value:     cmd.value,
      error:     cmd.error,
      delayMs:   cmd.delayMs,
      beforeAck: cmd.beforeAck === true,
    });
    return {};
  },

  async received()
  {
    return { requests: received };
  },

  async sessions()
  {
    return {
      sessions: records.map(record => ({
        dcpsid:      record.conn.dcpsid || null,
        peerAddress: peerAddressOf(record.conn),
        state:       stateName(record.conn),
        ready:       record.ready,
      })),
    };
  },

  async request(cmd)
  {
    const record = findSession(cmd.dcpsid);
    const conn = record.conn;
    if (typeof cmd.operation !== 'string' || !cmd.operation)
      throw new Error('operation must be a non-empty string');
    await record.readyPromise;
    const response = await conn.request(cmd.operation, cmd.data);
    if (response && response.success === false)
    {
      const payload = response.payload || {};
      const error = new Error(payload.message || 'error response');
      if (payload.code)
        error.code = payload.code;
      error.extra = { payload };
      throw error;
    }
    return { response: response ? response.payload : null };
  },

  async drop(cmd)
  {
    const { conn } = findSession(cmd.dcpsid);
    cutTransport(conn);
    return {};
  },

  async inject(cmd)
  {
    const { conn } = findSession(cmd.dcpsid);
    if (typeof cmd.frame !== 'string')
      throw new Error('frame must be a string');
    const socket = socketOf(conn);
    if (!socket || !socket.connected)
      throw new Error(`session ${cmd.dcpsid} has no connected socket`);
    socket.send(cmd.frame); /* socket.io 'message' event with the raw string, no DCP framing */
    return {};
  },

  async close(cmd)
  {
    const { conn } = findSession(cmd.dcpsid);
    conn.close();
    if (!await waitForClose(conn, 15000))
      throw new Error(`session ${cmd.dcpsid} did not close within 15 s (state ${stateName(conn)})`);
    return {};
  },

  async sign(cmd)
  {
    if (cmd.body === undefined)
      throw new Error('body is required');
    return { sealed: await sealBody(cmd.privateKey, cmd.body) };
  },

  async verify(cmd)
  {
    const result = verifySealed(cmd.sealed);
    if (!result.valid)
    {
      const error = new Error(`signature does not match owner ${result.owner} (recovered ${result.address})`);
      error.extra = { address: result.address, owner: result.owner };
      throw error;
    }
    return { address: result.address, owner: result.owner };
  },

  async keystoreNew(cmd)
  {
    return keystoreNew(cmd.path, cmd.passphrase);
  },

  async keystoreRead(cmd)
  {
    return keystoreRead(cmd.path, cmd.passphrase);
  },

  async shutdown(cmd)
  {
    setImmediate(() => shutdown(0, cmd.id));
    return undefined; /* shutdown() writes the reply itself, just before exiting */
  },
};

/* ------------------------------------------------------------------------------------------------
 * Start-up and shut-down
 */
async function shutdown(status, replyId)
{
  if (shuttingDown)
    return;
  shuttingDown = true;
  const finish = () => {
    removeScratch();
    if (replyId !== undefined)
      emitLine({ id: replyId, ok: true });
    process.exit(status);
  };
  setTimeout(finish, 750).unref(); /* graceful closes wait for peers' goodbyes; do not wait long */
  try
  {
    if (target)
    {
      const closed = new Promise(resolve => target.once('close', resolve));
      target.close();
      await closed;
    }
  }
  catch (error)
  {
    logError(LABEL, 'error while closing the Target', error);
  }
  finish();
}

/**
 * Target's PseudoExpress router answers every request it did not route with a 404 on setImmediate, unless
 * headers were already sent. socket.io's long-polling requests (/dcp5/socketio/?EIO=4&transport=polling)
 * are handled by engine.io in the middle of the listener chain and often answer later (a GET waits for
 * data), so the router would 404 them and engine.io would then crash writing to the finished response.
 * Keep socket.io's path away from that last listener.
 */
function shieldSocketIoFromRouter(httpServer, socketIoPath)
{
  const listeners = httpServer.listeners('request');
  const last = listeners[listeners.length - 1];
  if (listeners.length < 2 || !/magic cookie/.test(String(last)))
    throw new Error('cannot find the PseudoExpress fallback listener on the Target\'s HTTP server');
  httpServer.removeListener('request', last);
  httpServer.on('request', function shieldedFallback(httpRequest, httpResponse) {
    if (typeof httpRequest.url === 'string' && httpRequest.url.startsWith(socketIoPath))
      return; /* engine.io owns it */
    return last.call(this, httpRequest, httpResponse);
  });
}

/**
 * dcp-client does not emit refusals of incoming messages (bad signature, nonce mismatch, wrong dcpsid...)
 * as 'error' events: the Connection shuts itself down with the error. Report those as error events, and
 * remember every Connection's close reason. (Connection instances are not extensible, so this wraps the
 * prototype's shutdown; Connections the double does not watch are left alone.)
 */
function reportShutdownReasons(Connection)
{
  const shutdown = Connection.prototype.shutdown;
  Connection.prototype.shutdown = function reportingShutdown(closeError)
  {
    const record = recordsByConnection.get(this);
    const state = stateName(this);
    if (record && !record.closeReason && closeError && state !== 'closing' && state !== 'closed')
    {
      record.closeReason = closeError;
      /* EPIPE: closed through the API; ECONNRESET: the peer asked to close. Anything else is a failure. */
      if (closeError.code !== 'EPIPE' && closeError.code !== 'ECONNRESET')
        emitLine({ event: 'error', dcpsid: this.dcpsid || null, error: oneLine(closeError),
                   code: closeError.code, shutdown: true });
    }
    return shutdown.apply(this, arguments);
  };
}

async function loadIdentity(args)
{
  if (!args.keystore)
    return new wallet.Keystore(null, '');
  const { keystore } = await wallet.load({ name: path.resolve(args.keystore) });
  const privateKey = await keystore.unlock(args.passphrase);
  keystore.lock();
  /* The Target unlocks its identity with the empty passphrase; give it an equivalent Keystore. */
  return new wallet.Keystore(privateKey, '');
}

async function main()
{
  const args = parseArgs(process.argv.slice(2));
  let version;
  ({ version, protocol, wallet } = await loadDcpClient());

  reportShutdownReasons(protocol.Connection);

  /* Without this every PseudoExpress route (e.g. /status) answers 500. */
  protocol.Target.setBufferCtor(Buffer);

  const identity = await loadIdentity(args);
  const location = new URL('http://127.0.0.1:0/');
  /* Connection options for every session; closeTimeout bounds how long a closing side waits for the
   * peer's 'goodbye' (dcp-client's own initiator often finalizes before sending it, so a server-side
   * close of a dcp-client session takes the whole closeTimeout: 7 s by default). */
  const options = {};
  if (args.closeTimeout !== null)
    options.closeTimeout = args.closeTimeout;
  target = new protocol.Target(['socketio'], { listen: new URL(location.href), location, identity }, options);
  target.on('error', (error) => emitLine({ event: 'error', error: oneLine(error), code: error && error.code }));
  target.on('connection', watchConnection);

  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the Target did not start listening within 10 s')), 10000);
    target.once('listening', () => { clearTimeout(timer); resolve(); });
  });
  shieldSocketIoFromRouter(target.httpServer, new URL(target.url).pathname + 'dcp5/socketio/');

  runCommandLoop(commands, { isClosing: () => shuttingDown, onEnd: () => shutdown(0) });
  emitLine({
    event:     'ready',
    url:       String(target.url),
    address:   String(identity.address),
    dcpClient: version,
    node:      process.version,
    pid:       process.pid,
  });
}

reportUncaught(LABEL);
for (const signal of ['SIGTERM', 'SIGINT'])
  process.on(signal, () => shutdown(0));

main().catch((error) => {
  logError(LABEL, 'cannot start', error);
  emitLine({ event: 'fatal', error: oneLine(error) });
  removeScratch();
  process.exit(3);
});
