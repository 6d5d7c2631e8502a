/**
 * The fleet query language: selects devices by id, attributes, tags and shadow state, for
 * dynamic groups, job targets and `GET /api/v1/fleet/devices?query=`. Small on purpose:
 *
 *   reported.software.version < 2.0.0 and tags.region = eu
 *   attributes.model in (x1, x2) and not reported.software.status = FAILURE
 *   (tags = canary or deviceId = dev-7) and desired.software exists
 *   reported.modules[name = modem].version < 1.3 and reported."fw-flavour" = lts
 *
 * - fields: `deviceId`, `attributes.<name>`, `tags` (membership), `tags.<key>` (the value
 *   of a `key:value` tag), `reported.<path>`, `desired.<path>` (the classic shadow);
 * - a path's keys are bare words or quoted like values (`reported."fw-version"`, `."a.b"`);
 *   in the shadow, `[n]` is an array's element n (from 0), `[*]` every element, and
 *   `[<condition>]` the elements the condition holds for, its fields read in the element
 *   (`reported.modules[name = modem and version < 1.3] exists`). A field's parts touch: no
 *   spaces between them. A step that finds no object or array (an index on a string) is
 *   missing;
 * - operators: `=` (or `==`), `!=`, `<`, `<=`, `>`, `>=`, `in (v, ...)`, `exists`;
 *   `and` binds tighter than `or`; `not`; parentheses; at most MAX_NESTING parentheses and
 *   `[...]` conditions open at once;
 * - values: bare words (`eu`, `2.0.0`, `42`, `true`) or quoted strings (`"a b"`, `'x'`),
 *   kept as written (`2.10` stays `2.10`, never the double 2.1).
 *
 * Comparison (docs/rollouts.md, "Devices, queries and groups"), so that a job's targets are
 * exactly the devices meant, never ones that merely convert to the same JavaScript number:
 * - two semantic versions compare by precedence (semver §11); on a field named `...version`,
 *   `2` and `2.10` are read as `2.0.0` and `2.10.0`;
 * - a quoted value, or a bare word that is not a number or a boolean, is text: it equals a
 *   device's string with the same characters (case counts) and nothing else (not the number
 *   0 for `""`, not 123 for `"00123"`); `<`/`>` order strings by their characters;
 * - a bare number (`42`, `-1.5`, `00123`) compares with a JSON number by exact decimal value
 *   (never through a double: `9007199254740993` is not `9007199254740992`). With a device's
 *   string it compares as a number only when both are written as JSON writes numbers (`12`,
 *   `-3`, `1.5`: no leading or trailing zeros, sign `+`, exponent, `0x`/`0b`, spaces); else
 *   it equals only the same text (`00123` the string "00123") and is not ordered. So
 *   `= 123` matches 123 and "123", never "00123", "0x7B", "1.23e2" or " 123 ";
 * - `true`/`false` equal JSON booleans only (not the string "true");
 * - `deviceId` and `tags` are text: every value is taken as its text (`deviceId = 7` is the
 *   device `7`, not `007`; `tags.beta = true` the tag `beta:true`);
 * - objects and null match nothing; an array matches when one of its elements does; a field
 *   that is missing, null, `[]` or an array of nulls (`[null]`) matches nothing but `!=` and
 *   `not` (and is not `exists`).
 *
 * Parse errors are UpdraftError BAD_REQUEST naming the 1-based position, counted in
 * characters (an emoji is one).
 */
import { UpdraftError } from '../errors.ts';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json.ts';
import { STORED_SEMVER, compareSemver } from '../protocol/software.ts';
import type { DeviceRecord } from '../store/state-store.ts';

/** What a query is evaluated against. */
export interface QuerySubject {
  device: Pick<DeviceRecord, 'deviceId' | 'attributes' | 'tags'>;
  reported?: JsonObject | undefined;
  desired?: JsonObject | undefined;
}

/**
 * A value as written in the query: its text always (a bare `2.10` keeps its trailing zero),
 * and what a bare word is read as. `number` is a bare decimal (/^-?\d+(\.\d+)?$/), compared
 * by its text's exact value.
 */
export type QueryValue = { kind: 'text'; text: string } | { kind: 'number'; text: string } | { kind: 'boolean'; text: 'true' | 'false'; value: boolean };

type Op = '=' | '!=' | '<' | '<=' | '>' | '>=';

