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
 *   addJob       {workFunction, slices, arguments?, delivery?, jobId?, name?, slicesPerTask?, faults?,
 *                 artifactHost?, origins?, schedulerConfig?, modules?}
 *                                             -> {jobId}; serve a job (see "Job mode" below)
 *   fault        {jobId, ...faults}           -> {faults}; change a job's faults (a null clears one)
 *   jobStatus    {jobId}                      -> {jobId, sliceCount, pending:[n], held:[n], holders:{n: workerId},
 *                                                done:{n: value}, doneKvin:{n: kvin}, submissions:{n: count},
 *                                                begins:{n: count}, returns:[{sliceNumber, reason, workerId}],
 *                                                emits:[...], results:[...], fetches:{artifact: count},
 *                                                taskRequests:[requestTask@3 data, all jobs, verbatim]}
 *   serveJobs    {}                           -> {}; turn job mode on without adding a job
 *   taskRequests {}                           -> {requests:[{dcpsid, owner, time, data}], unknownJobTraffic:[...]}
 *   shutdown     {}                           -> {} then exit 0
 *
 * Job mode (on after the first addJob, or serveJobs): the double answers requestTask@3, result, status,
 * workEmit, subscribeMany / subscribe / unsubscribe and fetchModuleURL as a scheduler's task distributor,
 * result submitter, event router and package manager would (an operation given a "handle" action keeps
 * that action; every other operation still echoes). Before that, nothing changes.
 *   - requestTask@3 records its data; returns the slices that worker (coreStats.worker, or the id in its
 *     sealed returnAllSlices) holds to pending when fetchState has bit 16 (returnAllSlices) or 4
 *     (startupCheck); with bit 1 (normal) hands out up to slicesPerTask (default 10) pending slices of
 *     each job the request allows (jobIds when not empty; not unresolvedJobs nor rejectedJobs). The answer
 *     is {owner, signature, auth:{workerId, authSlices:{jobId:[n]}}, body:{newJobs:{jobId: JobMessage},
 *     task:{jobId:[SliceMessage]}, computeGroupOrigins:{}}}, the signature the double's identity's
 *     makeSignature(auth); with no slices to give, body is {} (no newJobs: "no work").
 *   - result decodes resultV2 with kvin, records it and counts submissions per slice; answers
 *     {metrics:{...}, slicePaymentAmount:"0.000001"}, or an ENOSLICE error for an unknown job or slice.
 *   - status records 'begin's and puts 'return'ed slices back to pending; workEmit is recorded.
 *   - subscribeMany answers {tokens:[{event, token}]}, a fresh token for each event named, and says so
 *     as a "subscribed" event (with the session, the request's data and the tokens).
 * Values (arguments, data, results) are KVIN v9 (kvin@9). With delivery "http" (the default) the work
 * function, arguments and data are served from the double's origin at /job-<jobId>/work-function.js
 * (application/javascript), /job-<jobId>/argument/<k> and /job-<jobId>/slice/<n> (application/x-kvin);
 * with "data" they are data: URIs escaped as encodeURI does. artifactHost (e.g. "localhost") names the
 * double by another host in those URLs, another origin than the scheduler's; origins ({purpose:[url]})
 * go in the task's computeGroupOrigins for the double's compute group, and schedulerConfig in its
 * body, whenever a task carries the job's slices. modules ({name: source}) become the job's dependencies;
 * fetchModuleURL {modules:[name]} locates each at /job-<jobId>/module/<name> (application/javascript),
 * as {<jobId>: {name: url}}, or answers an ENOENT error when one is unknown (a null source: a
 * dependency the package manager cannot locate). /etc/dcp-config.kvin is the scheduler's
 * web config: every service (taskDistributor, resultSubmitter, eventRouter, packageManager, ...) at the
 * double's own URL, and scheduler.compatibility.minimum.dcp.
 * Faults (addJob's "faults", or the fault command): badDatum:[n] (the datum is not KVIN),
 * missingDatumUri:[n] / missingSliceNumber:[n] (the SliceMessage lacks that field), badSignature:true
 * (tasks with this job carry a garbage signature), artifacts:{"work-function.js"|"argument/K"|"slice/N":
 * {status?, delayMs?, times?}} (HTTP answers), dropOnFirstResult:true (the session that sends the job's
 * first result has its socket cut, as the "drop" action does).
 *
 * Events (no id):
 *   {"event":"session","dcpsid","peerAddress"}             a session was established
 *   {"event":"request","dcpsid","operation","messageId"}   an application request reached a handler
 *   {"event":"notification","dcpsid","messageId","data"}
 *   {"event":"error","error","code",...}                   the Target or a Connection failed or refused
 *                                                          something ("shutdown":true when the
 *                                                          Connection shut down over it)
 *   {"event":"disconnect","dcpsid"}                        a session lost its socket
 *   {"event":"closed","dcpsid","reason","code"}            a Connection closed
 *   {"event":"taskRequest","dcpsid","data"}                job mode: a requestTask@3's data, as received
 *   {"event":"task","dcpsid","workerId","slices"}          job mode: slices ({jobId:[n]}) were handed out
 *   {"event":"result","jobId","sliceNumber","count","authorizationOk","decodeError"}
 *   {"event":"return","workerId","slices","reason"}        slices went back to pending
 *   {"event":"workEmit","jobId","sliceNumber","eventName"}
 *   {"event":"subscribed","dcpsid","data","tokens"}       job mode: a subscribeMany was answered
 *   {"event":"http","path","status"}                       the double served a job artifact or its config
 * The process exits when stdin closes (after letting commands in flight finish, for up to 0.5 s).
 */
'use strict';

const crypto = require('crypto');
const path = require('path');
const {
  emitLine, keepStdoutClean, oneLine, logError, useScratchEnvironment, requireFromPeers, loadDcpClient,
  runCommandLoop, reportUncaught,
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
let protocol, wallet, target, schedulerIdentity;
const kvin = requireFromPeers('kvin'); /* KVIN v9, as a scheduler serializes job values and its web config */

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

  /* An explicit "handle" wins; then the job logic, in job mode; then the default, echo. */
  const handler = handlers.get(operation);
  let plan;
  if (handler)
    plan = planFromHandler(handler, data);
  else if (jobMode && JOB_OPERATIONS.has(operation))
    plan = planJobAnswer(conn, operation, data);
  else
    plan = { answer: () => data };
  if (plan.ignore)
    return;
  deliverAnswer(record, request, operation, plan);
}

/** What a scripted "handle" action answers: { answer, delayMs, drop, beforeAck } or { ignore }. */
function planFromHandler(handler, data)
{
  const plan = { delayMs: handler.delayMs, drop: handler.action === 'drop', beforeAck: handler.beforeAck };
  switch (handler.action)
  {
    case 'ignore':
      return { ignore: true };
    case 'value':
      plan.answer = () => handler.value;
      break;
    case 'error':
      plan.answer = () => makeError(handler.error);
      break;
    case 'drop':
    case 'echo':
    default:
      plan.answer = () => data;
      break;
  }
  return plan;
}

/**
 * Respond to a request as the plan says. plan.answer() gives the response value (an Error becomes an
 * error payload) or a Promise of it; a rejected Promise is answered with the rejection as an error.
 */
function deliverAnswer(record, request, operation, plan)
{
  const conn = record.conn;
  const respond = () => {
    /* While the session is disconnected the Connection queues the response and sends it when the
     * initiator resumes, which is the point of the "drop" action. */
    Promise.resolve()
      .then(plan.answer)
      .catch((error) => (error instanceof Error ? error : makeError({ message: oneLine(error) })))
      .then((value) => request.respond(value))
      .catch((error) => {
        emitLine({ event: 'error', dcpsid: conn.dcpsid, error: `respond to ${operation}: ${oneLine(error)}` });
      });
  };
  const delayMs = Math.max(0, Number(plan.delayMs) || 0);
  const respondLater = (extraMs) => {
    if (delayMs + extraMs > 0)
      setTimeout(respond, delayMs + extraMs);
    else
      respond();
  };

  if (!plan.drop)
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
  if (plan.beforeAck)
    cut();
  else
    ackSent(record, request.id, 2000).then(() => setImmediate(cut));
}

/* ------------------------------------------------------------------------------------------------
 * Job serving: the double as a task distributor, result submitter, event router and web config
 */

/** Operations the job logic answers once job mode is on. */
const JOB_OPERATIONS = new Set([
  'requestTask@3', 'result', 'status', 'workEmit', 'subscribeMany', 'subscribe', 'unsubscribe', 'fetchModuleURL',
]);
/* Capability bits (dcp-client common/scheduler-constants.js): KVINv9 is 64. */
const KVIN_V9_BIT = 64;
/* requestTask@3 fetchState bits (dcp-client utils/fetchState.js). */
const FETCH_NORMAL = 1, FETCH_STARTUP_CHECK = 4, FETCH_RETURN_ALL_SLICES = 16;
/* The compute group the double puts every job in; the supervisor reads it back from jobCgId. */
const COMPUTE_GROUP_ID = 'doublePublicGroup';
const ID_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const JOB_FAULTS = ['badDatum', 'missingDatumUri', 'missingSliceNumber', 'badSignature', 'artifacts', 'dropOnFirstResult'];
/* What a datum with the badDatum fault is served as: not KVIN, not even JSON. */
const BAD_KVIN = '{"_serializeVerId":"v9","what":{"this is":not KVIN';

let jobMode = false;          /* set by addJob or serveJobs */
const jobs = new Map();       /* jobId -> job (see addJob) */
const taskRequests = [];      /* every requestTask@3 the job logic saw: {dcpsid, owner, time, data} */
const issuedAuthorizations = new Set(); /* JSON text of every authorizationMessage the double handed out */
const unknownJobTraffic = []; /* result/status/workEmit about jobs the double does not know */

function randomId(length)
{
  let id = '';
  for (const byte of crypto.randomBytes(length))
    id += ID_ALPHABET[byte % ID_ALPHABET.length];
  return id;
}

/** A URL that KVIN-serializes as dcp-client's DcpURL (ctr "dcpUrl$$DcpURL", arg href), as dcp-config needs. */
class ConfigURL
{
  constructor(href)
  {
    Object.defineProperty(this, 'href', { value: String(href), enumerable: false });
  }

  toKVIN()
  {
    return { ctr: 'dcpUrl$$DcpURL', arg: this.href };
  }
}

/** The scheduler's web config, /etc/dcp-config.kvin: every service at the double's own URL. */
function dcpConfigKvin()
{
  const base = String(target.url);
  const here = () => ({ location: new ConfigURL(base) });
  return kvin.serialize({
    scheduler: {
      location:      new ConfigURL(base),
      compatibility: { minimum: { dcp: '^5.0.0' } },
      services:      {
        taskDistributor: here(),
        resultSubmitter: here(),
        eventRouter:     here(),
        jobSubmit:       here(),
      },
    },
    packageManager: here(),
    bank:           { location: new ConfigURL(base), services: { bankTeller: here() } },
  });
}

/** The data: URI for text of the given media type, escaped the way encodeURI does (the worker decodeURIs it). */
function dataUri(mediaType, text)
{
  return `data:${mediaType},${encodeURI(text)}`;
}

function artifactUrl(job, name)
{
  const url = new URL(`job-${job.id}/${name}`, String(target.url));
  if (job.artifactHost)
    url.hostname = job.artifactHost;
  return url.href;
}

/** The body and content type of a job artifact ("work-function.js", "argument/K", "slice/N"), or null. */
function artifactBody(job, name)
{
  if (name === 'work-function.js')
    return { type: 'application/javascript', body: job.workFunction };
  const module = /^module\/(.+)$/.exec(name);
  if (module && typeof job.modules[module[1]] === 'string')
    return { type: 'application/javascript', body: job.modules[module[1]] };
  let match = /^argument\/(\d+)$/.exec(name);
  if (match && Number(match[1]) < job.arguments.length)
    return { type: 'application/x-kvin', body: kvin.serialize(job.arguments[Number(match[1])]) };
  match = /^slice\/(\d+)$/.exec(name);
  if (match && job.slices.has(Number(match[1])))
  {
    const n = Number(match[1]);
    const bad = job.faults.badDatum && job.faults.badDatum.includes(n);
    return { type: 'application/x-kvin', body: bad ? BAD_KVIN : kvin.serialize(job.slices.get(n).datum) };
  }
  return null;
}

/** Where the worker finds an artifact: an URL on the double, or a data: URI (delivery "data"). */
function artifactLocation(job, name)
{
  if (job.delivery === 'http')
    return artifactUrl(job, name);
  const { type, body } = artifactBody(job, name);
  /* Code goes as text/plain: the worker decodes data:application/javascript to bytes, not to a string. */
  return dataUri(type === 'application/javascript' ? 'text/plain;charset=utf-8' : type, body);
}

/** PseudoExpress route for /job-<jobId>/<artifact>, with the job's artifact faults (status, delay, times). */
function serveArtifact(httpRequest, response)
{
  const match = /^\/job-([A-Za-z0-9]+)\/(.+)$/.exec(httpRequest.path);
  const job = match && jobs.get(match[1]);
  const name = match && match[2];
  const artifact = job && artifactBody(job, name);
  const send = (status, type, body) => {
    response.statusCode = status;
    response.set('content-type', type);
    response.set('cache-control', 'no-cache');
    response.send(body);
    emitLine({ event: 'http', path: httpRequest.path, status });
  };
  if (!artifact)
    return send(404, 'text/plain', `${httpRequest.path}: no such artifact\n`);

  job.fetches[name] = (job.fetches[name] || 0) + 1;
  const fault = job.faults.artifacts && job.faults.artifacts[name];
  const active = fault && !(fault.times >= 0 && (fault.used || 0) >= fault.times);
  if (active)
    fault.used = (fault.used || 0) + 1;
  const status = active && fault.status ? fault.status : 200;
  const reply = () => {
    if (status >= 200 && status < 300)
      send(status, artifact.type, artifact.body);
    else
      send(status, 'text/plain', `${httpRequest.path}: HTTP ${status} (fault injected by the scheduler double)\n`);
  };
  const delayMs = active ? Number(fault.delayMs) || 0 : 0;
  if (delayMs > 0)
    setTimeout(reply, delayMs);
  else
    reply();
}

function checkSliceList(value, what)
{
  if (value === undefined || value === null)
    return;
  if (!Array.isArray(value) || !value.every(n => Number.isInteger(n) && n > 0))
    throw new Error(`${what} must be a list of slice numbers`);
}

/** Validate and merge fault settings into job.faults (a null value removes that fault). */
function applyFaults(job, faults)
{
  if (faults === undefined || faults === null)
    return;
  if (typeof faults !== 'object' || Array.isArray(faults))
    throw new Error('faults must be an object');
  for (const [key, value] of Object.entries(faults))
  {
    if (!JOB_FAULTS.includes(key))
      throw new Error(`unknown fault ${JSON.stringify(key)}; known: ${JOB_FAULTS.join(', ')}`);
    if (['badDatum', 'missingDatumUri', 'missingSliceNumber'].includes(key))
      checkSliceList(value, key);
    else if (key === 'badSignature' || key === 'dropOnFirstResult')
    {
      if (value !== null && typeof value !== 'boolean')
        throw new Error(`${key} must be a boolean`);
    }
    else if (key === 'artifacts' && value !== null)
    {
      if (typeof value !== 'object' || Array.isArray(value))
        throw new Error('artifacts must map artifact names ("work-function.js", "argument/K", "slice/N") to {status?, delayMs?, times?}');
      for (const [name, spec] of Object.entries(value))
      {
        if (!/^(work-function\.js|argument\/\d+|slice\/\d+)$/.test(name))
          throw new Error(`unknown artifact ${JSON.stringify(name)}`);
        if (!spec || typeof spec !== 'object')
          throw new Error(`artifacts[${JSON.stringify(name)}] must be an object`);
        if (spec.status !== undefined && !(Number.isInteger(spec.status) && spec.status >= 200 && spec.status < 600))
          throw new Error('artifact status must be an HTTP status code');
        if (spec.delayMs !== undefined && !(Number(spec.delayMs) >= 0))
          throw new Error('artifact delayMs must be a number >= 0');
        if (spec.times !== undefined && !(Number.isInteger(spec.times) && spec.times >= 0))
          throw new Error('artifact times must be an integer >= 0');
      }
    }
    if (value === null)
      delete job.faults[key];
    else
      job.faults[key] = key === 'artifacts' ? JSON.parse(JSON.stringify(value)) : value;
  }
}

function addJob(cmd)
{
  if (typeof cmd.workFunction !== 'string' || !cmd.workFunction.trim())
    throw new Error('workFunction must be the JavaScript source of a function expression');
  if (!Array.isArray(cmd.slices))
    throw new Error('slices must be a list of datum values');
  if (cmd.arguments !== undefined && !Array.isArray(cmd.arguments))
    throw new Error('arguments must be a list');
  const delivery = cmd.delivery === undefined ? 'http' : cmd.delivery;
  if (delivery !== 'http' && delivery !== 'data')
    throw new Error('delivery must be "http" or "data"');
  const slicesPerTask = cmd.slicesPerTask === undefined ? 10 : cmd.slicesPerTask;
  if (!(Number.isInteger(slicesPerTask) && slicesPerTask > 0))
    throw new Error('slicesPerTask must be an integer > 0');
  const id = cmd.jobId === undefined ? randomId(22) : cmd.jobId;
  /* No "-": the supervisor splits jobCgId (jobId-cgId) at the last one. */
  if (typeof id !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(id))
    throw new Error('jobId must be 1-64 letters and digits');
  if (jobs.has(id))
    throw new Error(`job ${id} exists already`);
  const name = cmd.name === undefined ? `scheduler double job ${id}` : String(cmd.name);
  if (cmd.artifactHost !== undefined && !/^[A-Za-z0-9.-]+$/.test(String(cmd.artifactHost)))
    throw new Error('artifactHost must be a host name');
  for (const [option, value] of [['origins', cmd.origins], ['schedulerConfig', cmd.schedulerConfig], ['modules', cmd.modules]])
  {
    if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value)))
      throw new Error(`${option} must be an object`);
  }

  const job = {
    id,
    name,
    workFunction:  cmd.workFunction,
    arguments:     cmd.arguments || [],
    delivery,
    slicesPerTask,
    slices:        new Map(),
    faults:        {},
    fetches:       {},    /* artifact name -> HTTP GETs */
    returns:       [],    /* {sliceNumber, reason, workerId} */
    emits:         [],    /* workEmit data */
    results:       [],    /* one record per result request */
    firstResultSeen: false,
    artifactHost:    cmd.artifactHost,
    origins:         cmd.origins,
    schedulerConfig: cmd.schedulerConfig,
    modules:         cmd.modules || {},
  };
  cmd.slices.forEach((datum, index) => {
    job.slices.set(index + 1, {
      datum, state: 'pending', holder: null, value: undefined, submissions: 0, begins: 0,
    });
  });
  applyFaults(job, cmd.faults);
  jobs.set(id, job);
  jobMode = true;
  return { jobId: id };
}

