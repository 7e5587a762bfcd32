#!/usr/bin/env node
/*
 * official_worker.js - dcp-client 5.6.1's own worker (DistributiveWorker, require('dcp/worker')) run
 * against a scheduler, with dcp-client's node evaluator in this process, as job.localExec() sets it up:
 * libexec/evaluator-node.js's Evaluator on one end of a Unix socket, lib/standaloneWorker.js's
 * StandaloneWorker on the other, one connection per sandbox, bootstrapped with the "node" list of
 * generated/sandbox-definitions.json. Driven over newline-delimited JSON on stdin/stdout, like double.js.
 *
 * Usage: node tests/scheduler/official_worker.js SCHEDULER_URL [options]
 *   --identity FILE      identity keystore (V3 JSON); default: a fresh random identity
 *   --passphrase P       its passphrase (default: empty)
 *   --payment-address A  where earnings go; default: the address of a fresh random keystore
 *   --job-id ID          fetch only this job (repeatable); default: any job (jobIds: false)
 *   --cores N            cores.cpu (default 1)
 *   --max-sandboxes N    maxSandboxes (default: cores)
 *   --evaluator HOST:PORT  run sandboxes on a standalone evaluator at HOST:PORT (one TCP connection per
 *                        sandbox, lib/standaloneWorker.js as dcp-worker uses it) instead of the node
 *                        evaluator in this process
 *
 * The scheduler is told by DCP_SCHEDULER_LOCATION=SCHEDULER_URL, and its web config is read from
 * DCP_CONFIG_LOCATION (default SCHEDULER_URL/etc/dcp-config.kvin), as dcp-client's init() does.
 * The environment must give HOME / DCP_RESOURCE_DIR a place this user can write.
 * dcp-client's evaluator-node.js exits the process when run as root, so this refuses to start as root.
 *
 * stdout carries only protocol lines. Events (no id):
 *   {"event":"ready","pid","workerId","identity","paymentAddress","dcpClient","node","jobIds","cores","maxSandboxes"}
 *   {"event":"fatal","error"}                                   start-up failed; exit status 3
 *   {"event":"fetch","jobs":{jobId: sliceCount},"size","fetchMs"} a task arrived (jobs {} when no work)
 *   {"event":"fetchError","error"}
 *   {"event":"job","jobId","name"}                              a job was loaded
 *   {"event":"sandbox","sandboxId"}                             a sandbox became ready
 *   {"event":"slice","jobId","sliceNumber","sandboxId"}         a sandbox started a slice
 *   {"event":"result","jobId","sliceNumber","payloadLength"}    a result was accepted by the scheduler
 *   {"event":"resultError","jobId","sliceNumber","error"}       a result submission failed
 *   {"event":"payment","jobId","sliceNumber","amount","paymentAddress"}
 *   {"event":"return","jobId","sliceNumber"}                    a slice was given back (drop-slice)
 *   {"event":"error","error","code"} / {"event":"warning","warning"}
 *   {"event":"end"}                                             the worker stopped; the process exits 0
 * Commands ({"id","cmd",...}; replies {"id","ok":true,...} or {"id","ok":false,"error"}):
 *   state    {}               -> {stopping, workingSlices, queuedSlices, sandboxes, results, payments}
 *   stop     {force?: bool}   -> {} once the worker has ended (force terminates working sandboxes)
 *   shutdown {}               -> {} then exit 0 (a forced stop first)
 * End of stdin, SIGINT and SIGTERM stop the worker gracefully (force on a second signal) and exit.
 */
'use strict';

const fs   = require('fs');
const net  = require('net');
const os   = require('os');
const path = require('path');
const { createRequire } = require('module');
const {
  emitLine, keepStdoutClean, oneLine, logError, requireFromPeers, loadDcpClient, runCommandLoop, reportUncaught,
} = require('./common');

const LABEL = 'official worker';
keepStdoutClean();

