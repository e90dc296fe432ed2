// Config loading: file → YAML → `${VAR}` resolution → strict schema → cross-checks → frozen Config.

import { existsSync, readFileSync } from 'node:fs'
import { type Document, type ErrorCode, LineCounter, parseDocument, visit, type YAMLError } from 'yaml'
import { type ConfigFile, configSchema, formatIssue } from './config-schema.ts'
import { type Resolution, resolveEnvRefs } from './env-refs.ts'
import { otlpSecrets, type TelemetrySettings, telemetrySettings } from './otlp-config.ts'
import { headerSecrets, querySecrets } from './redact.ts'

type Env = Readonly<Record<string, string | undefined>>

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T

export type Config = DeepReadonly<
  Omit<ConfigFile, 'port'> & {
    port: number
    /** Where the config came from, for log lines. */
    source: string
    /** Every configured secret value, for redaction by value. */
    secrets: string[]
    /** OTLP export, from the environment. */
    telemetry: TelemetrySettings
  }
>

export class ConfigError extends Error {
  readonly problems: readonly string[]
  constructor(source: string, problems: string[]) {
    super(`invalid config ${source}:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

const defaultConfigPaths = ['./config.yaml', '/etc/ai-gateway/config.yaml'] as const

/** `--config`, else AI_GATEWAY_CONFIG, else the first default path that exists. */
export function findConfigPath(explicit: string | undefined, env: Env): string {
  if (explicit !== undefined) return explicit
  const fromEnv = env.AI_GATEWAY_CONFIG
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  const found = defaultConfigPaths.find((path) => existsSync(path))
  if (found === undefined) {
    throw new ConfigError('(none)', [
      `no config file: pass --config FILE, set AI_GATEWAY_CONFIG, or create ${defaultConfigPaths.join(' or ')}`,
    ])
  }
  return found
}

export function loadConfig(path: string, env: Env): Config {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(path, [`cannot read file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`])
  }
  return parseConfig(text, env, path)
}

export function parseConfig(text: string, env: Env, source = '(inline)'): Config {
  const resolved = resolveEnvRefs(readYaml(text, source), env)
  const unresolved = referenceProblems(resolved)
  if (unresolved.length > 0) throw new ConfigError(source, unresolved)

  const parsed = configSchema.safeParse(resolved.value)
  const problems = [
    ...(parsed.success ? [] : parsed.error.issues.map(formatIssue)),
    ...crossCheck(resolved.value),
  ]
  const port = resolvePort(parsed.success ? parsed.data.port : undefined, env, problems)
  if (parsed.success && clashes(parsed.data, port)) {
    problems.push(`metrics.port: ${port} is the gateway's own port (leave it out to serve /metrics there)`)
  }
  const telemetry = telemetrySettings(env, problems)
  if (!parsed.success || problems.length > 0) throw new ConfigError(source, problems)

  return deepFreeze({
    ...parsed.data,
    port,
    source,
    secrets: collectSecrets(parsed.data, env, telemetry),
    telemetry,
  })
}

// What each YAML problem is, in our words: the library's messages quote the source text (a tag, an escape,
// a token), and the text may be a key. The line and column say where.
const yamlProblems: Partial<Record<ErrorCode, string>> = {
  ALIAS_PROPS: 'an alias (*name) cannot have an anchor or a tag',
  BAD_ALIAS: 'a malformed alias or anchor (a plain value starting with * or & must be quoted)',
  BAD_DIRECTIVE: 'a malformed or unknown directive (a line starting with %)',
  BAD_DQ_ESCAPE: 'an invalid escape in a "double-quoted" value (\'single quotes\' keep a \\ as it is)',
  BAD_INDENT: 'bad indentation, or an unclosed [ or {',
  BAD_PROP_ORDER: 'an anchor or a tag before a - or ? indicator',
  BAD_SCALAR_START: 'a plain value cannot start with @, `, %, |, > or a comma: quote it',
  BLOCK_AS_IMPLICIT_KEY: 'a mapping where a value was expected (quote a value that holds ": ")',
  BLOCK_IN_FLOW: 'a block collection inside [ ] or { }',
  DUPLICATE_KEY: 'map keys must be unique',
  KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
  MISSING_CHAR: 'a missing character: a closing quote or bracket, a value after a key, or a space',
  MULTILINE_IMPLICIT_KEY:
    'a key must be on one line (check the indentation, or quote a value that holds ": ")',
  MULTIPLE_ANCHORS: 'a node can have at most one anchor',
  MULTIPLE_DOCS: 'more than one document (a line holding only --- or ...)',
  MULTIPLE_TAGS: 'a node can have at most one tag',
  NON_STRING_KEY: 'a key that is not a string',
  TAB_AS_INDENT: 'tabs are not allowed as indentation',
  TAG_RESOLVE_FAILED: 'an unknown or invalid tag (a plain value starting with ! must be quoted)',
  UNEXPECTED_TOKEN: 'unexpected text (quote a value that holds YAML punctuation)',
  BAD_COLLECTION_TYPE: 'a tag used on the wrong kind of collection',
}

/**
 * The YAML document as plain data. Every problem is reported by position and kind, never by quoting the
 * text: a key written unquoted is where the YAML goes wrong (`api_key: *Xk9…` is an alias, `&…` an
 * anchor, `!…` a tag), and no secret is known yet to redact it. Warnings count as problems: each one
 * means a value was read as something other than what it says (an unknown tag is dropped).
 */
function readYaml(text: string, source: string): unknown {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset)
    return `YAML line ${line}, column ${col}`
  }
  const describe = (e: YAMLError) => `${at(e.pos[0])}: ${yamlProblems[e.code] ?? 'invalid YAML'}`
  const problems = [...doc.errors, ...doc.warnings].map(describe)
  if (problems.length === 0) problems.push(...aliasProblems(doc, at))
  if (problems.length > 0) throw new ConfigError(source, problems)
  try {
    return doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    // An alias bomb (the library's limit), or anything else it throws: its message may quote the text.
    const kind = err instanceof ReferenceError ? 'too many aliases' : (err as Error).name
    throw new ConfigError(source, [`YAML: the document cannot be read (${kind})`])
  }
}

