/**
 * The capabilities one JavaScript source reaches, read from its syntax tree (acorn, acorn-walk):
 * built-in modules required or imported (directly, through an alias of require, createRequire,
 * module.require, process.mainModule.require, destructuring, or a name built by concatenation),
 * globals of note, process.binding & co, and require()/import() of names it cannot compute.
 *
 * Runs in the scan's worker thread (worker.ts): a parse that takes too long or too much memory is
 * ended from outside. A syntax error, or a nesting deep enough to exhaust the stack (the parser
 * recurses), is a finding of the file, never an exception.
 */
import * as acorn from 'acorn';
import { simple } from 'acorn-walk';
import { builtinCapability, builtinName, GLOBALS, PROCESS_PROPERTIES, type ImpliedPermission } from './capabilities';
import { evaluate, lookup, member, moduleValue, propertyName, type Env, type Value } from './values';
import type { FindingKind } from './types';

/** A finding before positions are turned into lines and columns. */
export interface RawFinding {
  offset: number;
  kind: FindingKind;
  what: string;
  permission: ImpliedPermission | null;
}

export interface Analysis {
  findings: RawFinding[];
  /** Relative specifiers required or imported ('./x', '../y'): files to scan too. */
  relative: string[];
}

/** 'auto': a .js file without a package type; CommonJS first, an ES module when that fails (as node does). */
export type SourceKind = 'script' | 'module' | 'auto';

/** Strings given to eval or Function are scanned this many levels deep. */
const MAX_EVAL_DEPTH = 2;
const SNIPPET = 80;

function parseAs(code: string, sourceType: 'script' | 'module'): acorn.Program {
  return acorn.parse(code, { ecmaVersion: 'latest', sourceType, allowReturnOutsideFunction: sourceType === 'script', allowHashBang: true });
}

/** Parses `code`; a syntax error or a stack exhausted by nesting is returned, not thrown. */
export function parseSource(code: string, kind: SourceKind): acorn.Program | { error: RawFinding } {
  try {
    try {
      return parseAs(code, kind === 'module' ? 'module' : 'script');
    } catch (e) {
      if (kind !== 'auto' || !(e instanceof SyntaxError)) throw e;
      try {
        return parseAs(code, 'module');
      } catch (e2) {
        // Report the error of the reading that got furthest.
        throw ((e2 as { pos?: number }).pos ?? 0) > ((e as { pos?: number }).pos ?? 0) ? e2 : e;
      }
    }
  } catch (e) {
    return { error: unparsed(e) };
  }
}

function unparsed(e: unknown): RawFinding {
  if (e instanceof RangeError) return { offset: 0, kind: 'unparsed', what: 'nested too deep to parse (the parser ran out of stack)', permission: '*' };
  const pos = (e as { pos?: number }).pos;
  const message = e instanceof Error ? e.message : String(e);
  return { offset: typeof pos === 'number' ? pos : 0, kind: 'unparsed', what: `does not parse: ${message.slice(0, 200)}`, permission: '*' };
}

/** Analyses one source; never throws for anything in `code`. */
export function analyzeSource(code: string, kind: SourceKind, evalDepth = 0): Analysis {
  const program = parseSource(code, kind);
  if ('error' in program) return { findings: [program.error], relative: [] };
  try {
    return walkProgram(code, program, evalDepth);
  } catch (e) {
    // The walker recurses as the parser does; a tree that just fit the parser's stack may not fit it.
    if (e instanceof RangeError) return { findings: [unparsed(e)], relative: [] };
    throw e;
  }
}