function findJob(jobId)
{
  const job = jobs.get(jobId);
  if (!job)
    throw new Error(`no job ${JSON.stringify(jobId)}`);
  return job;
}

/** The JobMessage the supervisor reads (supervisor2 job-manager.js, sandbox2.js). */
function jobMessage(job)
{
  return {
    jobId:             job.id,
    jobCgId:           `${job.id}-${COMPUTE_GROUP_ID}`,
    codeLocation:      artifactLocation(job, 'work-function.js'),
    argumentsLocation: job.arguments.map((_, k) => ({ argIndex: k, value: artifactLocation(job, `argument/${k}`) })),
    useStrict:         false,
    dependencies:      Object.keys(job.modules),
    requirePath:       [],
    modulePath:        [],
    public:            { name: job.name, description: 'a job served by the scheduler double', link: '' },
    needCapabilities:  KVIN_V9_BIT,
    worktime:          { name: 'map-basic', version: '^1.0.0' },
    metrics:           {
      sliceCPUTime: 0, sliceGPUTime: 0, sliceCPUDensity: 1, sliceGPUDensity: 0,
      sliceInDataSize: 0, sliceOutDataSize: 0, lastSliceNumber: 0, measuredSlices: 0, alpha: 0.5,
    },
    workerConsole:     false,
    almostDone:        false,
    localExec:         false,
    discrete:          false,
  };
}