/**
 * Aliases that name no anchor before them (the library throws, quoting the name), or their own
 * ancestor (a cycle no config could mean), and anchors no alias uses on a scalar: each is most likely a
 * value that starts with `*` or `&` and was meant as text.
 */
function aliasProblems(doc: Document, at: (offset: number) => string): string[] {
  const problems: string[] = []
  const used = new Set<unknown>()
  visit(doc, {
    Alias(_key, alias, path) {
      const target = alias.resolve(doc)
      const where = at(alias.range?.[0] ?? 0)
      if (target === undefined) {
        problems.push(`${where}: a plain value cannot start with * (that makes it an alias): quote it`)
      } else if (path.includes(target)) {
        problems.push(`${where}: an alias inside the node it names`)
      }
      used.add(target)
    },
  })
  // On a scalar only: `&abc rest` or a bare `&abc` is text gone wrong; an unused anchor on a mapping or
  // a list is harmless, and may be left from an alias that was removed.
  visit(doc, {
    Scalar(_key, node) {
      if (node.anchor !== undefined && !used.has(node)) {
        // The line only: the node starts after its anchor, so its column would point past the `&`.
        const where = at(node.range?.[0] ?? 0).replace(/, column \d+$/, '')
        problems.push(`${where}: a plain value cannot start with & (that makes it an anchor): quote it`)
      }
    },
  })
  return problems
}

