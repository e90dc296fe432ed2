// Redaction: every configured secret, by value, wherever it appears in text we emit; and the parts of a
// URL that can hold one, where a message quotes it before the secrets are known.

const redactedMark = '[REDACTED]'

export type Redactor = (text: string) => string

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** `<`, `>`, `&` and `'` as `\u` escapes, as Go's JSON encoder writes them, in either case of hex digit. */
const unicodeEscaped = (text: string, upper: boolean): string =>
  text.replace(/[<>&']/g, (c) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0')
    return `\\u${upper ? hex.toUpperCase() : hex}`
  })

/**
 * The ways a secret can be spelled in JSON text: raw, escaped as `JSON.stringify` escapes it (a log
 * line is JSON, so a secret holding `"` or `\` appears escaped there), and escaped as other encoders
 * write a provider's error body: `/` as `\/` (PHP, some Java), `<>&'` as `\u` escapes (Go).
 */
function spellingsOf(secret: string): string[] {
  const json = JSON.stringify(secret).slice(1, -1)
  const slashed = json.replaceAll('/', '\\/')
  const spellings = [secret, json, slashed]
  for (const text of [json, slashed]) spellings.push(unicodeEscaped(text, false), unicodeEscaped(text, true))
  return spellings
}

/**
 * One precompiled pattern over every spelling of every secret. Longest first, so a secret that
 * contains another is replaced whole.
 */
export function createRedactor(secrets: readonly string[]): Redactor {
  const spellings = new Set<string>()
  for (const secret of secrets) for (const spelling of spellingsOf(secret)) spellings.add(spelling)
  if (spellings.size === 0) return (text) => text
  const pattern = new RegExp(
    [...spellings]
      .sort((a, b) => b.length - a.length)
      .map(escapeRegExp)
      .join('|'),
    'g',
  )
  return (text) => text.replace(pattern, redactedMark)
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