/**
 * One step of a field's path: a key (`.name`, `."fw-version"`), an element of an array
 * (`[0]`), every element (`[*]`), or the elements for which a condition on the element holds
 * (`[name = modem]`).
 */
export type FieldStep = { name: string } | { index: number } | { each: true } | { where: QueryNode };

/** A field: where it starts (`element` is the array element a `[...]` condition tests) and its path. */
export interface QueryField {
  root: 'deviceId' | 'attributes' | 'tags' | 'reported' | 'desired' | 'element';
  steps: FieldStep[];
}

/** A parsed query (an expression tree). */
export type QueryNode =
  | { kind: 'and' | 'or'; left: QueryNode; right: QueryNode }
  | { kind: 'not'; operand: QueryNode }
  | { kind: 'compare'; field: QueryField; op: Op; value: QueryValue }
  | { kind: 'in'; field: QueryField; values: QueryValue[] }
  | { kind: 'exists'; field: QueryField };

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
  type: 'word' | 'string' | 'op' | '(' | ')' | '[' | ']' | ',' | 'end';
  text: string;
  /** 1-based position of the token's first character. */
  pos: number;
  /** 1-based position just past its last character: a field's parts touch (`reported."a b"[0]`). */
  end: number;
}

const ROOTS = ['deviceId', 'attributes', 'tags', 'reported', 'desired'] as const;
type Root = (typeof ROOTS)[number];
const FIELDS_HELP = 'fields are deviceId, attributes.<name>, tags, tags.<key>, reported.<path> or desired.<path>';
/** A key written bare in a path; any other is quoted (`."fw-version"`). */
const BARE_NAME = /^[A-Za-z0-9_:\-+*]+$/;
const MAX_QUERY_LENGTH = 4096;
/**
 * Most parentheses and `[...]` conditions open at once (together): the parser recurses a few
 * frames a level, and a query of 4,096 characters left open (`((((...`, `a[a[a[...`)
 * overflowed the stack from about 1,200 levels of `[`.
 */
const MAX_NESTING = 64;
/** What a bare word (a field name or a value) is made of; anything else must be quoted (a key of a path: `."a b"`). */
const WORD_CHAR = /^[A-Za-z0-9_.:\-+*]$/;
/** A bare number: read as written, never through a double. */
const DECIMAL = /^-?\d+(\.\d+)?$/;
/** A number written the way JSON and JavaScript write it back (`12`, `-3`, `1.5`; not `-0`). */
const PLAIN_NUMBER = /^-?(0|[1-9]\d*)(\.\d*[1-9])?$/;

/** Parses a query; BAD_REQUEST naming the position of the first error. */
export function parseQuery(text: string): FleetQuery {
  if (typeof text !== 'string' || text.trim() === '') throw new UpdraftError('BAD_REQUEST', 'invalid query: it is empty');
  // characters are code points: a UTF-16 unit is at most one, a code point at most two units
  const chars = text.length > MAX_QUERY_LENGTH * 2 ? undefined : Array.from(text);
  if (chars === undefined || chars.length > MAX_QUERY_LENGTH) throw new UpdraftError('BAD_REQUEST', `invalid query: longer than ${MAX_QUERY_LENGTH} characters`);
  const parser = new Parser(tokenize(chars));
  const root = parser.expression();
  parser.expectEnd();
  const needsShadow = usesShadow(root);
  return { text, root, needsShadow, matches: (s) => evaluate(root, s) };
}

/**
 * A query saved by an earlier release (a dynamic group's, a job's targets.query) that this one
 * refuses, e.g. nested deeper than MAX_NESTING (a cap added after it was saved). A CONFLICT,
 * not a 400: the request that reads it is fine, the stored group or job is not.
 */
export class StoredQueryError extends UpdraftError {
  constructor(owner: string, cause: UpdraftError, remedy: string) {
    super('CONFLICT', `${owner} no longer parses (saved by an earlier release): ${cause.message}; ${remedy}`, { cause });
    this.name = 'StoredQueryError';
  }
}

/**
 * Parses a stored query; StoredQueryError (409) naming `owner` ("group lab", "targets.query")
 * and what to do (`remedy`) when this release refuses it.
 */
export function parseStoredQuery(text: string, owner: string, remedy: string): FleetQuery {
  try {
    return parseQuery(text);
  } catch (err) {
    if (err instanceof UpdraftError && err.code === 'BAD_REQUEST') throw new StoredQueryError(owner, err, remedy);
    throw err;
  }
}

