/**
 * The fleet query language: selects devices by id, attributes, tags and shadow state, for
 * dynamic groups, job targets and `GET /api/v1/fleet/devices?query=`. Small on purpose:
 *
 *   reported.software.version < 2.0.0 and tags.region = eu
 *   attributes.model in (x1, x2) and not reported.software.status = FAILURE
 *   (tags = canary or deviceId = dev-7) and desired.software exists
 *
 * - fields: `deviceId`, `attributes.<name>`, `tags` (membership), `tags.<key>` (the value
 *   of a `key:value` tag), `reported.<path>`, `desired.<path>` (the classic shadow);
 * - operators: `=` (or `==`), `!=`, `<`, `<=`, `>`, `>=`, `in (v, ...)`, `exists`;
 *   `and` binds tighter than `or`; `not`; parentheses;
 * - values: bare words (`eu`, `2.0.0`, `42`, `true`) or quoted strings (`"a b"`, `'x'`);
 * - comparison: semantic versions compare by precedence (semver §11; a version field
 *   compared with `2` or `2.1` reads it as `2.0.0` / `2.1.0`), numbers numerically, the rest
 *   as text; a missing field matches nothing but `!=` and `not`.
 *
 * Parse errors are UpdraftError BAD_REQUEST naming the 1-based character position.
 */
import { UpdraftError } from '../errors.ts';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json.ts';
import { SEMVER, compareSemver } from '../protocol/software.ts';
import type { DeviceRecord } from '../store/state-store.ts';

/** What a query is evaluated against. */
export interface QuerySubject {
  device: Pick<DeviceRecord, 'deviceId' | 'attributes' | 'tags'>;
  reported?: JsonObject | undefined;
  desired?: JsonObject | undefined;
}

type Scalar = string | number | boolean;
type Op = '=' | '!=' | '<' | '<=' | '>' | '>=';

/** A parsed query (an expression tree). */
export type QueryNode =
  | { kind: 'and' | 'or'; left: QueryNode; right: QueryNode }
  | { kind: 'not'; operand: QueryNode }
  | { kind: 'compare'; field: string[]; op: Op; value: Scalar }
  | { kind: 'in'; field: string[]; values: Scalar[] }
  | { kind: 'exists'; field: string[] };

/** A compiled query. */
export interface FleetQuery {
  /** The query text as given. */
  text: string;
  root: QueryNode;
  /** True when the query reads shadow state (the caller must load it). */
  needsShadow: boolean;
  matches(subject: QuerySubject): boolean;
}

interface Token {
  type: 'word' | 'string' | 'op' | '(' | ')' | ',' | 'end';
  text: string;
  /** 1-based position of the token's first character. */
  pos: number;
}

const ROOTS = ['deviceId', 'attributes', 'tags', 'reported', 'desired'];
const MAX_QUERY_LENGTH = 4096;

/** Parses a query; BAD_REQUEST naming the position of the first error. */
export function parseQuery(text: string): FleetQuery {
  if (typeof text !== 'string' || text.trim() === '') throw new UpdraftError('BAD_REQUEST', 'invalid query: it is empty');
  if (text.length > MAX_QUERY_LENGTH) throw new UpdraftError('BAD_REQUEST', `invalid query: longer than ${MAX_QUERY_LENGTH} characters`);
  const parser = new Parser(tokenize(text));
  const root = parser.expression();
  parser.expectEnd();
  const needsShadow = usesShadow(root);
  return { text, root, needsShadow, matches: (s) => evaluate(root, s) };
}

