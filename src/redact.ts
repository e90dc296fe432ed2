// Redaction: every configured secret, by value, wherever it appears in text we emit; which configured
// values are secrets; and the parts of a URL that can hold one, where a message quotes it before the
// secrets are known.

import { safeDecode } from './units.ts'

const redactedMark = '[REDACTED]'

/**
 * Replaces every configured secret in a text. `reach` is the most characters one secret's spelling can
 * take: a text cut short may end in the first `reach - 1` of them, which no pattern can recognise.
 */
export type Redactor = ((text: string) => string) & { readonly reach?: number }

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')

/** `2b` → `2[bB]`: a hex escape in either case. */
const eitherCase = (hex: string): string =>
  hex.replace(/[a-f]/gi, (digit) => `[${digit.toLowerCase()}${digit.toUpperCase()}]`)

const jsonShortEscapes: Record<string, string> = { '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't' }

/**
 * The ways one character other than a letter or digit can be spelled in text we emit, and the longest.
 * Raw, or after one to three backslashes: JSON's `\"` and `\\`, PHP's and some Java's `\/`, and each
 * of those JSON-escaped once more (a log line quoting JSON). As a `\u` escape in either case of hex
 * digit: Go writes `<>&'` so, .NET's System.Text.Json `+` and more. Percent-encoded, per UTF-8 byte in
 * either case (`encodeURIComponent`, an echoed URL or form), and a space as `+`.
 */
function characterPattern(char: string): { pattern: string; longest: number } {
  const units = [...Array(char.length).keys()].map((i) => char.charCodeAt(i).toString(16).padStart(4, '0'))
  const bytes = [...Buffer.from(char, 'utf8')].map((b) => b.toString(16).padStart(2, '0'))
  const short = jsonShortEscapes[char]
  // Escapes before the raw form: at a secret's end, a raw `\\` or `%` would match the first character
  // of its escape and leave the rest of the spelling behind.
  const forms = [
    `\\\\{1,2}u${units.map(eitherCase).join('\\\\{1,2}u')}`,
    bytes.map((b) => `%${eitherCase(b)}`).join(''),
    `\\\\{0,3}${escapeRegExp(char)}`,
    ...(short === undefined ? [] : [`\\\\{1,2}${short}`]),
    ...(char === ' ' ? ['\\+'] : []),
  ]
  return {
    pattern: `(?:${forms.join('|')})`,
    longest: Math.max(3 + char.length, 7 * units.length, 3 * bytes.length),
  }
}

/** One secret's pattern: letters and digits as they are (no encoder changes them), the rest in any spelling. */
function secretPattern(secret: string): { pattern: string; longest: number } {
  // Per character, a backslash's spellings (one to four of them) and the next character's escape (a
  // backslash or three before it) can share out the same backslashes many ways: on a near miss the
  // pattern tries them all, exponentially in their number. Such a key is matched in whole spellings.
  if (secret.includes('\\')) return wholeSpellings(secret)
  let pattern = ''
  let longest = 0
  for (const char of secret) {
    if (/^[A-Za-z0-9]$/.test(char)) {
      pattern += char
      longest += 1
    } else {
      const one = characterPattern(char)
      pattern += one.pattern
      longest += one.longest
    }
  }
  return { pattern, longest }
}

/**
 * A key holding a backslash, spelled whole one way or another: raw, JSON-escaped once (also with `\/`)
 * and twice, with its backslashes as `\u005c`, percent-encoded in either case of hex digit.
 */
function wholeSpellings(secret: string): { pattern: string; longest: number } {
  const once = JSON.stringify(secret).slice(1, -1)
  // Well formed: a lone surrogate cannot be percent-encoded (it throws).
  const encoded = encodeURIComponent(secret.toWellFormed())
  const spellings = new Set([
    secret,
    once,
    once.replaceAll('/', '\\/'),
    JSON.stringify(once).slice(1, -1),
    secret.replaceAll('\\', '\\u005c'),
    secret.replaceAll('\\', '\\u005C'),
    encoded,
    encoded.replace(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase()),
  ])
  const longestFirst = [...spellings].sort((a, b) => b.length - a.length)
  return {
    pattern: `(?:${longestFirst.map(escapeRegExp).join('|')})`,
    longest: longestFirst[0]?.length ?? 0,
  }
}

/**
 * One precompiled pattern over every spelling of every secret. Longest first, so a secret that contains
 * another is replaced whole.
 */
export function createRedactor(secrets: readonly string[]): Redactor {
  const unique = [...new Set(secrets)].filter((secret) => secret !== '').sort((a, b) => b.length - a.length)
  if (unique.length === 0) return Object.assign((text: string) => text, { reach: 0 })
  const patterns = unique.map(secretPattern)
  const pattern = new RegExp(patterns.map((p) => p.pattern).join('|'), 'g')
  const reach = Math.max(...patterns.map((p) => p.longest))
  return Object.assign((text: string) => text.replace(pattern, redactedMark), { reach })
}

/**
 * A URL as a message may quote it, parsed or not: what can hold a key is masked, the user info (up to
 * the last `@`, where a URL that does not parse may still have meant it to end) and everything from
 * the query or fragment on, as in `https://…@host/v1?…`. The scheme, host, port and path stay, to
 * show what is wrong.
 */
export function maskUrl(text: string): string {
  const scheme = /^[a-z][a-z\d+.-]*:\/\//i.exec(text)?.[0] ?? ''
  let rest = text.slice(scheme.length)
  const at = rest.lastIndexOf('@')
  const tail = rest.search(/[?#]/)
  // `a?b@c` is a password holding `?`, or a query holding `@`: either way a secret may be on both
  // sides, so nothing but the scheme is shown.
  if (at !== -1 && tail !== -1 && tail < at) return `${scheme}…`
  if (tail !== -1) rest = `${rest.slice(0, tail + 1)}…`
  if (at !== -1) rest = `…@${rest.slice(at + 1)}`
  return scheme + rest
}

/**
 * Every URL-like word in a message masked as maskUrl masks one: a word holding `://` or `@`, or a `?`
 * after a `/`. For messages from code that quotes a URL it was given (the OTel SDK quotes an endpoint
 * variable as written, `id:token@host:4318` and all).
 */
export function maskUrls(text: string): string {
  return text.replace(/[^\s'"`<>()[\]{},\\]+/g, (word) =>
    word.includes('://') || word.includes('@') || /\/[^?]*\?/.test(word) ? maskUrl(word) : word,
  )
}

const sensitiveName = /authorization|key|token|secret|cookie|password/i

/**
 * Values of sensitive-looking headers (a token passed as a header): whole, and without an auth scheme
 * of any name (`Bearer`, `Basic`, `Token`, `Key` …), since a provider may echo the token alone.
 */
export function headerSecrets(headers: Readonly<Record<string, string>>): string[] {
  return Object.entries(headers)
    .filter(([name]) => sensitiveName.test(name))
    .flatMap(([, value]) => {
      const token = /^[A-Za-z][\w.-]*\s+(\S.*)$/.exec(value)?.[1]
      return token === undefined ? [value] : [value, token]
    })
}

/**
 * Values of sensitive-looking parameters in a query string (a key given Google's way, `?key=…`): as
 * written and decoded, since a provider may echo either.
 */
export function querySecrets(search: string): string[] {
  return search
    .replace(/^\?/, '')
    .split('&')
    .flatMap((pair) => {
      const [entry] = new URLSearchParams(pair)
      if (!pair.includes('=') || entry === undefined || !sensitiveName.test(entry[0])) return []
      return [pair.slice(pair.indexOf('=') + 1), entry[1]]
    })
}

/**
 * What in a URL, parsed or not, can be a credential: the user info as maskUrl sees it (up to the last
 * `@`), whole and its password alone (a user name is most often an instance id, too common a text to
 * redact), as written and decoded; and the values of sensitive-looking query parameters.
 */
export function urlSecrets(text: string | undefined): string[] {
  if (text === undefined) return []
  const rest = text.trim().replace(/^[a-z][a-z\d+.-]*:\/\//i, '')
  const at = rest.lastIndexOf('@')
  const userInfo = at === -1 ? [] : [rest.slice(0, at)]
  const passwords = userInfo.flatMap((info) =>
    info.includes(':') ? [info.slice(info.indexOf(':') + 1)] : [],
  )
  const query = rest.includes('?') ? rest.slice(rest.indexOf('?')).replace(/#.*$/, '') : ''
  const written = [...userInfo, ...passwords]
  return [...written, ...written.map(safeDecode), ...querySecrets(query)]
}