/** References that could not be resolved: each kind in one problem that lists them, a nameless one where it is. */
function referenceProblems({ nested, unsupported, unnamed, missing }: Resolution): string[] {
  const problems: string[] = []
  if (nested.length > 0) {
    const names = nested.map((name) => `\${${name}:-…}`).join(', ')
    problems.push(`a default cannot hold another \${…} reference: ${names}`)
  }
  if (unsupported.length > 0) {
    problems.push(
      `unsupported references (only \${VAR} and \${VAR:-default} work; write $\${ for a literal \${): ${unsupported.join(', ')}`,
    )
  }
  for (const path of unnamed) {
    problems.push(`${path}: a \${…} that is not a variable name (write $\${ for a literal \${)`)
  }
  if (missing.length > 0) problems.push(`missing environment variables: ${missing.join(', ')}`)
  return problems
}

/** The metrics server would listen where the gateway does. */
function clashes(file: ConfigFile, port: number): boolean {
  const { metrics } = file
  if (metrics.port === undefined || metrics.port === 0 || metrics.port !== port) return false
  return metrics.host === undefined || overlap(file.host, metrics.host)
}

/**
 * Two addresses one port cannot be had on at once: the same one, or one that covers the other. No host
 * and `::` are every interface, IPv4's and IPv6's alike; `0.0.0.0` is every IPv4 interface.
 */
function overlap(a: string | undefined, b: string | undefined): boolean {
  const everywhere = (host: string | undefined) => host === undefined || host === '::'
  const ipv4Anywhere = (host: string | undefined, other: string | undefined) =>
    host === '0.0.0.0' && other?.includes(':') !== true
  return a === b || everywhere(a) || everywhere(b) || ipv4Anywhere(a, b) || ipv4Anywhere(b, a)
}

function resolvePort(fromFile: number | undefined, env: Env, problems: string[]): number {
  if (fromFile !== undefined) return fromFile
  const fromEnv = env.PORT
  if (fromEnv === undefined || fromEnv === '') return 8080
  // Digits only, as `port: ${PORT}` takes them: Number() would read " " as 0 and "0x1f90" as 8080.
  const port = /^\d+$/.test(fromEnv) ? Number(fromEnv) : Number.NaN
  if (!Number.isInteger(port) || port > 65535) {
    problems.push(`port: environment variable PORT=${JSON.stringify(fromEnv)} is not a port number`)
  }
  return port
}

/**
 * Name uniqueness and step → provider references. Runs on the raw tree, tolerating shape errors,
 * so one `validate` run reports these alongside schema problems instead of after they are fixed.
 */
function crossCheck(raw: unknown): string[] {
  const problems: string[] = []
  const list = (key: string): Record<string, unknown>[] => {
    const value = (raw as Record<string, unknown> | null)?.[key]
    return Array.isArray(value) ? value.filter((v) => v !== null && typeof v === 'object') : []
  }
  const duplicates = (key: string, what: string): Set<unknown> => {
    const seen = new Set<unknown>()
    list(key).forEach((item, i) => {
      if (typeof item.name !== 'string') return
      if (seen.has(item.name)) problems.push(`${key}[${i}].name: duplicate ${what} "${item.name}"`)
      seen.add(item.name)
    })
    return seen
  }
  const providers = duplicates('providers', 'provider')
  duplicates('routes', 'route')
  list('routes').forEach((route, i) => {
    if (!Array.isArray(route.steps)) return
    route.steps.forEach((step: unknown, j: number) => {
      const name = (step as Record<string, unknown> | null)?.provider
      if (typeof name === 'string' && name.trim() !== '' && !providers.has(name)) {
        problems.push(`routes[${i}].steps[${j}].provider: unknown provider "${name}"`)
      }
    })
  })
  return problems
}

function collectSecrets(config: ConfigFile, env: Env, telemetry: TelemetrySettings): string[] {
  const values = [config.api_key, ...otlpSecrets(env, telemetry)]
  for (const provider of config.providers)
    values.push(
      provider.api_key,
      ...headerSecrets(provider.headers ?? {}),
      // As sent: the URL's own encoding of the query.
      ...querySecrets(new URL(provider.base_url).search),
    )
  return [...new Set(values.filter((v): v is string => typeof v === 'string' && v.length >= 4))]
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