function fail(pos: number, message: string): never {
  throw new UpdraftError('BAD_REQUEST', `invalid query at position ${pos}: ${message}`);
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const pos = i + 1;
    if (c === '(' || c === ')' || c === ',') {
      out.push({ type: c, text: c, pos });
      i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = '';
      while (j < text.length && text[j] !== c) {
        if (text[j] === '\\' && j + 1 < text.length) j++;
        value += text[j];
        j++;
      }
      if (j >= text.length) fail(pos, `unterminated string starting with ${c}`);
      out.push({ type: 'string', text: value, pos });
      i = j + 1;
    } else if ('=!<>'.includes(c)) {
      const two = text.slice(i, i + 2);
      const op = ['==', '!=', '<=', '>='].includes(two) ? two : c;
      if (op === '!') fail(pos, 'unexpected "!"; use != or not');
      out.push({ type: 'op', text: op === '==' ? '=' : op, pos });
      i += op.length;
    } else if (/[A-Za-z0-9_.:\-+*]/.test(c)) {
      let j = i;
      while (j < text.length && /[A-Za-z0-9_.:\-+*]/.test(text[j]!)) j++;
      out.push({ type: 'word', text: text.slice(i, j), pos });
      i = j;
    } else {
      fail(pos, `unexpected character "${c}"`);
    }
  }
  out.push({ type: 'end', text: '', pos: text.length + 1 });
  return out;
}

function isKeyword(t: Token, kw: string): boolean {
  return t.type === 'word' && t.text.toLowerCase() === kw;
}

function describe(t: Token): string {
  if (t.type === 'end') return 'the end of the query';
  if (t.type === 'string') return `"${t.text}"`;
  return `"${t.text}"`;
}

class Parser {
  private i = 0;
  private readonly tokens: Token[];

  constructor(tokens: Token[]) {
    this.tokens = tokens;
  }

  private peek(): Token {
    return this.tokens[this.i]!;
  }

  private next(): Token {
    const t = this.tokens[this.i]!;
    if (t.type !== 'end') this.i++;
    return t;
  }

  expectEnd(): void {
    const t = this.peek();
    if (t.type !== 'end') fail(t.pos, `expected "and", "or" or the end of the query, found ${describe(t)}`);
  }

  expression(): QueryNode {
    let left = this.conjunction();
    while (isKeyword(this.peek(), 'or')) {
      this.next();
      left = { kind: 'or', left, right: this.conjunction() };
    }
    return left;
  }

  private conjunction(): QueryNode {
    let left = this.unary();
    while (isKeyword(this.peek(), 'and')) {
      this.next();
      left = { kind: 'and', left, right: this.unary() };
    }
    return left;
  }

  private unary(): QueryNode {
    const t = this.peek();
    if (isKeyword(t, 'not')) {
      this.next();
      return { kind: 'not', operand: this.unary() };
    }
    if (t.type === '(') {
      this.next();
      const inner = this.expression();
      const close = this.next();
      if (close.type !== ')') fail(close.pos, `expected ")" to close the "(" at position ${t.pos}, found ${describe(close)}`);
      return inner;
    }
    return this.comparison();
  }

  private comparison(): QueryNode {
    const t = this.next();
    if (t.type !== 'word') fail(t.pos, `expected a field such as reported.software.version, found ${describe(t)}`);
    const field = t.text.split('.');
    if (!ROOTS.includes(field[0]!) || field.some((p) => p === '')) {
      fail(t.pos, `unknown field "${t.text}"; fields are deviceId, attributes.<name>, tags, tags.<key>, reported.<path> or desired.<path>`);
    }
    if ((field[0] === 'attributes' || field[0] === 'reported' || field[0] === 'desired') && field.length < 2) fail(t.pos, `"${t.text}" needs a path, e.g. ${t.text}.version`);
    if (field[0] === 'deviceId' && field.length > 1) fail(t.pos, `deviceId has no sub-fields`);
    const op = this.next();
    if (isKeyword(op, 'exists')) return { kind: 'exists', field };
    if (isKeyword(op, 'in')) {
      const open = this.next();
      if (open.type !== '(') fail(open.pos, `expected "(" after in, found ${describe(open)}`);
      const values: Scalar[] = [this.value(open)];
      for (;;) {
        const sep = this.next();
        if (sep.type === ')') break;
        if (sep.type !== ',') fail(sep.pos, `expected "," or ")" in the list, found ${describe(sep)}`);
        values.push(this.value(sep));
      }
      return { kind: 'in', field, values };
    }
    if (op.type !== 'op') fail(op.pos, `expected an operator (=, !=, <, <=, >, >=, in, exists) after ${t.text}, found ${describe(op)}`);
    return { kind: 'compare', field, op: op.text as Op, value: this.value(op) };
  }