/** The SliceMessage for slice n (supervisor2 slice2.js), with the job's slice-message faults. */
function sliceMessage(job, n)
{
  const message = {
    sliceNumber:       n,
    jobId:             job.id,
    datumUri:          artifactLocation(job, `slice/${n}`),
    isEstimationSlice: false,
    isLongSlice:       false,
    resultStorageType: 'values',
  };
  if (job.faults.missingDatumUri && job.faults.missingDatumUri.includes(n))
    delete message.datumUri;
  if (job.faults.missingSliceNumber && job.faults.missingSliceNumber.includes(n))
    delete message.sliceNumber;
  return message;
}

/** The signature's wire form: what JSON makes of {r: Buffer, s: Buffer, v} (the worker echoes it). */
function wireForm(value)
{
  return JSON.parse(JSON.stringify(value));
}

async function signAuthorization(auth, garbage)
{
  let signature;
  if (garbage)
    signature = { r: { type: 'Buffer', data: [...crypto.randomBytes(32)] },
                  s: { type: 'Buffer', data: [...crypto.randomBytes(32)] }, v: 27 };
  else
    signature = wireForm(await schedulerIdentity.makeSignature(auth));
  const message = { owner: String(schedulerIdentity.address), signature, auth };
  issuedAuthorizations.add(JSON.stringify(message));
  return message;
}