function fail(pos: number, message: string): never {
  throw new UpdraftError('BAD_REQUEST', `invalid query at position ${pos}: ${message}`);
}

/** Splits the query's characters (code points, so that positions count characters) into tokens. */
function tokenize(chars: string[]): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < chars.length) {
    const c = chars[i]!;
    if (/\s/u.test(c)) {
      i++;
      continue;
    }
    const pos = i + 1;
    if (c === '(' || c === ')' || c === ',' || c === '[' || c === ']') {
      out.push({ type: c, text: c, pos, end: pos + 1 });
      i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = '';
      while (j < chars.length && chars[j] !== c) {
        if (chars[j] === '\\' && j + 1 < chars.length) j++;
        value += chars[j];
        j++;
      }
      if (j >= chars.length) fail(pos, `unterminated string starting with ${c}`);
      out.push({ type: 'string', text: value, pos, end: j + 2 });
      i = j + 1;
    } else if ('=!<>'.includes(c)) {
      const two = c + (chars[i + 1] ?? '');
      const op = ['==', '!=', '<=', '>='].includes(two) ? two : c;
      if (op === '!') fail(pos, 'unexpected "!"; use != or not');
      out.push({ type: 'op', text: op === '==' ? '=' : op, pos, end: pos + op.length });
      i += op.length;
    } else if (WORD_CHAR.test(c)) {
      let j = i;
      while (j < chars.length && WORD_CHAR.test(chars[j]!)) j++;
      out.push({ type: 'word', text: chars.slice(i, j).join(''), pos, end: j + 1 });
      i = j;
    } else {
      fail(pos, `unexpected character ${showCharacter(c)}`);
    }
  }
  out.push({ type: 'end', text: '', pos: chars.length + 1, end: chars.length + 1 });
  return out;
}

