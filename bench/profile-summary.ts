/**
 * Reads a V8 CPU profile of our server (`BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=<dir>'`) and
 * prints where its CPU went: how busy it was, its busy time split into the live fan-out, the sends
 * (an HTTP request through to its answer), the garbage collector and the rest, the sends' time by
 * part, and the functions and packages that took most. With a bench output file and a line's
 * name, only that line's measured phase and drain (its `windowUs`) is read.
 *
 *   node --import tsx bench/profile-summary.ts <profile> [<bench stdout> <line name>] [--top N]
 *
 * e.g. `bench/profile-summary.ts prof/CPU.….cpuprofile bench.out 1000rooms-5subs@50senders`.
 * A sample is attributed by the stack it was taken in: to the fan-out or the sends by the
 * outermost frame in one of their modules, so the socket writes of a delivery count for the
 * fan-out and those of an answer for the sends, and an event's execution (graphql-js, called from
 * the fan-out) for the fan-out; an operation that came over a WebSocket counts as fan-out too (the
 * bench sends none during its rungs). The sampler ticks by the wall clock: a thread preempted while it
 * had work counts as busy, so the busy share is above the CPU the bench reads for the process.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Modules of the live path: from a room's event to the frames written to its subscribers' sockets. */
const FAN_OUT = /shared-subscribe|room-hub|message-feed|ws-frames|http\/websocket|activity-router/;
/** Modules a send passes through, from the HTTP request to its answer. */
const SEND =
  /http\/server|requestPipeline|ApolloServer|runHttpQuery|message-service|message-store|budgets|rate-limit|pipelined|auth\/sessions|graphql\/viewer|resolvers\/|body-parser|raw-body|cors\/|_http_server|_http_common|_http_outgoing|_http_incoming|execution\/execute|canonical-ids|validation/;
