/**
 * Reads two V8 heap snapshots (e.g. the server before and after `bench/memory.ts` opened its
 * connections) and prints what the second holds more of, per connection: by class (`object` nodes
 * by constructor, closures by function name, strings, arrays, ...), with self size and retained size
 * (dominator tree, weak edges ignored, a class counted once where its objects dominate each other),
 * then the shortest retaining path of one instance of each class named in `--path`; with `--owners`,
 * the objects new in the second snapshot by owner (`OWNERS`).
 *
 *   node --max-old-space-size=12000 --import tsx bench/heap-summary.ts <before> <after> <connections> [--top N] [--path Class,Class]
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] }; node_count: number };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** A parsed snapshot with typed views and a class key per node. */
class Heap {
  readonly count: number;
  readonly selfSize: Float64Array;
  readonly key: Int32Array;
  readonly keys: string[] = [];
  /** Each node's snapshot id: the same object keeps its id across snapshots of one process. */
  readonly id: Float64Array;
  readonly firstEdge: Uint32Array;
  readonly edgeTo: Uint32Array;
  readonly edgeType: Uint8Array;
  readonly edgeName: Array<string | number>;
  private readonly weak: number;
  private retained?: Float64Array;
  private idom?: Uint32Array;

  constructor(private readonly s: Snapshot) {
    const meta = s.snapshot.meta;
    const nf = meta.node_fields.length;
    const ef = meta.edge_fields.length;
    const [typeF, nameF, sizeF, edgesF] = ['type', 'name', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f));
    const types = meta.node_types[0];
    const edgeTypes = meta.edge_types[0];
    this.weak = edgeTypes.indexOf('weak');
    this.count = s.nodes.length / nf;
    this.selfSize = new Float64Array(this.count);
    this.key = new Int32Array(this.count);
    this.id = new Float64Array(this.count);
    const idF = meta.node_fields.indexOf('id');
    this.firstEdge = new Uint32Array(this.count + 1);
    const keyIds = new Map<string, number>();
    for (let i = 0, e = 0; i < this.count; i++) {
      const type = types[s.nodes[i * nf + typeF]];
      const name = s.strings[s.nodes[i * nf + nameF]];
      const k = classKey(type, name);
      let id = keyIds.get(k);
      if (id === undefined) keyIds.set(k, (id = this.keys.push(k) - 1));
      this.key[i] = id;
      this.selfSize[i] = s.nodes[i * nf + sizeF];
      this.id[i] = s.nodes[i * nf + idF];
      this.firstEdge[i] = e;
      e += s.nodes[i * nf + edgesF];
      this.firstEdge[i + 1] = e;
    }
    const edgeCount = s.edges.length / ef;
    this.edgeTo = new Uint32Array(edgeCount);
    this.edgeType = new Uint8Array(edgeCount);
    this.edgeName = new Array(edgeCount);
    const element = edgeTypes.indexOf('element');
    const hidden = edgeTypes.indexOf('hidden');
    for (let j = 0; j < edgeCount; j++) {
      const t = s.edges[j * ef];
      this.edgeType[j] = t;
      this.edgeTo[j] = s.edges[j * ef + 2] / nf;
      const n = s.edges[j * ef + 1];
      this.edgeName[j] = t === element || t === hidden ? n : s.strings[n];
    }
  }

  /** Total self size and count per class key. */
  byClass(): Map<string, { count: number; self: number }> {
    const out = new Map<string, { count: number; self: number }>();
    for (let i = 0; i < this.count; i++) {
      const k = this.keys[this.key[i]];
      const row = out.get(k) ?? { count: 0, self: 0 };
      row.count++;
      row.self += this.selfSize[i];
      out.set(k, row);
    }
    return out;
  }

  /** Retained size per class key, each object counted unless an object of its own class dominates it. */
  retainedByClass(): Map<string, number> {
    this.dominators();
    const out = new Map<string, number>();
    for (let i = 1; i < this.count; i++) {
      if (this.idom![i] === NONE) continue;
      let up = this.idom![i];
      let nested = false;
      for (let depth = 0; up !== 0 && up !== NONE && depth < 100; depth++, up = this.idom![up]) {
        if (this.key[up] === this.key[i]) {
          nested = true;
          break;
        }
      }
      if (nested) continue;
      const k = this.keys[this.key[i]];
      out.set(k, (out.get(k) ?? 0) + this.retained![i]);
    }
    return out;
  }

  /** Cooper–Harvey–Kennedy dominators from node 0 over strong edges; then retained sizes. */
  private dominators(): void {
    if (this.idom) return;
    const n = this.count;
    // Post-order by an iterative depth-first walk.
    const post = new Uint32Array(n).fill(NONE); // node -> post-order number
    const order: number[] = [];
    const visited = new Uint8Array(n);
    const stack: number[] = [0];
    const cursor = new Uint32Array(n);
    visited[0] = 1;
    cursor[0] = this.firstEdge[0];
    while (stack.length) {
      const v = stack[stack.length - 1];
      let pushed = false;
      while (cursor[v] < this.firstEdge[v + 1]) {
        const j = cursor[v]++;
        if (this.edgeType[j] === this.weak) continue;
        const w = this.edgeTo[j];
        if (visited[w]) continue;
        visited[w] = 1;
        cursor[w] = this.firstEdge[w];
        stack.push(w);
        pushed = true;
        break;
      }
      if (!pushed) {
        stack.pop();
        post[v] = order.length;
        order.push(v);
      }
    }
    // Predecessors over strong edges.
    const predCount = new Uint32Array(n + 1);
    for (let v = 0; v < n; v++) {
      if (!visited[v]) continue;
      for (let j = this.firstEdge[v]; j < this.firstEdge[v + 1]; j++) if (this.edgeType[j] !== this.weak) predCount[this.edgeTo[j] + 1]++;
    }
    for (let v = 0; v < n; v++) predCount[v + 1] += predCount[v];
    const preds = new Uint32Array(predCount[n]);
    const fill = predCount.slice(0, n);
    for (let v = 0; v < n; v++) {
      if (!visited[v]) continue;
      for (let j = this.firstEdge[v]; j < this.firstEdge[v + 1]; j++) if (this.edgeType[j] !== this.weak) preds[fill[this.edgeTo[j]]++] = v;
    }
    const root = post[0];
    const dom = new Uint32Array(order.length).fill(NONE); // by post-order number
    dom[root] = root;
    const intersect = (a: number, b: number) => {
      while (a !== b) {
        while (a < b) a = dom[a];
        while (b < a) b = dom[b];
      }
      return a;
    };
    for (let changed = true; changed; ) {
      changed = false;
      for (let p = order.length - 2; p >= 0; p--) {
        const v = order[p];
        let d = NONE;
        for (let k = predCount[v]; k < predCount[v + 1]; k++) {
          const q = post[preds[k]];
          if (q === NONE || dom[q] === NONE) continue;
          d = d === NONE ? q : intersect(q, d);
        }
        if (d !== NONE && dom[p] !== d) {
          dom[p] = d;
          changed = true;
        }
      }
    }
    this.idom = new Uint32Array(n).fill(NONE);
    this.retained = new Float64Array(n);
    for (let p = 0; p < order.length; p++) {
      const v = order[p];
      this.idom[v] = order[dom[p]];
      this.retained[v] += this.selfSize[v];
      if (p !== root) this.retained[order[dom[p]]] += this.retained[v];
    }
  }

  /** The strong edges of node `v` by name, as `[name, target]`. */
  edgesOf(v: number): Array<[string | number, number]> {
    const out: Array<[string | number, number]> = [];
    for (let j = this.firstEdge[v]; j < this.firstEdge[v + 1]; j++) if (this.edgeType[j] !== this.weak) out.push([this.edgeName[j], this.edgeTo[j]]);
    return out;
  }

  /** Where closures are defined (`file:line:column`, from the snapshot's locations) and what contexts hold (their variables). */
  whereDefined(): Map<number, string> {
    const out = new Map<number, string>();
    const nf = this.s.snapshot.meta.node_fields.length;
    const locations = (this.s as Snapshot & { locations?: number[] }).locations ?? [];
    const names = this.s.strings;
    const nameOf = (v: number) => names[this.s.nodes[v * nf + 1]];
    for (let at = 0; at < locations.length; at += 4) {
      const v = locations[at] / nf;
      const sfi = this.edgesOf(v).find(([n]) => n === 'shared')?.[1];
      const script = sfi === undefined ? undefined : this.edgesOf(sfi).find(([n]) => n === 'script' || n === 'script_or_debug_info')?.[1];
      const file = script === undefined ? '?' : nameOf(this.edgesOf(script).find(([n]) => n === 'name')?.[1] ?? 0);
      // The built server's `dist/x.js` is named as its source, `src/x.ts`.
      const name = file.replace(/^.*node_modules\//, '').replace(/^.*\/(src|bench)\//, '$1/').replace(/^.*\/dist\/(.*)\.js$/, 'src/$1.ts');
      out.set(v, `${name}:${locations[at + 2] + 1}:${locations[at + 3] + 1}`);
    }
    return out;
  }

  /** Objects of class `k` grouped by what holds them (`Holder.edge`), with their self size. */
  holders(k: string): Map<string, { count: number; self: number }> {
    const keyId = this.keys.indexOf(k);
    const holder = new Int32Array(this.count).fill(-1);
    const via = new Int32Array(this.count).fill(-1);
    for (let v = 0; v < this.count; v++) {
      for (let j = this.firstEdge[v]; j < this.firstEdge[v + 1]; j++) {
        const w = this.edgeTo[j];
        if (this.key[w] === keyId && holder[w] < 0 && this.edgeType[j] !== this.weak) {
          holder[w] = v;
          via[w] = j;
        }
      }
    }
    const out = new Map<string, { count: number; self: number }>();
    for (let v = 0; v < this.count; v++) {
      if (this.key[v] !== keyId) continue;
      const name = holder[v] < 0 ? '(none)' : `${this.keys[this.key[holder[v]]]}.${typeof this.edgeName[via[v]] === 'number' ? '[n]' : this.edgeName[via[v]]}`;
      const row = out.get(name) ?? { count: 0, self: 0 };
      row.count++;
      row.self += this.selfSize[v];
      out.set(name, row);
    }
    return out;
  }

  /** String values (first 60 characters) and how many there are. */
  strings(): Map<string, { count: number; self: number }> {
    const nf = this.s.snapshot.meta.node_fields.length;
    const out = new Map<string, { count: number; self: number }>();
    for (let v = 0; v < this.count; v++) {
      if (this.keys[this.key[v]] !== '(string)') continue;
      const value = JSON.stringify(this.s.strings[this.s.nodes[v * nf + 1]].slice(0, 60));
      const row = out.get(value) ?? { count: 0, self: 0 };
      row.count++;
      row.self += this.selfSize[v];
      out.set(value, row);
    }
    return out;
  }

  /**
   * Self sizes of the objects not in `before` (by id), by owner: each object is owned by the first
   * object on its shortest path from the roots that `ownerOf` names (or by its own name when it is
   * one), so a connection's parts are told apart by what reaches them first.
   */
  owners(before: Set<number>, ownerOf: (v: number) => string | undefined): Map<string, number> {
    const owner = new Array<string | undefined>(this.count);
    const seen = new Uint8Array(this.count);
    const queue = new Uint32Array(this.count);
    let head = 0;
    let tail = 0;
    queue[tail++] = 0;
    seen[0] = 1;
    const out = new Map<string, number>();
    while (head < tail) {
      const v = queue[head++];
      const own = ownerOf(v) ?? owner[v];
      const name = own ?? `(unowned) ${this.keys[this.key[v]]}`;
      if (!before.has(this.id[v])) out.set(name, (out.get(name) ?? 0) + this.selfSize[v]);
      for (let j = this.firstEdge[v]; j < this.firstEdge[v + 1]; j++) {
        const w = this.edgeTo[j];
        if (this.edgeType[j] === this.weak || seen[w]) continue;
        seen[w] = 1;
        owner[w] = own;
        queue[tail++] = w;
      }
    }
    return out;
  }

  /** The shortest strong path from the roots to one object of class `k` (the last one found). */
  pathTo(k: string): string | undefined {
    const keyId = this.keys.indexOf(k);
    if (keyId < 0) return undefined;
    let target = -1;
    for (let i = this.count - 1; i >= 0 && target < 0; i--) if (this.key[i] === keyId) target = i;
    // Breadth-first from the root, then walk back.
    const from = new Int32Array(this.count).fill(-1);
    const via = new Int32Array(this.count).fill(-1);
    from[0] = 0;
    const queue = new Uint32Array(this.count);
    let head = 0;
    let tail = 0;
    queue[tail++] = 0;
    while (head < tail && from[target] < 0) {
      const v = queue[head++];
      for (let j = this.firstEdge[v]; j < this.firstEdge[v + 1]; j++) {
        const w = this.edgeTo[j];
        if (this.edgeType[j] === this.weak || from[w] >= 0) continue;
        from[w] = v;
        via[w] = j;
        queue[tail++] = w;
      }
    }
    const steps: string[] = [];
    for (let v = target; v !== 0 && from[v] >= 0; v = from[v]) steps.unshift(`-[${this.edgeName[via[v]]}]-> ${this.keys[this.key[v]]}`);
    return steps.join('\n    ');
  }
}