/** Whether an echoed authorizationMessage is one the double issued, its signature holds, and it covers the slice. */
function checkAuthorization(message, jobId, sliceNumber, workerId)
{
  if (!message || typeof message !== 'object')
    return 'missing';
  if (!issuedAuthorizations.has(JSON.stringify(message)))
    return 'not issued by this scheduler (or altered)';
  let valid = false;
  try
  {
    valid = new wallet.Address(message.owner).verifySignature(message.auth, message.signature);
  }
  catch (error) { /* a malformed signature is a bad one */ }
  if (!valid)
    return 'bad signature';
  const slices = message.auth && message.auth.authSlices && message.auth.authSlices[jobId];
  if (sliceNumber !== undefined && !(Array.isArray(slices) && slices.includes(sliceNumber)))
    return `does not cover slice ${sliceNumber} of job ${jobId}`;
  if (workerId !== undefined && message.auth.workerId !== workerId)
    return `issued to worker ${message.auth.workerId}, not ${workerId}`;
  return null;
}

/** The worker id a requestTask@3 speaks for: coreStats.worker, or the body of its sealed returnAllSlices. */
function workerIdOf(data)
{
  if (data && data.coreStats && typeof data.coreStats.worker === 'string')
    return data.coreStats.worker;
  const sealed = data && data.returnAllSlices;
  if (typeof sealed === 'string')
  {
    try
    {
      const checked = verifySealed(sealed);
      const body = JSON.parse(sealed).body;
      if (checked.valid && body && typeof body.id === 'string')
        return body.id;
    }
    catch (error) { /* not a sealed message */ }
  }
  return null;
}

