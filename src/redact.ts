// Redaction by value: every configured secret is replaced wherever it appears in text we emit.

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