const NONE = 0xffffffff;

/** Who owns what, for `--owners`: a class name or a closure's definition (`@ file:line:column`). */
const OWNERS: Array<[RegExp, string]> = [
  [/^IncomingMessage$/, 'upgrade request (IncomingMessage, headers)'],
  [/^(Socket|TCP|\(synthetic\) Node \/ TCPSocketWrap)$/, 'TCP socket (net.Socket, handle, stream states)'],
  [/^(WebSocket|Receiver|Sender)$|@ ws\//, 'ws (WebSocket, Receiver, Sender)'],
  [/@ graphql-ws\//, 'graphql-ws (per socket and per operation)'],
  [/^(OperationContext|DataLoader)$|@ src\/(graphql\/context|app)\.ts|@ src\/http\/websocket\.ts/, 'operation context (loaders, frame sink)'],
  [/^Tracked$|@ src\/http\/socket-|@ src\/presence\//, 'socket sessions, guard, presence'],
  [/@ src\/graphql\/shared-subscribe\.ts/, 'shared-subscribe (pump, per-operation closures)'],
  [/^(MessageFeed|Repeater|AddedSet|AbortController)$|@ src\/chat\/|@ src\/core\.cjs/, 'message feed (feed, Repeater, hub listener)'],
  [/@ @apollo\//, 'Apollo drain (per TCP connection)'],
];

function classKey(type: string, name: string): string {
  if (type === 'string' || type === 'concatenated string' || type === 'sliced string') return `(${type})`;
  if (type === 'number' || type === 'bigint' || type === 'symbol') return `(${type})`;
  if (type === 'code') return '(code)';
  if (type === 'object') return name.length > 80 ? `${name.slice(0, 80)}…` : name;
  if (type === 'closure') return `closure ${name || '(anonymous)'}`;
  return `(${type}) ${name.length > 60 ? name.slice(0, 60) + '…' : name}`;
}

function main(): void {
  const [beforeFile, afterFile, connectionsArg, ...rest] = process.argv.slice(2);
  const connections = Number(connectionsArg);
  const option = (name: string) => {
    const at = rest.indexOf(name);
    return at >= 0 ? rest[at + 1] : undefined;
  };
  const top = Number(option('--top') ?? 40);
  const load = (file: string) => new Heap(JSON.parse(readFileSync(file, 'utf8')) as Snapshot);
  const beforeHeap = load(beforeFile);
  const before = beforeHeap.byClass();
  const afterHeap = load(afterFile);
  const after = afterHeap.byClass();
  const retained = afterHeap.retainedByClass();
  let totalSelf = 0;
  const rows = [...after].map(([k, a]) => {
    const b = before.get(k) ?? { count: 0, self: 0 };
    totalSelf += a.self - b.self;
    return { k, count: (a.count - b.count) / connections, self: (a.self - b.self) / connections, retained: (retained.get(k) ?? 0) / connections };
  });
  console.log(`per connection: ${(totalSelf / connections / 1024).toFixed(2)} KB of V8 heap (self sizes, after − before)`);
  console.log('class | objects per connection | self bytes per connection | retained bytes per connection (after, all objects / connections)');
  for (const r of rows.sort((a, b) => b.self - a.self).slice(0, top)) {
    console.log(`${r.k} | ${r.count.toFixed(2)} | ${r.self.toFixed(0)} | ${r.retained.toFixed(0)}`);
  }
  console.log('\nlargest retained per connection:');
  for (const r of rows.sort((a, b) => b.retained - a.retained).slice(0, top)) console.log(`${r.k} | ${r.count.toFixed(2)} | ${r.retained.toFixed(0)}`);
  if (rest.includes('--closures')) {
    const where = afterHeap.whereDefined();
    const count = new Map<string, number>();
    for (const [v, at] of where) {
      const k = `${afterHeap.keys[afterHeap.key[v]]} @ ${at}`;
      count.set(k, (count.get(k) ?? 0) + 1);
    }
    console.log('\nclosures per connection by definition (≥ 0.5):');
    for (const [k, n] of [...count].sort((a, b) => b[1] - a[1])) if (n / connections >= 0.5) console.log(`${(n / connections).toFixed(2)} ${k}`);
    const contexts = new Map<string, number>();
    const contextKey = afterHeap.keys.indexOf('system / Context');
    for (let v = 0; v < afterHeap.count; v++) {
      if (afterHeap.key[v] !== contextKey) continue;
      const vars = afterHeap.edgesOf(v).map(([n]) => n).filter((n) => typeof n === 'string' && !['previous', 'scope_info', 'extension', 'native_context', 'map'].includes(n));
      const k = vars.join(',').slice(0, 160);
      contexts.set(k, (contexts.get(k) ?? 0) + 1);
    }
    console.log('\ncontexts per connection by captured variables (≥ 0.5):');
    for (const [k, n] of [...contexts].sort((a, b) => b[1] - a[1])) if (n / connections >= 0.5) console.log(`${(n / connections).toFixed(2)} {${k}}`);
  }
  if (rest.includes('--owners')) {
    const beforeIds = new Set<number>(beforeHeap.id);
    const where = afterHeap.whereDefined();
    const ownerOf = (v: number): string | undefined => {
      const k = afterHeap.keys[afterHeap.key[v]];
      const at = where.get(v);
      if (k === '(array) (object properties)') {
        return undefined;
      }
      for (const [pattern, owner] of OWNERS) if (pattern.test(k) || (at !== undefined && pattern.test(`@ ${at}`))) return owner;
      return undefined;
    };
    // tsx (esbuild keepNames) gives each named closure of our TypeScript a `name` property: count it apart.
    const keepNames = new Set<number>();
    for (let v = 0; v < afterHeap.count; v++) {
      if (!(where.get(v) ?? '').startsWith('src/') || !afterHeap.keys[afterHeap.key[v]].startsWith('closure')) continue;
      const props = afterHeap.edgesOf(v).find(([n]) => n === 'properties')?.[1];
      if (props !== undefined) keepNames.add(props);
    }
    const owned = afterHeap.owners(beforeIds, (v) => (keepNames.has(v) ? 'tsx keepNames: a name property per named closure of src/' : ownerOf(v)));
    console.log('\nnew objects per connection by owner (first owner on the shortest path from the roots; bytes):');
    for (const [k, bytes] of [...owned].sort((a, b) => b[1] - a[1])) if (bytes / connections >= 20) console.log(`${(bytes / connections).toFixed(0)} ${k}`);
  }
  for (const k of (option('--holders') ?? '').split(',').filter(Boolean)) {
    console.log(`\n${k} by holder (per connection: count, self bytes; ≥ 0.5):`);
    for (const [h, r] of [...afterHeap.holders(k)].sort((a, b) => b[1].self - a[1].self)) {
      if (r.count / connections >= 0.5) console.log(`${(r.count / connections).toFixed(2)} ${(r.self / connections).toFixed(0)} ${h}`);
    }
  }
  const propsOf = option('--props-of');
  if (propsOf) {
    // Objects of a class whose out-of-object properties are large: where defined and which properties.
    const where = afterHeap.whereDefined();
    const keyId = afterHeap.keys.indexOf(propsOf);
    const rows = new Map<string, { count: number; self: number }>();
    for (let v = 0; v < afterHeap.count; v++) {
      if (afterHeap.key[v] !== keyId) continue;
      const props = afterHeap.edgesOf(v).find(([n]) => n === 'properties')?.[1];
      if (props === undefined) continue;
      const names = afterHeap.edgesOf(v).map(([n]) => n).filter((n) => typeof n === 'string').join(',').slice(0, 200);
      const k = `${where.get(v) ?? '?'} {${names}}`;
      const row = rows.get(k) ?? { count: 0, self: 0 };
      row.count++;
      row.self += afterHeap.selfSize[props];
      rows.set(k, row);
    }
    console.log(`\n${propsOf} with out-of-object properties (per connection: count, property array bytes; ≥ 0.5):`);
    for (const [k, r] of [...rows].sort((a, b) => b[1].self - a[1].self)) if (r.count / connections >= 0.5) console.log(`${(r.count / connections).toFixed(2)} ${(r.self / connections).toFixed(0)} ${k}`);
  }
  if (rest.includes('--strings')) {
    console.log('\nstrings by value (per connection: count, self bytes; ≥ 0.5):');
    for (const [v, r] of [...afterHeap.strings()].sort((a, b) => b[1].self - a[1].self)) {
      if (r.count / connections >= 0.5) console.log(`${(r.count / connections).toFixed(2)} ${(r.self / connections).toFixed(0)} ${v}`);
    }
  }
  for (const k of (option('--path') ?? '').split(',').filter(Boolean)) console.log(`\npath to ${k}:\n    ${afterHeap.pathTo(k) ?? '(none)'}`);
}

main();
