/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for the metrics tests.
 * prom-client writes this format but ships no parser (its dependencies, tdigest and
 * @opentelemetry/api, have none either), so the tests parse with this one, which refuses anything
 * the format does not allow instead of guessing: a sample before its TYPE, a family declared twice,
 * a malformed label set or value, a histogram whose buckets are not cumulative or whose +Inf bucket
 * differs from its _count.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s: string, line: number): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`line ${line}: bad value '${s}'`);
  return Number(s);
}

function parseLabels(s: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without '='`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name '${name}'`);
    if (name in out) throw new Error(`line ${line}: label '${name}' twice`);
    if (s[eq + 1] !== '"') throw new Error(`line ${line}: label value must be quoted`);
    let v = '';
    let j = eq + 2;
    for (;; j++) {
      if (j >= s.length) throw new Error(`line ${line}: unterminated label value`);
      const c = s[j];
      if (c === '\\') {
        const n = s[++j];
        if (n === 'n') v += '\n';
        else if (n === '\\' || n === '"') v += n;
        else throw new Error(`line ${line}: bad escape \\${n ?? ''}`);
      } else if (c === '"') break;
      else v += c;
    }
    out[name] = v;
    i = j + 1;
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`line ${line}: expected ',' between labels`);
      i++;
    }
  }
  return out;
}

export function parsePromText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((raw, idx) => {
    const line = idx + 1;
    if (raw === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (m === null) {
        if (raw.startsWith('# HELP') || raw.startsWith('# TYPE')) throw new Error(`line ${line}: malformed '${raw}'`);
        return; // a comment
      }
      const [, kind, name, rest] = m;
      if (!NAME.test(name!)) throw new Error(`line ${line}: bad metric name '${name}'`);
      if (kind === 'HELP') {
        help.set(name!, rest!.replace(/\\n/g, '\n').replace(/\\\\/g, '\\'));
        return;
      }
      if (families.has(name!)) throw new Error(`line ${line}: TYPE of ${name} twice`);
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest!)) throw new Error(`line ${line}: bad type '${rest}'`);
      families.set(name!, { name: name!, help: help.get(name!) ?? '', type: rest as Family['type'], samples: [] });
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(raw);
    if (m === null) throw new Error(`line ${line}: not a sample: '${raw}'`);
    const [, name, labels, value] = m;
    const fam =
      families.get(name!) ??
      [...families.values()].find((f) => (f.type === 'histogram' || f.type === 'summary') && ['_bucket', '_sum', '_count'].some((x) => name === f.name + x));
    if (fam === undefined) throw new Error(`line ${line}: sample ${name} before (or without) its TYPE`);
    fam.samples.push({ name: name!, labels: labels === undefined || labels === '' ? {} : parseLabels(labels, line), value: parseValue(value!, line) });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    if (s.name === `${f.name}_bucket` && le === undefined) throw new Error(`${f.name}: bucket without le`);
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  for (const [key, ss] of groups) {
    const buckets = ss.filter((s) => s.name === `${f.name}_bucket`);
    const count = ss.find((s) => s.name === `${f.name}_count`);
    if (count === undefined || ss.find((s) => s.name === `${f.name}_sum`) === undefined) throw new Error(`${f.name} ${key}: _sum or _count missing`);
    let prev = -Infinity;
    let prevLe = -Infinity;
    for (const b of buckets) {
      const le = parseValue(b.labels.le!, 0);
      if (le <= prevLe || b.value < prev) throw new Error(`${f.name} ${key}: buckets not in order or not cumulative`);
      prev = b.value;
      prevLe = le;
    }
    if (prevLe !== Infinity || prev !== count.value) throw new Error(`${f.name} ${key}: the +Inf bucket must be last and equal _count`);
  }
}

/** The value of the one sample of `name` whose labels include `labels`; throws if none or several. */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const fam = families.get(name) ?? [...families.values()].find((f) => name.startsWith(f.name));
  const hits = (fam?.samples ?? []).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${hits.length} samples`);
  return hits[0]!.value;
}