/** Put every slice that workerId holds back to pending; returns {jobId: [n...]}. */
function returnAllSlicesOf(workerId, reason)
{
  const returned = {};
  for (const job of jobs.values())
  {
    for (const [n, slice] of job.slices)
    {
      if (slice.state !== 'held' || slice.holder !== workerId)
        continue;
      slice.state = 'pending';
      slice.holder = null;
      job.returns.push({ sliceNumber: n, reason, workerId });
      (returned[job.id] = returned[job.id] || []).push(n);
    }
  }
  if (Object.keys(returned).length)
    emitLine({ event: 'return', workerId, slices: returned, reason });
  return returned;
}

async function answerRequestTask(conn, data)
{
  data = data || {};
  taskRequests.push({ dcpsid: conn.dcpsid, owner: peerAddressOf(conn), time: Date.now() / 1000, data });
  emitLine({ event: 'taskRequest', dcpsid: conn.dcpsid, data });
  const fetchState = Number(data.fetchState) || 0;
  const workerId = workerIdOf(data);

  if ((fetchState & (FETCH_RETURN_ALL_SLICES | FETCH_STARTUP_CHECK)) && workerId)
    returnAllSlicesOf(workerId, fetchState & FETCH_RETURN_ALL_SLICES ? 'returnAllSlices' : 'startupCheck');

  const authSlices = {}, newJobs = {}, task = {}, computeGroupOrigins = {};
  let garbage = false, schedulerConfig;
  if (fetchState & FETCH_NORMAL)
  {
    const onlyJobs = Array.isArray(data.jobIds) && data.jobIds.length ? data.jobIds : null;
    const skipJobs = new Set([].concat(data.unresolvedJobs || [], data.rejectedJobs || []));
    for (const job of jobs.values())
    {
      if ((onlyJobs && !onlyJobs.includes(job.id)) || skipJobs.has(job.id))
        continue;
      const picked = [];
      for (const [n, slice] of job.slices)
      {
        if (picked.length >= job.slicesPerTask)
          break;
        if (slice.state === 'pending')
          picked.push(n);
      }
      if (!picked.length)
        continue;
      for (const n of picked)
        Object.assign(job.slices.get(n), { state: 'held', holder: workerId });
      authSlices[job.id] = picked;
      /* Every job of the task goes in newJobs, every time: the supervisor takes slices only for jobs in
       * newJobs (and merges the message into a job it already knows). */
      newJobs[job.id] = jobMessage(job);
      task[job.id] = picked.map(n => sliceMessage(job, n));
      if (job.origins)
        computeGroupOrigins[COMPUTE_GROUP_ID] = Object.assign(computeGroupOrigins[COMPUTE_GROUP_ID] || {}, job.origins);
      if (job.schedulerConfig)
        schedulerConfig = job.schedulerConfig;
      garbage = garbage || Boolean(job.faults.badSignature);
    }
  }

  const auth = { workerId, authSlices };
  const authorizationMessage = await signAuthorization(auth, garbage);
  if (!Object.keys(task).length)
    return Object.assign(authorizationMessage, { body: {} }); /* no work: no body.newJobs */
  emitLine({ event: 'task', dcpsid: conn.dcpsid, workerId, slices: authSlices });
  const body = { newJobs, task, computeGroupOrigins };
  if (schedulerConfig)
    body.schedulerConfig = schedulerConfig;
  return Object.assign(authorizationMessage, { body });
}