function parseArgs(argv)
{
  const args = { url: null, identity: null, passphrase: '', paymentAddress: null, jobIds: [], cores: 1,
                 maxSandboxes: null, evaluator: null };
  for (let i = 0; i < argv.length; i++)
  {
    const flag = argv[i];
    const value = () => {
      if (argv[i + 1] === undefined)
        throw new Error(`missing value for ${flag}`);
      return argv[++i];
    };
    switch (flag)
    {
      case '--identity':        args.identity = value(); break;
      case '--passphrase':      args.passphrase = value(); break;
      case '--payment-address': args.paymentAddress = value(); break;
      case '--job-id':          args.jobIds.push(value()); break;
      case '--cores':           args.cores = Number(value()); break;
      case '--max-sandboxes':   args.maxSandboxes = Number(value()); break;
      case '--evaluator':       args.evaluator = value(); break;
      default:
        if (flag.startsWith('--') || args.url)
          throw new Error(`unknown argument ${flag}`);
        args.url = flag;
    }
  }
  if (!args.url)
    throw new Error('usage: official_worker.js SCHEDULER_URL [--identity FILE] [--payment-address A] ...');
  if (!(Number.isInteger(args.cores) && args.cores > 0))
    throw new Error('--cores needs an integer > 0');
  if (args.maxSandboxes === null)
    args.maxSandboxes = args.cores;
  if (!(Number.isInteger(args.maxSandboxes) && args.maxSandboxes > 0))
    throw new Error('--max-sandboxes needs an integer > 0');
  if (args.evaluator !== null && !/^[^:]+:\d+$/.test(args.evaluator))
    throw new Error('--evaluator needs HOST:PORT');
  return args;
}

let worker;
let readySent = false;
const earlyEvents = []; /* events from before the "ready" line, which must come first */
let shuttingDown = false;
let stopRequested = false;
const counters = { results: 0, payments: 0 };
let resolveEnd;
const endPromise = new Promise((resolve) => { resolveEnd = resolve; });

/* ------------------------------------------------------------------------------------------------
 * The node evaluator, wired up the way dcp-client's worker/evaluators/node-localExec.js does it
 */

/** The bootstrap files for the "node" sandbox, resolved as node-localExec.js resolves them. */
function sandboxControlFiles(dcpClientDir)
{
  const requireFromDcpClient = createRequire(path.join(dcpClientDir, 'index.js'));
  const definitions = JSON.parse(fs.readFileSync(path.join(dcpClientDir, 'generated', 'sandbox-definitions.json'), 'utf8'));
  return definitions.node.map(name => (name.includes('/')
    ? requireFromDcpClient.resolve(name)                                   /* a package file: kvin/kvin.js */
    : requireFromDcpClient.resolve(`./libexec/sandbox/${name}`)));         /* one of dcp-client's own */
}

/**
 * A SandboxConstructor: every instance is a StandaloneWorker talking over a fresh connection to a Unix
 * socket whose server end hosts an Evaluator (libexec/evaluator-node.js) in this very process.
 */
async function makeNodeEvaluatorConstructor(socketDir)
{
  const dcpClientDir = path.dirname(requireFromPeers.resolve('dcp-client/package.json'));
  /* Loading evaluator-node.js as root makes it exit the process: the caller checked the uid first. */
  const { Evaluator } = requireFromPeers('dcp-client/libexec/evaluator-node');
  const { workerFactory } = requireFromPeers('dcp-client/lib/standaloneWorker');
  const controlFiles = sandboxControlFiles(dcpClientDir);
  const socketPath = path.join(socketDir, 'evaluator.sock');
  const server = net.createServer(socket => new Evaluator(socket, socket, controlFiles));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  server.unref();

  function NodeEvaluator()
  {
    const socket = net.createConnection(socketPath);
    return new (workerFactory({ readStream: socket, writeStream: socket }))();
  }
  return { NodeEvaluator, server };
}

