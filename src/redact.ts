// Redaction by value: every configured secret is replaced wherever it appears in text we emit.

const redactedMark = '[REDACTED]'

export type Redactor = (text: string) => string

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * One precompiled pattern over all secrets, in raw and JSON-escaped spelling (a log line is JSON, so a
 * secret holding `"` or `\` appears escaped there). Longest first, so a secret that contains another
 * is replaced whole.
 */
export function createRedactor(secrets: readonly string[]): Redactor {
  const spellings = new Set<string>()
  for (const secret of secrets) {
    spellings.add(secret)
    spellings.add(JSON.stringify(secret).slice(1, -1))
  }
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