function walkProgram(code: string, program: acorn.Program, evalDepth: number): Analysis {
  const env: Env = new Map();
  const findings: RawFinding[] = [];
  const relative: string[] = [];
  // Globals are reported at the end, but for the callees of eval/Function calls whose strings were scanned.
  const globals: Array<{ node: acorn.Node; name: string }> = [];
  const handled = new Set<acorn.Node>();
  // Calls of a name bound later in the file (a hoisted `var r = require` below a function using r).
  const deferred: acorn.CallExpression[] = [];

  const snippet = (n: acorn.Node): string => {
    const s = code.slice(n.start, Math.min(n.end, n.start + SNIPPET + 1)).replace(/\s+/g, ' ');
    return s.length > SNIPPET ? `${s.slice(0, SNIPPET)}…` : s;
  };
  const add = (n: acorn.Node, kind: FindingKind, what: string, permission: ImpliedPermission | null): void => {
    findings.push({ offset: n.start, kind, what, permission });
  };
  /** A module reached by `specifier`, at `at`. */
  const reached = (at: acorn.Node, specifier: string): void => {
    if (specifier.startsWith('./') || specifier.startsWith('../')) relative.push(specifier);
    const b = builtinName(specifier);
    const cap = b === undefined ? undefined : builtinCapability(b);
    if (cap !== undefined) add(at, 'builtin', snippet(at), cap.permission);
  };
  /** A require/import of the expression `arg`. */
  const loads = (at: acorn.Node, arg: acorn.Expression | acorn.SpreadElement | undefined): void => {
    if (arg === undefined) return;
    const v = evaluate(arg, env);
    if (v?.k === 'string') reached(at, v.s);
    else add(at, 'dynamic-require', `${snippet(at)} (a name the scan cannot compute)`, '*');
  };
  const bind = (name: string, v: Value | undefined): void => {
    if (v !== undefined) env.set(name, v);
  };
  /** `const { a, b: c } = obj`: names bound to obj's members, and the members worth a finding. */
  const destructure = (pattern: acorn.ObjectPattern, obj: Value | undefined): void => {
    if (obj === undefined) return;
    for (const p of pattern.properties) {
      if (p.type !== 'Property') continue;
      const name = propertyName(p, env);
      if (name === undefined) continue;
      propertyFinding(p, obj, name);
      const target = p.value.type === 'AssignmentPattern' ? p.value.left : p.value;
      if (target.type === 'Identifier') bind(target.name, member(obj, name));
      else if (target.type === 'ObjectPattern') destructure(target, member(obj, name));
    }
  };
  const propertyFinding = (at: acorn.Node, obj: Value, name: string): void => {
    if (obj.k === 'process' && Object.prototype.hasOwnProperty.call(PROCESS_PROPERTIES, name)) add(at, 'global', `process.${name}`, PROCESS_PROPERTIES[name]!);
    else if (obj.k === 'global' && Object.prototype.hasOwnProperty.call(GLOBALS, name)) globals.push({ node: at, name });
  };
  /** eval('...') and Function('a', '...'): a constant string is scanned; anything else could be anything. */
  const codeFromString = (call: acorn.CallExpression | acorn.NewExpression, name: 'eval' | 'Function'): void => {
    const args: string[] = [];
    for (const a of call.arguments) {
      const v = evaluate(a, env);
      if (v?.k !== 'string') return;
      args.push(v.s);
    }
    handled.add(call.callee);
    if (evalDepth >= MAX_EVAL_DEPTH) {
      add(call, 'global', `${snippet(call)} (strings in strings: not scanned further)`, '*');
      return;
    }
    const body = name === 'eval' ? (args[0] ?? '') : `(function anonymous(${args.slice(0, -1).join(',')}\n) {\n${args[args.length - 1] ?? ''}\n})`;
    const inner = analyzeSource(body, 'script', evalDepth + 1);
    for (const f of inner.findings) findings.push({ ...f, offset: call.start, what: `${name} of a string: ${f.what}` });
  };
  /** The global eval or Function, called directly or through the global object. */
  const codeBuilder = (callee: acorn.Node): 'eval' | 'Function' | undefined => {
    if (callee.type === 'Identifier') {
      const name = (callee as acorn.Identifier).name;
      return (name === 'eval' || name === 'Function') && env.get(name) === undefined ? name : undefined;
    }
    if (callee.type === 'MemberExpression') {
      const m = callee as acorn.MemberExpression;
      const name = propertyName(m, env);
      return (name === 'eval' || name === 'Function') && evaluate(m.object, env)?.k === 'global' ? name : undefined;
    }
    return undefined;
  };

  simple(program, {
    VariableDeclarator(n) {
      if (n.init === null || n.init === undefined) return;
      if (n.id.type === 'Identifier') bind(n.id.name, evaluate(n.init, env));
      else if (n.id.type === 'ObjectPattern') destructure(n.id, evaluate(n.init, env));
    },
    AssignmentExpression(n) {
      if (n.operator !== '=') return;
      if (n.left.type === 'Identifier') bind(n.left.name, evaluate(n.right, env));
      else if (n.left.type === 'ObjectPattern') destructure(n.left, evaluate(n.right, env));
    },
    CallExpression(n) {
      const callee = n.callee;
      // require.call(this, 'fs'), require.apply(this, ['fs'])
      if (callee.type === 'MemberExpression' && !callee.computed && callee.property.type === 'Identifier' && (callee.property.name === 'call' || callee.property.name === 'apply')) {
        if (evaluate(callee.object, env)?.k === 'require') {
          const arg = n.arguments[1];
          loads(n, callee.property.name === 'apply' && arg?.type === 'ArrayExpression' ? (arg.elements[0] ?? undefined) : arg);
        }
        return;
      }
      const v = evaluate(callee, env);
      if (v?.k === 'require') {
        loads(n, n.arguments[0]);
        return;
      }
      if (v === undefined && callee.type === 'Identifier' && n.arguments.length > 0) deferred.push(n);
      const builder = codeBuilder(callee);
      if (builder !== undefined) codeFromString(n, builder);
    },
    NewExpression(n) {
      if (codeBuilder(n.callee) === 'Function') codeFromString(n, 'Function');
    },
    ImportExpression(n) {
      loads(n, n.source);
    },
    ImportDeclaration(n) {
      const spec = String(n.source.value);
      reached(n, spec);
      const mod = moduleValue(spec);
      for (const s of n.specifiers) {
        if (s.type === 'ImportSpecifier') {
          const imported = s.imported.type === 'Identifier' ? s.imported.name : String(s.imported.value);
          bind(s.local.name, member(mod, imported));
        } else {
          bind(s.local.name, mod);
        }
      }
    },
    ExportNamedDeclaration(n) {
      if (n.source !== null && n.source !== undefined) reached(n, String(n.source.value));
    },
    ExportAllDeclaration(n) {
      reached(n, String(n.source.value));
    },
    // `typeof fetch`, `x instanceof Function`, `Function.prototype`: a test or a type, not a use.
    UnaryExpression(n) {
      if (n.operator === 'typeof' && n.argument.type === 'Identifier') handled.add(n.argument);
    },
    BinaryExpression(n) {
      if (n.operator === 'instanceof' && n.right.type === 'Identifier') handled.add(n.right);
    },
    MemberExpression(n) {
      if (n.object.type === 'Identifier' && n.object.name === 'Function') handled.add(n.object);
      const name = propertyName(n, env);
      if (name === undefined) return;
      const interesting = Object.prototype.hasOwnProperty.call(PROCESS_PROPERTIES, name) || Object.prototype.hasOwnProperty.call(GLOBALS, name);
      if (!interesting) return;
      const obj = evaluate(n.object, env);
      if (obj !== undefined) propertyFinding(n, obj, name);
    },
    Identifier(n) {
      if (Object.prototype.hasOwnProperty.call(GLOBALS, n.name) && lookup(env, n.name) === undefined) globals.push({ node: n, name: n.name });
    },
  });

  for (const n of deferred) if (evaluate(n.callee, env)?.k === 'require') loads(n, n.arguments[0]);
  for (const g of globals) {
    if (handled.has(g.node)) continue;
    add(g.node, 'global', snippet(g.node), GLOBALS[g.name]!);
  }
  return { findings, relative };
}