/** fetchModuleURL: {<jobId>: {name: url}} for modules some job has, or an ENOENT error. */
function locateModules(names)
{
  const located = {};
  for (const name of [].concat(names || []))
  {
    const job = [...jobs.values()].find(candidate => typeof candidate.modules[name] === 'string');
    if (!job)
      return Object.assign(new Error(`the scheduler double has no module ${name}`), { code: 'ENOENT' });
    (located[job.id] = located[job.id] || {})[name] = artifactUrl(job, `module/${name}`);
  }
  return located;
}

/** Decode resultV2: a KVIN-marshalled {string, method, MIMEType} whose string is JSON or KVIN text. */
function decodeResultV2(resultV2)
{
  const envelope = kvin.unmarshal(resultV2);
  if (!envelope || typeof envelope.string !== 'string')
    throw new Error('resultV2 does not hold {string, method, MIMEType}');
  switch (envelope.method)
  {
    case 'kvin': return kvin.deserialize(envelope.string);
    case 'json': return JSON.parse(envelope.string);
    default: throw new Error(`unknown resultV2 method ${JSON.stringify(envelope.method)}`);
  }
}

function answerResult(data)
{
  data = data || {};
  const job = jobs.get(data.job);
  const sliceNumber = data.slice;
  const slice = job && job.slices.get(sliceNumber);
  if (!slice)
  {
    unknownJobTraffic.push({ operation: 'result', data });
    throw Object.assign(new Error(`no slice ${sliceNumber} in job ${data.job}`), { code: 'ENOSLICE' });
  }
  let value, valueKvin = null, decodeError = null;
  try
  {
    value = decodeResultV2(data.resultV2);
    valueKvin = kvin.serialize(value);
  }
  catch (error)
  {
    decodeError = oneLine(error);
  }
  const authorizationError = checkAuthorization(data.authorizationMessage, job.id, sliceNumber, data.worker);
  slice.submissions += 1;
  if (!decodeError && slice.state !== 'done')
    Object.assign(slice, { state: 'done', value, valueKvin });
  const record = {
    jobId:          job.id,
    sliceNumber,
    value,
    valueKvin,
    decodeError,
    workerId:       data.worker === undefined ? null : data.worker,
    paymentAddress: data.paymentAddress === undefined ? null : data.paymentAddress,
    metrics:        data.metrics === undefined ? null : data.metrics,
    authorizationOk: authorizationError === null,
    authorizationError,
    count:          slice.submissions,
    time:           Date.now() / 1000,
  };
  job.results.push(record);
  emitLine({ event: 'result', jobId: job.id, sliceNumber, count: slice.submissions, authorizationOk: record.authorizationOk,
             decodeError });
  if (decodeError)
    throw Object.assign(new Error(`cannot decode resultV2: ${decodeError}`), { code: 'EINVAL' });
  return {
    metrics: {
      sliceCPUTime: 1, sliceGPUTime: 0, sliceCPUDensity: 1, sliceGPUDensity: 0,
      sliceInDataSize: 0, sliceOutDataSize: 0, lastSliceNumber: sliceNumber, measuredSlices: 1, alpha: 0.5,
    },
    slicePaymentAmount: '0.000001',
  };
}