/** The parts of a send, each counted once per sample whose stack passes through it (so they overlap). */
const SEND_PARTS: Array<[string, RegExp]> = [
  ['HTTP server and parser', /_http_server|_http_common|_http_incoming/],
  ['CORS', /cors\//],
  ['JSON body', /body-parser|raw-body/],
  ['Apollo Server', /@apollo\/server|ApolloServer|requestPipeline|runHttpQuery/],
  ['graphql-js execution', /execution\/execute|execution\/values|coerceInputValue/],
  ['budgets (rate-limiter-flexible)', /graphql\/budgets|rate-limiter-flexible|rate-limit\.[jt]s/],
  ['session check', /auth\/sessions|graphql\/viewer/],
  ['message service and store', /chat\/message-service|chat\/message-store/],
  ['PostgreSQL client', /node_modules\/pg\/|pg-protocol|db\/pipelined|db\/prepared/],
  ['Redis client', /ioredis|redis-parser/],
  ['input validation (zod)', /zod|validation\.[jt]s/],
  ['HTTP answer', /_http_outgoing/],
];

/** A package, a file of ours or a part of node a frame belongs to, for the inclusive table. */
function owner(url: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const ours = /\/(?:dist|src)\/(.+)$/.exec(url);
  if (ours) return `ours: ${ours[1]}`;
  // node's own modules by their first two levels (`node:internal/streams`): every stack passes
  // through `node:internal` (the event loop's callbacks), which would say nothing.
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/').slice(0, 2).join('/')}`;
  return url || '(native)';
}

function summarise(profile: Profile, window: [number, number] | undefined, top: number): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stack = (id: number): ProfileNode[] => {
    const frames: ProfileNode[] = [];
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) frames.push(byId.get(x)!);
    return frames; // innermost first
  };

  // Each sample's weight is the time to the next one; those outside the window are left out.
  const weight = new Map<number, number>();
  let at = profile.startTime;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i];
    const next = profile.timeDeltas[i + 1] ?? 0;
    if (window && (at < window[0] || at > window[1])) continue;
    weight.set(profile.samples[i], (weight.get(profile.samples[i]) ?? 0) + next);
    total += next;
  }

  const split = { fanOut: 0, sends: 0, gc: 0, other: 0 };
  let idle = 0;
  const self = new Map<string, number>();
  const packages = new Map<string, number>();
  const parts = new Map<string, number>();
  const otherRoots = new Map<string, number>();
  for (const [id, us] of weight) {
    const frames = stack(id);
    const leaf = frames[0].callFrame;
    if (leaf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const selfKey = `${leaf.functionName || '(anonymous)'} ${owner(leaf.url)}${leaf.url ? `:${leaf.lineNumber + 1}` : ''}`;
    self.set(selfKey, (self.get(selfKey) ?? 0) + us);
    // Frames without a script (the root, native functions) are in the self table, not here.
    for (const pkg of new Set(frames.filter((f) => f.callFrame.url).map((f) => owner(f.callFrame.url)))) packages.set(pkg, (packages.get(pkg) ?? 0) + us);
    if (leaf.functionName === '(garbage collector)') {
      split.gc += us;
      continue;
    }
    let outermost: CallFrame | undefined;
    for (const { callFrame } of frames) if (FAN_OUT.test(callFrame.url) || SEND.test(callFrame.url)) outermost = callFrame;
    const kind = !outermost ? 'other' : FAN_OUT.test(outermost.url) ? 'fanOut' : 'sends';
    split[kind] += us;
    if (kind === 'other') {
      const root = frames.slice(-4, -1).reverse().map((f) => `${f.callFrame.functionName || '(anonymous)'} ${owner(f.callFrame.url)}`).join(' > ');
      otherRoots.set(root, (otherRoots.get(root) ?? 0) + us);
    }
    if (kind !== 'sends') continue;
    for (const [name, re] of SEND_PARTS) if (frames.some((f) => re.test(f.callFrame.url))) parts.set(name, (parts.get(name) ?? 0) + us);
  }

  if (total === 0) throw new Error('the profile has no samples in that window: is it the profile of the server of that run?');
  const busy = total - idle;
  const pct = (us: number, of = busy) => `${((100 * us) / of).toFixed(1).padStart(5)} %`;
  const seconds = total / 1e6;
  console.log(`window ${seconds.toFixed(1)} s; the main thread was busy (not waiting for events) ${pct(busy, total).trim()} of it`);
  console.log('(by wall-clock samples: time preempted while it had work counts as busy; the bench line has its CPU)');
  console.log('\nbusy time by what it served');
  console.log(`${pct(split.fanOut)}  live fan-out (events to subscribers' sockets, their writes included)`);
  console.log(`${pct(split.sends)}  sends (HTTP request to answer)`);
  console.log(`${pct(split.gc)}  garbage collector`);
  console.log(`${pct(split.other)}  other (socket reads, timers, pub/sub replies, ...)`);
  console.log('\nother, by where it started (the outermost frames)');
  for (const [name, us] of [...otherRoots].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`${pct(us)}  ${name}`);
  console.log('\nthe sends by part (overlapping: a part counts every sample whose stack passes through it)');
  for (const [name, us] of [...parts].sort((a, b) => b[1] - a[1])) console.log(`${pct(us, split.sends)}  ${name}`);
  console.log(`\nself time, top ${top} (of busy)`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${name}`);
  console.log(`\ninclusive by package or file, top ${top} (of busy)`);
  for (const [name, us] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${name}`);
}

/** The `windowUs` of the line named `name` (ours) in a bench output file. */
function lineWindow(file: string, name: string): [number, number] {
  for (const text of readFileSync(file, 'utf8').split('\n')) {
    if (!text.startsWith('{')) continue;
    const line = JSON.parse(text) as { scenario?: string; system?: string; windowUs?: [number, number] };
    if (line.scenario === name && line.system === 'ours' && line.windowUs) return line.windowUs;
  }
  throw new Error(`no line of ours named ${name} with a window in ${file}`);
}

/** Refuses the command line with `message` and the usage, exit code 2. */
function usage(message?: string): never {
  if (message) console.error(message);
  console.error('usage: node --import tsx bench/profile-summary.ts <profile> [<bench stdout> <line name>] [--top N]');
  process.exit(2);
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
if (!Number.isInteger(top) || top < 1) usage('--top takes a whole number of at least 1');
const [profileFile, benchFile, lineName, ...extra] = args;
if (!profileFile || (benchFile && !lineName) || extra.length > 0) usage();
try {
  let profile: Profile | undefined;
  try {
    profile = JSON.parse(readFileSync(profileFile, 'utf8')) as Profile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw err;
  }
  if (!Array.isArray(profile?.nodes) || !Array.isArray(profile.samples) || !Array.isArray(profile.timeDeltas)) throw new Error(`${profileFile} is not a V8 CPU profile`);
  summarise(profile, benchFile ? lineWindow(benchFile, lineName) : undefined, top);
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
