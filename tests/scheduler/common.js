/*
 * common.js - plumbing shared by the scheduler double (double.js) and the test client (client.js):
 * stdout kept for protocol lines only, an offline private dcp-client environment, loading packages from
 * tests/node/node_modules, and the newline-delimited JSON command loop.
 */
'use strict';

const fs       = require('fs');
const os       = require('os');
const path     = require('path');
const readline = require('readline');
const { createRequire } = require('module');

const DCP_CLIENT_VERSION = '5.6.1';
const NODE_DIR = path.resolve(__dirname, '..', 'node');
const INSTALL_HINT = 'install the test packages with: npm ci --prefix tests/node';
const END_GRACE_MS = 500;

/* ------------------------------------------------------------------------------------------------
 * Output discipline: stdout is the control channel, so nothing else may write there.
 */
const stdoutWrite = process.stdout.write.bind(process.stdout);

/** Write one protocol line (a JSON object) to stdout. */
function emitLine(object)
{
  stdoutWrite(JSON.stringify(object) + '\n');
}

/** Send console output and stray stdout writes to stderr. */
function keepStdoutClean()
{
  for (const level of ['log', 'info', 'debug', 'trace'])
    console[level] = console.error; /* dcp-client logs with console.log in places */
  process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest);
}

/** An error (or anything thrown) as one line of text, prefixed with its code when it has one. */
function oneLine(error)
{
  let text;
  if (error instanceof Error)
    text = (error.code ? `${error.code}: ` : '') + (error.message || error.name || String(error));
  else if (error && typeof error === 'object')
    text = JSON.stringify(error);
  else
    text = String(error);
  return text.replace(/\s*\n\s*/g, ' ').trim() || 'unknown error';
}

function logError(label, what, error)
{
  process.stderr.write(`${label}: ${what}: ${(error && error.stack) || error}\n`);
}

/* ------------------------------------------------------------------------------------------------
 * Environment
 */

/**
 * Point dcp-client at a private scratch HOME / resource directory, with no remote config and no
 * identity-cache writes, so nothing touches the real ~/.dcp. Must run before dcp-client is loaded.
 * Returns a function that removes the scratch directory.
 */
function useScratchEnvironment(prefix)
{
  const scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.env.HOME = scratchDir;
  process.env.DCP_HOMEDIR = scratchDir;
  process.env.DCP_RESOURCE_DIR = path.join(scratchDir, '.dcp');
  process.env.DCP_CONFIG_LOCATION = '';   /* no remote config, no version check */
  process.env.DCP_IDENTITY_CACHE_WRITE_DISABLE = '1';
  process.env.DCP_CLIENT_NO_PARSE_ARGV = '1';
  delete process.env.XDG_DATA_HOME;
  fs.mkdirSync(process.env.DCP_RESOURCE_DIR, { mode: 0o700 });
  function removeScratch()
  {
    try { fs.rmSync(scratchDir, { recursive: true, force: true }); } catch (error) { /* best effort */ }
  }
  process.on('exit', removeScratch); /* also after a crash */
  return removeScratch;
}

/* The packages live in tests/node/node_modules, which node would not find from tests/scheduler/. */
const requireFromPeers = createRequire(path.join(NODE_DIR, 'package.json'));

/**
 * Load and initialise dcp-client 5.6.1; returns { version, protocol, wallet }. Offline unless the
 * environment names a scheduler (DCP_SCHEDULER_LOCATION / DCP_CONFIG_LOCATION). initOptions are merged
 * into the options handed to init() ({parseArgv: false} by default).
 * wallet.passphrasePrompt is replaced so that nothing ever prompts on stdin (the control channel).
 */
async function loadDcpClient(initOptions = {})
{
  let dcpClient, version;
  try
  {
    version = requireFromPeers('dcp-client/package.json').version;
    dcpClient = requireFromPeers('dcp-client');
  }
  catch (error)
  {
    throw new Error(`cannot load dcp-client from ${NODE_DIR}/node_modules (${oneLine(error)}); ${INSTALL_HINT}`);
  }
  if (version !== DCP_CLIENT_VERSION)
    throw new Error(`found dcp-client ${version}, need exactly ${DCP_CLIENT_VERSION}; ${INSTALL_HINT}`);
  await dcpClient.init(Object.assign({ parseArgv: false }, initOptions));
  const protocol = requireFromPeers('dcp/protocol');
  const wallet   = requireFromPeers('dcp/wallet');
  wallet.passphrasePrompt = async () => { throw new Error('wrong passphrase (no passphrase prompts here)'); };
  return { version, protocol, wallet };
}

/* ------------------------------------------------------------------------------------------------
 * Command loop
 */

/**
 * Read commands {"id": <integer>, "cmd": <name>, ...} from stdin and run commands[name](command)
 * concurrently. A command's result object is merged into {"id", "ok": true}; a throw becomes
 * {"id", "ok": false, "error"} (plus the thrown error's `extra` fields). A command that returns
 * undefined writes its reply itself. onEnd runs when stdin closes, once the commands in flight have
 * settled or END_GRACE_MS has passed.
 */
function runCommandLoop(commands, { isClosing, onEnd })
{
  async function run(command)
  {
    const id = command.id;
    const fn = Object.prototype.hasOwnProperty.call(commands, command.cmd) ? commands[command.cmd] : null;
    try
    {
      if (!fn)
        throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
      const result = await fn(command);
      if (result !== undefined)
        emitLine(Object.assign({ id, ok: true }, result));
    }
    catch (error)
    {
      emitLine(Object.assign({ id, ok: false, error: oneLine(error) }, error && error.extra));
    }
  }

  function onLine(line)
  {
    if (!line.trim())
      return;
    let command;
    try
    {
      command = JSON.parse(line);
    }
    catch (error)
    {
      emitLine({ event: 'error', error: `control: line is not JSON: ${oneLine(error)}` });
      return;
    }
    if (!command || typeof command !== 'object' || !Number.isInteger(command.id))
    {
      emitLine({ event: 'error', error: 'control: a command needs an integer "id"' });
      return;
    }
    if (isClosing())
    {
      emitLine({ id: command.id, ok: false, error: 'shutting down' });
      return;
    }
    const running = run(command);
    inFlight.add(running);
    running.finally(() => inFlight.delete(running));
  }

  /* When stdin closes, let the commands already read finish (for at most END_GRACE_MS), then end. */
  const inFlight = new Set();
  function onClose()
  {
    const grace = new Promise(resolve => setTimeout(resolve, END_GRACE_MS).unref());
    Promise.race([Promise.allSettled([...inFlight]), grace]).then(onEnd);
  }

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  rl.on('line', onLine);
  rl.on('close', onClose);
}

/** Report crashes as events instead of dying, so that a test sees them. */
function reportUncaught(label)
{
  process.on('uncaughtException', (error) => {
    logError(label, 'uncaught exception', error);
    emitLine({ event: 'error', error: `uncaught: ${oneLine(error)}`, uncaught: true });
  });
  process.on('unhandledRejection', (error) => {
    logError(label, 'unhandled rejection', error);
    emitLine({ event: 'error', error: `unhandled rejection: ${oneLine(error)}`, uncaught: true });
  });
}

module.exports = {
  DCP_CLIENT_VERSION,
  INSTALL_HINT,
  emitLine,
  keepStdoutClean,
  oneLine,
  logError,
  useScratchEnvironment,
  requireFromPeers,
  loadDcpClient,
  runCommandLoop,
  reportUncaught,
};