function answerStatus(data)
{
  data = data || {};
  const groups = Array.isArray(data.slices) ? data.slices : [];
  for (const group of groups)
  {
    const job = group && jobs.get(group.job);
    if (!job)
    {
      unknownJobTraffic.push({ operation: 'status', data: group });
      continue;
    }
    const numbers = Array.isArray(group.sliceNumbers) ? group.sliceNumbers : [group.sliceNumber];
    for (const n of numbers)
    {
      const slice = job.slices.get(n);
      if (group.status === 'begin')
      {
        if (slice)
          slice.begins += 1;
      }
      else if (group.status === 'return')
      {
        job.returns.push({ sliceNumber: n, reason: group.reason === undefined ? null : group.reason, workerId: data.worker });
        if (slice && slice.state !== 'done')
          Object.assign(slice, { state: 'pending', holder: null });
      }
    }
    if (group.status === 'return')
      emitLine({ event: 'return', workerId: data.worker, slices: { [job.id]: numbers }, reason: group.reason });
  }
  return {};
}

function answerWorkEmit(data)
{
  data = data || {};
  const job = jobs.get(data.job);
  const record = {
    eventName:   data.eventName, payload: data.payload, sliceNumber: data.slice, workerId: data.worker,
    authorizationOk: checkAuthorization(data.authorizationMessage, data.job, undefined, undefined) === null,
    time:        Date.now() / 1000,
  };
  if (job)
    job.emits.push(record);
  else
    unknownJobTraffic.push({ operation: 'workEmit', data });
  emitLine({ event: 'workEmit', jobId: data.job, sliceNumber: data.slice, eventName: data.eventName });
  return {};
}