/** A SandboxConstructor whose instances each open a TCP connection to a standalone evaluator. */
function makeStandaloneEvaluatorConstructor(hostPort)
{
  const { workerFactory } = requireFromPeers('dcp-client/lib/standaloneWorker');
  const separator = hostPort.lastIndexOf(':');
  const options = { hostname: hostPort.slice(0, separator), port: Number(hostPort.slice(separator + 1)) };
  function StandaloneEvaluator()
  {
    return new (workerFactory({ ...options }))();
  }
  return StandaloneEvaluator;
}

/* ------------------------------------------------------------------------------------------------
 * Worker events
 */
function emitEvent(event)
{
  if (readySent)
    emitLine(event);
  else
    earlyEvents.push(event);
}

function watchWorker()
{
  worker.on('fetch', (fetched) => {
    if (fetched instanceof Error)
      return emitEvent({ event: 'fetchError', error: oneLine(fetched) });
    emitEvent({ event: 'fetch', jobs: fetched.slices || {}, size: fetched.fetchSize,
               fetchMs: fetched.fetchEnd - fetched.fetchStart });
  });
  worker.on('job', (job) => emitEvent({ event: 'job', jobId: job.id, name: job.name }));
  worker.on('sandbox', (sandbox) => {
    emitEvent({ event: 'sandbox', sandboxId: sandbox.id });
    sandbox.on('slice', (sliceNumber) => {
      emitEvent({ event: 'slice', jobId: sandbox.jobId, sliceNumber, sandboxId: sandbox.id });
    });
  });
  worker.on('result', (urlOrError, payloadLength, jobId, sliceNumber) => {
    if (urlOrError instanceof Error)
      return emitEvent({ event: 'resultError', jobId, sliceNumber, error: oneLine(urlOrError) });
    counters.results++;
    emitEvent({ event: 'result', jobId, sliceNumber, payloadLength });
  });
  worker.on('payment', (amount, paymentAddress, jobId, sliceNumber) => {
    counters.payments++;
    emitEvent({ event: 'payment', jobId, sliceNumber, amount: String(amount), paymentAddress: String(paymentAddress) });
  });
  worker.on('drop-slice', (dropped) => {
    emitEvent({ event: 'return', jobId: dropped && dropped.jobId, sliceNumber: dropped && dropped.sliceNumber });
  });
  worker.on('error', (error) => emitEvent({ event: 'error', error: oneLine(error), code: error && (error.code || error.errorCode) }));
  worker.on('warning', (warning) => emitEvent({ event: 'warning', warning: oneLine(warning) }));
  worker.on('end', () => {
    emitEvent({ event: 'end' });
    resolveEnd();
  });
}

/** Ask the worker to stop (once; force upgrades a graceful stop); resolves on its 'end' event. */
function stopWorker(force)
{
  if (!worker)
    return Promise.resolve();
  if (!stopRequested || force)
  {
    stopRequested = true;
    try
    {
      Promise.resolve(worker.stop(Boolean(force))).catch(error => logError(LABEL, 'stop', error));
    }
    catch (error)
    {
      logError(LABEL, 'stop', error);
    }
  }
  return endPromise;
}

const commands = {
  async state()
  {
    const length = (value) => (Array.isArray(value) ? value.length : null);
    return {
      stopping:      stopRequested,
      workingSlices: length(worker.workingSlices),
      queuedSlices:  length(worker.queuedSlices),
      sandboxes:     length(worker.sandboxes),
      results:       counters.results,
      payments:      counters.payments,
    };
  },

  async stop(cmd)
  {
    await stopWorker(cmd.force === true);
    return {};
  },

  async shutdown(cmd)
  {
    setImmediate(() => shutdown(true, cmd.id));
    return undefined; /* shutdown() writes the reply itself */
  },
};