  private value(after: Token): Scalar {
    const t = this.next();
    if (t.type === 'string') return t.text;
    if (t.type !== 'word' || ['and', 'or', 'not'].includes(t.text.toLowerCase())) fail(t.pos, `expected a value after "${after.text}", found ${describe(t)}`);
    if (t.text === 'true') return true;
    if (t.text === 'false') return false;
    if (/^-?\d+(\.\d+)?$/.test(t.text)) return Number(t.text);
    return t.text;
  }
}

function usesShadow(n: QueryNode): boolean {
  switch (n.kind) {
    case 'and':
    case 'or':
      return usesShadow(n.left) || usesShadow(n.right);
    case 'not':
      return usesShadow(n.operand);
    default:
      return n.field[0] === 'reported' || n.field[0] === 'desired';
  }
}

/** The values a field has for a subject (several for tags); empty when missing. */
function resolve(field: string[], s: QuerySubject): JsonValue[] {
  const [root, ...rest] = field;
  switch (root) {
    case 'deviceId':
      return [s.device.deviceId];
    case 'attributes': {
      // own properties only: "attributes.constructor exists" must not match every device
      const name = rest.join('.');
      const v = Object.hasOwn(s.device.attributes, name) ? s.device.attributes[name] : undefined;
      return v === undefined ? [] : [v];
    }
    case 'tags': {
      if (rest.length === 0) return s.device.tags;
      const prefix = `${rest.join('.')}:`;
      return s.device.tags.filter((t) => t.startsWith(prefix)).map((t) => t.slice(prefix.length));
    }
    default: {
      let v: JsonValue | undefined = root === 'reported' ? s.reported : s.desired;
      for (const key of rest) v = isJsonObject(v) && Object.hasOwn(v, key) ? v[key] : undefined;
      if (v === undefined || v === null) return [];
      return Array.isArray(v) ? v : [v];
    }
  }
}

/** Reads `2` or `2.1` as `2.0.0` / `2.1.0` when compared with a version field. */
function asVersion(v: Scalar, versionField: boolean): string | undefined {
  const text = String(v);
  if (SEMVER.test(text)) return text;
  if (versionField && /^\d+(\.\d+)?$/.test(text)) return text.split('.').length === 1 ? `${text}.0.0` : `${text}.0`;
  return undefined;
}

/** Negative, 0 or positive; undefined when the two cannot be ordered. */
function compare(actual: JsonValue, expected: Scalar, versionField: boolean): number | undefined {
  if (typeof actual === 'object' && actual !== null) return undefined;
  if (actual === null) return undefined;
  const va = asVersion(actual, versionField);
  const ve = asVersion(expected, versionField);
  if (va !== undefined && ve !== undefined) return compareSemver(va, ve);
  const na = typeof actual === 'number' ? actual : Number(actual);
  const ne = typeof expected === 'number' ? expected : Number(expected);
  if (typeof actual !== 'boolean' && typeof expected !== 'boolean' && String(actual).trim() !== '' && Number.isFinite(na) && Number.isFinite(ne)) return na - ne;
  const sa = String(actual);
  const se = String(expected);
  return sa < se ? -1 : sa > se ? 1 : 0;
}

function evaluate(n: QueryNode, s: QuerySubject): boolean {
  switch (n.kind) {
    case 'and':
      return evaluate(n.left, s) && evaluate(n.right, s);
    case 'or':
      return evaluate(n.left, s) || evaluate(n.right, s);
    case 'not':
      return !evaluate(n.operand, s);
    case 'exists':
      return resolve(n.field, s).length > 0;
    case 'in': {
      const versionField = /version$/i.test(n.field[n.field.length - 1]!);
      return resolve(n.field, s).some((a) => n.values.some((v) => compare(a, v, versionField) === 0));
    }
    case 'compare': {
      const versionField = /version$/i.test(n.field[n.field.length - 1]!);
      const values = resolve(n.field, s);
      if (n.op === '!=') return !values.some((a) => compare(a, n.value, versionField) === 0);
      return values.some((a) => {
        const c = compare(a, n.value, versionField);
        if (c === undefined) return false;
        switch (n.op) {
          case '=':
            return c === 0;
          case '<':
            return c < 0;
          case '<=':
            return c <= 0;
          case '>':
            return c > 0;
          default:
            return c >= 0;
        }
      });
    }
  }
}
