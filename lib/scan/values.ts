/**
 * The little the scan knows about a value: whether an expression is the `require` function (or one
 * made by createRequire, module.require, process.mainModule.require...), `process`, the global
 * object, the module object, a built-in module's exports, or a string it can compute. Everything
 * else is unknown. Names are tracked per file, without scopes: a name bound once to `require` is
 * taken for `require` everywhere in the file, which may report too much, never too little, for
 * the aliases it follows.
 */
import type * as acorn from 'acorn';
import { builtinName } from './capabilities';

export type Value =
  | { k: 'require' }
  | { k: 'process' }
  | { k: 'global' }
  /** A Module instance: module, require.main, process.mainModule, Module.prototype. */
  | { k: 'module' }
  /** The Module class, or the exports of the built-in 'module'. */
  | { k: 'Module' }
  | { k: 'createRequire' }
  /** The exports of another built-in module. */
  | { k: 'builtin'; name: string }
  | { k: 'string'; s: string };

/** Strings built by folding are kept up to this length: a longer one is no module name. */
const MAX_STRING = 1024;
/** Expressions nest at most this deep in what is evaluated (the parser may have gone deeper). */
const MAX_DEPTH = 64;

const GLOBAL_NAMES = new Set(['globalThis', 'global', 'self', 'window']);

export type Env = Map<string, Value>;

/** The value of a name that no code of the file binds. */
function ambient(name: string): Value | undefined {
  if (name === 'require') return { k: 'require' };
  if (name === 'process') return { k: 'process' };
  if (name === 'module') return { k: 'module' };
  if (GLOBAL_NAMES.has(name)) return { k: 'global' };
  return undefined;
}

export function lookup(env: Env, name: string): Value | undefined {
  return env.get(name) ?? ambient(name);
}

/** The value of a required or imported specifier. */
export function moduleValue(specifier: string): Value | undefined {
  const b = builtinName(specifier);
  if (b === undefined) return undefined;
  if (b === 'module') return { k: 'Module' };
  if (b === 'process') return { k: 'process' };
  return { k: 'builtin', name: b };
}

/** The property `name` of a value. */
export function member(obj: Value | undefined, name: string | undefined): Value | undefined {
  if (obj === undefined || name === undefined) return undefined;
  switch (obj.k) {
    case 'global':
      if (name === 'process') return { k: 'process' };
      if (GLOBAL_NAMES.has(name)) return obj;
      return undefined;
    case 'process':
      return name === 'mainModule' ? { k: 'module' } : undefined;
    case 'module':
      if (name === 'require') return { k: 'require' };
      if (name === 'constructor') return { k: 'Module' };
      return undefined;
    case 'require':
      return name === 'main' ? { k: 'module' } : undefined;
    case 'Module':
      if (name === 'createRequire' || name === 'createRequireFromPath') return { k: 'createRequire' };
      if (name === '_load') return { k: 'require' };
      if (name === 'Module' || name === 'default') return obj;
      if (name === 'prototype') return { k: 'module' };
      return undefined;
    default:
      return undefined;
  }
}

/** The name of a member expression's property, when it is a name or a computable string. */
export function propertyName(node: acorn.MemberExpression | acorn.Property | acorn.AssignmentProperty, env: Env, depth = 0): string | undefined {
  const key = node.type === 'MemberExpression' ? node.property : node.key;
  if (!node.computed) {
    if (key.type === 'Identifier') return key.name;
    if (key.type === 'Literal' && typeof key.value === 'string') return key.value;
    return undefined;
  }
  const v = evaluate(key as acorn.Expression, env, depth + 1);
  return v?.k === 'string' ? v.s : undefined;
}

function str(s: string): Value | undefined {
  return s.length <= MAX_STRING ? { k: 'string', s } : undefined;
}

/** What the scan knows of an expression's value; undefined when nothing. */
export function evaluate(node: acorn.Expression | acorn.SpreadElement | acorn.Super | acorn.PrivateIdentifier | null | undefined, env: Env, depth = 0): Value | undefined {
  if (node === null || node === undefined || depth > MAX_DEPTH) return undefined;
  switch (node.type) {
    case 'Literal':
      return typeof node.value === 'string' ? str(node.value) : typeof node.value === 'number' ? str(String(node.value)) : undefined;
    case 'TemplateLiteral': {
      let s = node.quasis[0]?.value.cooked ?? '';
      for (let i = 0; i < node.expressions.length; i++) {
        const v = evaluate(node.expressions[i], env, depth + 1);
        if (v?.k !== 'string') return undefined;
        s += v.s + (node.quasis[i + 1]?.value.cooked ?? '');
        if (s.length > MAX_STRING) return undefined;
      }
      return str(s);
    }
    case 'BinaryExpression': {
      if (node.operator !== '+') return undefined;
      const a = evaluate(node.left as acorn.Expression, env, depth + 1);
      if (a?.k !== 'string') return undefined;
      const b = evaluate(node.right, env, depth + 1);
      return b?.k === 'string' ? str(a.s + b.s) : undefined;
    }
    case 'Identifier':
      return lookup(env, node.name);
    case 'MemberExpression':
      return member(evaluate(node.object, env, depth + 1), propertyName(node, env, depth));
    case 'ChainExpression':
      return evaluate(node.expression, env, depth + 1);
    case 'SequenceExpression':
      return evaluate(node.expressions[node.expressions.length - 1], env, depth + 1);
    case 'LogicalExpression':
      return evaluate(node.left, env, depth + 1) ?? evaluate(node.right, env, depth + 1);
    case 'ConditionalExpression':
      return evaluate(node.consequent, env, depth + 1) ?? evaluate(node.alternate, env, depth + 1);
    case 'AssignmentExpression':
      return node.operator === '=' ? evaluate(node.right, env, depth + 1) : undefined;
    case 'AwaitExpression':
      return evaluate(node.argument, env, depth + 1);
    case 'ImportExpression': {
      const v = evaluate(node.source, env, depth + 1);
      return v?.k === 'string' ? moduleValue(v.s) : undefined;
    }
    case 'CallExpression': {
      const callee = evaluate(node.callee, env, depth + 1);
      if (callee?.k === 'createRequire') return { k: 'require' };
      if (callee?.k === 'require') {
        const v = evaluate(node.arguments[0], env, depth + 1);
        return v?.k === 'string' ? moduleValue(v.s) : undefined;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}