/** Stop the worker (gracefully unless force), wait for its end (bounded), then exit. */
async function shutdown(force, replyId)
{
  if (shuttingDown)
  {
    if (force)
      stopWorker(true);
    return;
  }
  shuttingDown = true;
  const bound = new Promise(resolve => setTimeout(resolve, force ? 5000 : 30000).unref());
  await Promise.race([stopWorker(force), bound]);
  if (replyId !== undefined)
    emitLine({ id: replyId, ok: true });
  process.exit(0);
}

/* ------------------------------------------------------------------------------------------------
 * Start-up
 */
async function loadIdentityKey(wallet, args)
{
  if (!args.identity)
    return (await new wallet.Keystore(null, '')).getPrivateKey();
  const { keystore } = await wallet.load({ name: path.resolve(args.identity) });
  try
  {
    return await keystore.unlock(args.passphrase);
  }
  finally
  {
    keystore.lock();
  }
}

async function main()
{
  const args = parseArgs(process.argv.slice(2));
  if (args.evaluator === null && process.getuid && (process.getuid() === 0 || process.geteuid() === 0))
    throw new Error('dcp-client\'s node evaluator refuses to run as root: run this as an unprivileged user '
                    + '(e.g. runuser -u dcptest -- node official_worker.js ...)');
  const schedulerUrl = new URL(args.url).href;
  process.env.DCP_SCHEDULER_LOCATION = schedulerUrl;
  if (!process.env.DCP_CONFIG_LOCATION)
    process.env.DCP_CONFIG_LOCATION = new URL('etc/dcp-config.kvin', schedulerUrl).href;
  process.env.DCP_CLIENT_NO_PARSE_ARGV = '1';

  const { version, wallet } = await loadDcpClient({ reportErrors: false });
  const identity = requireFromPeers('dcp/identity');
  const { DistributiveWorker } = requireFromPeers('dcp/worker');

  /* The worker signs with the identity of the session (identity.get()), as dcp-worker's does. */
  await identity.set(await loadIdentityKey(wallet, args));
  const paymentAddress = args.paymentAddress || String((await new wallet.Keystore(null, '')).address);

  let SandboxConstructor;
  if (args.evaluator !== null)
    SandboxConstructor = makeStandaloneEvaluatorConstructor(args.evaluator);
  else
  {
    const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcp-ow-'));
    process.on('exit', () => fs.rmSync(socketDir, { recursive: true, force: true }));
    ({ NodeEvaluator: SandboxConstructor } = await makeNodeEvaluatorConstructor(socketDir));
  }

  worker = new DistributiveWorker({
    paymentAddress,
    jobIds:             args.jobIds.length ? args.jobIds : false, /* false: any job; [] would fetch nothing */
    unmanaged:          true,   /* no portal / Jnu worker management */
    cores:              { cpu: args.cores, gpu: 0 },
    maxSandboxes:       args.maxSandboxes,
    allowConsoleAccess: true,
  }, SandboxConstructor);
  watchWorker();

  runCommandLoop(commands, { isClosing: () => shuttingDown, onEnd: () => shutdown(false) });
  for (const signal of ['SIGINT', 'SIGTERM'])
    process.on(signal, () => shutdown(shuttingDown));

  if (!await worker.start())
    throw new Error('the worker did not start (beforeStart cancelled, or the worker is disabled)');
  emitLine({
    event:          'ready',
    pid:            process.pid,
    workerId:       worker.id,
    identity:       String(identity.get().address),
    paymentAddress: String(worker.config.paymentAddress),
    dcpClient:      version,
    node:           process.version,
    jobIds:         args.jobIds,
    cores:          args.cores,
    maxSandboxes:   args.maxSandboxes,
  });
  readySent = true;
  earlyEvents.splice(0).forEach(emitLine);
}

reportUncaught(LABEL);
main().catch((error) => {
  logError(LABEL, 'cannot start', error);
  emitLine({ event: 'fatal', error: oneLine(error) });
  process.exit(3);
});