/** A character as an error names it: itself and its code point, `"😀" (U+1F600)`. */
function showCharacter(c: string): string {
  return `"${c}" (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
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
  /** Parentheses and `[...]` conditions open (MAX_NESTING). */
  private depth = 0;

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
      this.enter(t);
      const inner = this.expression();
      this.depth--;
      const close = this.next();
      if (close.type !== ')') fail(close.pos, `expected ")" to close the "(" at position ${t.pos}, found ${describe(close)}`);
      return inner;
    }
    return this.comparison();
  }

  /** One level deeper, opened by `open`: refused past MAX_NESTING (left by `depth--`). */
  private enter(open: Token): void {
    if (this.depth >= MAX_NESTING) fail(open.pos, `nested more than ${MAX_NESTING} levels deep (parentheses and [...] conditions together)`);
    this.depth++;
  }

  private comparison(): QueryNode {
    const first = this.peek();
    const field = this.field();
    const named = showField(field);
    const op = this.next();
    if (isKeyword(op, 'exists')) return { kind: 'exists', field };
    if (isKeyword(op, 'in')) {
      const open = this.next();
      if (open.type !== '(') fail(open.pos, `expected "(" after in, found ${describe(open)}`);
      const values: QueryValue[] = [this.value(open)];
      for (;;) {
        const sep = this.next();
        if (sep.type === ')') break;
        if (sep.type !== ',') fail(sep.pos, `expected "," or ")" in the list, found ${describe(sep)}`);
        values.push(this.value(sep));
      }
      return { kind: 'in', field, values };
    }
    if (op.type !== 'op') fail(op.pos, `expected an operator (=, !=, <, <=, >, >=, in, exists) after ${first.pos === op.pos ? 'the field' : named}, found ${describe(op)}`);
    return { kind: 'compare', field, op: op.text as Op, value: this.value(op) };
  }

  /** How many `[...]` conditions the parser is in: their fields start at the element. */
  private inElement = 0;

  /**
   * A field: a root and its path, whose parts touch (no spaces): keys after dots, bare or
   * quoted (`reported."fw-version"`), and `[...]` steps (`reported.modules[*].name`). In a
   * `[...]` condition a field has no root: it is a path in the element (`[name = modem]`).
   */
  private field(): QueryField {
    const t = this.next();
    const steps: FieldStep[] = [];
    let root: QueryField['root'];
    /** A dot that wants a name (a word's trailing dot): the position just past it, or 0. */
    let wantName = 0;
    /** The names of `parts`, the dot-separated rest of `word` from position `at`. */
    const names = (word: Token, parts: string[], at: number) => {
      parts.forEach((part, k) => {
        if (part === '' && k === parts.length - 1) wantName = word.end;
        else if (part === '') fail(at, `empty name in "${word.text}": a key with a dot is quoted, e.g. reported."a.b"`);
        else steps.push({ name: part });
        at += Array.from(part).length + 1;
      });
    };
    if (this.inElement > 0) {
      root = 'element';
      if (t.type === 'string') steps.push({ name: t.text });
      else if (t.type === 'word' && !t.text.startsWith('.')) names(t, t.text.split('.'), t.pos);
      else fail(t.pos, `expected a field of the element such as name (a path in the element: [name = modem]), found ${describe(t)}`);
    } else {
      if (t.type !== 'word') fail(t.pos, `expected a field such as reported.software.version, found ${describe(t)}`);
      const [head, ...rest] = t.text.split('.');
      if (!(ROOTS as readonly string[]).includes(head!)) fail(t.pos, `unknown field "${t.text}"; ${FIELDS_HELP}`);
      root = head as Root;
      names(t, rest, t.pos + head!.length + 1);
    }
    let end = t.end;
    for (let p = this.peek(); p.pos === end && p.type !== 'end'; p = this.peek()) {
      if (wantName) {
        if (p.type !== 'string') break;
        steps.push({ name: this.next().text });
        wantName = 0;
      } else if (p.type === '[') {
        if (root === 'deviceId' || root === 'attributes' || root === 'tags') fail(p.pos, notAnArray(root, steps));
        steps.push(this.bracket());
      } else if (p.type === 'word' && p.text.startsWith('.')) {
        names(this.next(), p.text.slice(1).split('.'), p.pos + 1);
      } else if (p.type === 'word' || p.type === 'string') {
        fail(p.pos, `expected "." or "[" between the parts of a field, found ${describe(p)}`);
      } else {
        break;
      }
      end = this.tokens[this.i - 1]!.end;
    }
    if (wantName) fail(wantName - 1, '"." is not followed by a name; a key with other characters is quoted, e.g. reported."fw-version"');
    const field = { root, steps };
    if (root === 'deviceId' && steps.length > 0) fail(t.pos, 'deviceId has no sub-fields');
    if ((root === 'attributes' || root === 'reported' || root === 'desired') && !('name' in (steps[0] ?? {}))) fail(t.pos, `"${root}" needs a path, e.g. ${root}.version`);
    return field;
  }

  /** A `[...]` step: `[0]`, `[*]` or a condition on the element. */
  private bracket(): FieldStep {
    const open = this.next();
    const a = this.peek();
    const b = this.tokens[this.i + 1]!;
    if (a.type === 'end') fail(a.pos, `"[" at position ${open.pos} is not closed: write an index ([0]), [*] for any element, or a condition on the element ([name = modem]), then "]"`);
    if (a.type === ']') fail(a.pos, 'empty "[]": write an index ([0]), [*] for any element, or a condition on the element ([name = modem])');
    if (a.type === 'word' && (a.text === '*' || /^[-+]?\d+(\.\d+)?$/.test(a.text)) && b.type !== 'op') {
      if (b.type !== ']') fail(b.pos, `expected "]" to close the "[" at position ${open.pos}, found ${describe(b)}`);
      if (a.text.startsWith('-')) fail(a.pos, `an index counts elements from 0: ${a.text} is negative`);
      if (a.text !== '*' && !/^\d+$/.test(a.text)) fail(a.pos, `an index is a whole number from 0, not ${a.text}`);
      this.next();
      this.next();
      if (a.text === '*') return { each: true };
      const index = Number(a.text);
      if (!Number.isSafeInteger(index)) fail(a.pos, `index ${a.text} is too large`);
      return { index };
    }
    this.enter(open);
    this.inElement++;
    const where = this.expression();
    this.inElement--;
    this.depth--;
    const close = this.next();
    if (close.type !== ']') fail(close.pos, `expected "]" to close the "[" at position ${open.pos}, found ${describe(close)}`);
    return { where };
  }

  private value(after: Token): QueryValue {
    const t = this.next();
    if (t.type === 'string') return { kind: 'text', text: t.text };
    if (t.type !== 'word' || ['and', 'or', 'not'].includes(t.text.toLowerCase())) fail(t.pos, `expected a value after "${after.text}", found ${describe(t)}`);
    if (t.text === 'true' || t.text === 'false') return { kind: 'boolean', text: t.text, value: t.text === 'true' };
    if (DECIMAL.test(t.text)) return { kind: 'number', text: t.text };
    return { kind: 'text', text: t.text };
  }
}

/** Why `[` cannot follow a field of the registry: none holds an array. */
function notAnArray(root: 'deviceId' | 'attributes' | 'tags', steps: FieldStep[]): string {
  const named = showField({ root, steps });
  if (root === 'deviceId') return 'deviceId is text, not an array: it has no elements to index';
  if (root === 'attributes') return `attributes hold text, numbers and booleans, never arrays: ${named} has no elements to index`;
  if (steps.length > 0) return `a tag's value is text, not an array: ${named} has no elements to index`;
  return 'tags has no elements to index: tags = canary matches a device carrying the tag canary';
}

/** A field as written (keys that are not bare quoted), for error messages. */
function showField(f: QueryField): string {
  let out = f.root === 'element' ? '' : f.root;
  for (const step of f.steps) {
    if ('name' in step) out += `${out === '' ? '' : '.'}${BARE_NAME.test(step.name) ? step.name : JSON.stringify(step.name)}`;
    else if ('index' in step) out += `[${step.index}]`;
    else out += 'each' in step ? '[*]' : '[...]';
  }
  return out;
}

function usesShadow(n: QueryNode): boolean {
  switch (n.kind) {
    case 'and':
    case 'or':
      return usesShadow(n.left) || usesShadow(n.right);
    case 'not':
      return usesShadow(n.operand);
    default:
      return n.field.root === 'reported' || n.field.root === 'desired';
  }
}

/**
 * The values a field has for a subject (several for tags, or through `[*]`); empty when
 * missing. `element` is the array element a `[...]` condition is testing.
 */
function resolve(field: QueryField, s: QuerySubject, element?: JsonValue): JsonValue[] {
  const { root, steps } = field;
  switch (root) {
    case 'deviceId':
      return [s.device.deviceId];
    case 'attributes': {
      // own properties only: "attributes.constructor exists" must not match every device
      const name = keyOf(steps);
      const v = Object.hasOwn(s.device.attributes, name) ? s.device.attributes[name] : undefined;
      return v === undefined ? [] : [v];
    }
    case 'tags': {
      if (steps.length === 0) return s.device.tags;
      const prefix = `${keyOf(steps)}:`;
      return s.device.tags.filter((t) => t.startsWith(prefix)).map((t) => t.slice(prefix.length));
    }
    default: {
      const start: JsonValue | undefined = root === 'element' ? element : root === 'reported' ? s.reported : s.desired;
      let values: JsonValue[] = start === undefined ? [] : [start];
      for (const step of steps) values = values.flatMap((v) => follow(v, step, s));
      // null elements are no values: `[null]` is missing like `[]` (docs/rollouts.md)
      return values.flatMap((v) => (v === null ? [] : Array.isArray(v) ? v.filter(present) : [v]));
    }
  }
}

/** An attribute's name or a tag's key: the path's names joined by dots (`attributes.a.b` is "a.b"). */
function keyOf(steps: FieldStep[]): string {
  return steps.map((step) => ('name' in step ? step.name : '')).join('.');
}

/** Where one step leads from a value: a key of an object, elements of an array; nothing from anything else. */
function follow(v: JsonValue, step: FieldStep, s: QuerySubject): JsonValue[] {
  if ('name' in step) return isJsonObject(v) && Object.hasOwn(v, step.name) ? [v[step.name]!] : [];
  if (!Array.isArray(v)) return [];
  if ('index' in step) return step.index < v.length ? [v[step.index]!] : [];
  if ('each' in step) return v;
  return v.filter((e) => evaluate(step.where, s, e));
}

/** A value a field holds: not null, nor an array holding none (`[null]`, `[[]]`). */
function present(v: JsonValue): boolean {
  return v !== null && (!Array.isArray(v) || v.some(present));
}

/** A version's text: a semantic version, or `2` / `2.10` read as `2.0.0` / `2.10.0` on a version field. */
function versionOf(text: string, versionField: boolean): string | undefined {
  if (STORED_SEMVER.test(text)) return text;
  if (!versionField || !/^\d+(\.\d+)?$/.test(text)) return undefined;
  const v = text.includes('.') ? `${text}.0` : `${text}.0.0`;
  return STORED_SEMVER.test(v) ? v : undefined;
}

/** True for a string written the way JSON writes a number (`12`, `-3`, `1.5`). */
function isPlainNumber(s: string): boolean {
  return PLAIN_NUMBER.test(s) && s !== '-0';
}

/** A JSON number's decimal text, exact for integers (9007199254740992, not 9007199254740992e0) and without an exponent. */
function decimalOf(n: number): string {
  if (Number.isInteger(n)) return BigInt(n).toString();
  const s = String(n);
  // only the smallest fractions are written with an exponent: 1.5e-7 is 0.00000015
  const m = /^(-?)(\d)(?:\.(\d+))?e-(\d+)$/.exec(s);
  return m ? `${m[1]}0.${'0'.repeat(Number(m[4]) - 1)}${m[2]}${m[3] ?? ''}` : s;
}

/** Orders two decimals (/^-?\d+(\.\d+)?$/) by exact value, digit by digit. */
function compareDecimal(a: string, b: string): number {
  const pa = decimalParts(a);
  const pb = decimalParts(b);
  if (pa.sign !== pb.sign) return pa.sign - pb.sign;
  let magnitude = pa.int.length - pb.int.length;
  if (magnitude === 0) magnitude = pa.int < pb.int ? -1 : pa.int > pb.int ? 1 : pa.frac < pb.frac ? -1 : pa.frac > pb.frac ? 1 : 0;
  return pa.sign < 0 ? -magnitude : magnitude;
}

function decimalParts(s: string): { sign: number; int: string; frac: string } {
  const negative = s.startsWith('-');
  const [int = '', frac = ''] = (negative ? s.slice(1) : s).split('.');
  const i = int.replace(/^0+/, '');
  const f = frac.replace(/0+$/, '');
  return { sign: i === '' && f === '' ? 0 : negative ? -1 : 1, int: i, frac: f };
}

/**
 * Negative, 0 or positive; undefined when the two are not equal and cannot be ordered (the
 * rules are in this file's head comment and docs/rollouts.md).
 */
function compare(actual: JsonValue, value: QueryValue, textField: boolean, versionField: boolean): number | undefined {
  if (actual === null || typeof actual === 'object') return undefined;
  if (typeof actual !== 'boolean' && value.kind !== 'boolean') {
    const va = versionOf(typeof actual === 'number' ? decimalOf(actual) : actual, versionField);
    const ve = versionOf(value.text, versionField);
    if (va !== undefined && ve !== undefined) return compareSemver(va, ve);
  }
  // ids and tags are text, whatever the value looks like
  const kind = textField ? 'text' : value.kind;
  switch (kind) {
    case 'boolean':
      return typeof actual === 'boolean' && String(actual) === value.text ? 0 : undefined;
    case 'number':
      if (typeof actual === 'number') return compareDecimal(decimalOf(actual), value.text);
      if (typeof actual !== 'string') return undefined;
      // "00123", "0x7B", "1e2", " 123 " are text that Number() would turn into numbers: only
      // a string written as the number is written is compared as one
      if (isPlainNumber(actual) && isPlainNumber(value.text)) return compareDecimal(actual, value.text);
      return actual === value.text ? 0 : undefined;
    default:
      if (typeof actual !== 'string') return undefined;
      return actual < value.text ? -1 : actual > value.text ? 1 : 0;
  }
}

/** Ids and tags are text; a field whose last key is named `...version` reads `2` as `2.0.0`. */
function fieldKind(field: QueryField): { textField: boolean; versionField: boolean } {
  let name: string = field.root;
  for (const step of field.steps) if ('name' in step) name = step.name;
  return { textField: field.root === 'deviceId' || field.root === 'tags', versionField: /version$/i.test(name) };
}

function evaluate(n: QueryNode, s: QuerySubject, element?: JsonValue): boolean {
  switch (n.kind) {
    case 'and':
      return evaluate(n.left, s, element) && evaluate(n.right, s, element);
    case 'or':
      return evaluate(n.left, s, element) || evaluate(n.right, s, element);
    case 'not':
      return !evaluate(n.operand, s, element);
    case 'exists':
      return resolve(n.field, s, element).length > 0;
    case 'in': {
      const { textField, versionField } = fieldKind(n.field);
      return resolve(n.field, s, element).some((a) => n.values.some((v) => compare(a, v, textField, versionField) === 0));
    }
    case 'compare': {
      const { textField, versionField } = fieldKind(n.field);
      const values = resolve(n.field, s, element);
      if (n.op === '!=') return !values.some((a) => compare(a, n.value, textField, versionField) === 0);
      return values.some((a) => {
        const c = compare(a, n.value, textField, versionField);
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