/**
 * The job logic's plan for one request. Its bookkeeping happens now, once, whatever happens to the
 * response; a job's dropOnFirstResult fault turns its first result into a "drop".
 */
function planJobAnswer(conn, operation, data)
{
  let drop = false;
  let answer;
  try
  {
    switch (operation)
    {
      case 'requestTask@3':
        answer = answerRequestTask(conn, data);
        break;
      case 'result':
      {
        const job = data && jobs.get(data.job);
        if (job && job.faults.dropOnFirstResult && !job.firstResultSeen)
          drop = true;
        if (job)
          job.firstResultSeen = true;
        answer = answerResult(data);
        break;
      }
      case 'status':
        answer = answerStatus(data);
        break;
      case 'workEmit':
        answer = answerWorkEmit(data);
        break;
      case 'subscribeMany':
      {
        const events = [].concat((data && (data.schedmsgEvents || [].concat(data.reliableEvents || [], data.optionalEvents || []))) || []);
        answer = { tokens: events.map(event => ({ event, token: randomId(21) })) };
        emitLine({ event: 'subscribed', dcpsid: conn.dcpsid, data, tokens: answer.tokens });
        break;
      }
      case 'subscribe':
        answer = { token: randomId(21) };
        break;
      case 'unsubscribe':
        answer = {};
        break;
      case 'fetchModuleURL':
        answer = locateModules(data && data.modules);
        break;
      default:
        throw new Error(`no job logic for ${operation}`);
    }
  }
  catch (error)
  {
    answer = error instanceof Error ? error : makeError({ message: oneLine(error) });
  }
  const settled = Promise.resolve(answer);
  settled.catch((error) => emitLine({ event: 'error', dcpsid: conn.dcpsid, error: `${operation}: ${oneLine(error)}` }));
  return { answer: () => settled, drop };
}

function jobStatus(job)
{
  const pending = [], held = [], done = {}, doneKvin = {}, submissions = {}, begins = {}, holders = {};
  for (const [n, slice] of job.slices)
  {
    if (slice.state === 'pending')
      pending.push(n);
    else if (slice.state === 'held')
    {
      held.push(n);
      holders[n] = slice.holder;
    }
    else
    {
      done[n] = slice.value;
      doneKvin[n] = slice.valueKvin;
    }
    if (slice.submissions)
      submissions[n] = slice.submissions;
    if (slice.begins)
      begins[n] = slice.begins;
  }
  return {
    jobId:        job.id,
    sliceCount:   job.slices.size,
    pending,
    held,
    holders,
    done,
    doneKvin,
    submissions,
    begins,
    returns:      job.returns,
    emits:        job.emits,
    results:      job.results,
    fetches:      job.fetches,
    taskRequests: taskRequests.map(request => request.data),
  };
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

  async addJob(cmd)
  {
    return addJob(cmd);
  },

  async fault(cmd)
  {
    const job = findJob(cmd.jobId);
    const faults = Object.assign({}, cmd);
    delete faults.id;
    delete faults.cmd;
    delete faults.jobId;
    applyFaults(job, faults);
    return { faults: job.faults };
  },

  async jobStatus(cmd)
  {
    return jobStatus(findJob(cmd.jobId));
  },

  async serveJobs()
  {
    jobMode = true;
    return {};
  },

  async taskRequests()
  {
    return { requests: taskRequests, unknownJobTraffic };
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

  const identity = schedulerIdentity = await loadIdentity(args);
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
  target.get('/etc/dcp-config.kvin', (httpRequest, response) => {
    response.set('content-type', 'application/x-kvin');
    response.set('cache-control', 'no-cache');
    response.send(dcpConfigKvin());
    emitLine({ event: 'http', path: httpRequest.path, status: 200 });
  });
  target.get(/^\/job-[A-Za-z0-9]+\/.+$/, serveArtifact);

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
