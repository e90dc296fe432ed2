// Human-friendly durations ("500ms", "1h30m") and byte sizes ("32mb") as they appear in the config,
// and percent-decoding that leaves a malformed escape as it is.

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const durationPart = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy

/**
 * Go-style durations (`500ms`, `30s`, `5m`, `1h30m`, `1.5s`) in milliseconds. A bare number means
 * seconds, so `default_timeout: 30` does what a YAML author expects. Returns undefined when invalid.
 */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined
  const text = value.trim()
  if (text === '') return undefined
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000
  durationPart.lastIndex = 0
  let total = 0
  while (durationPart.lastIndex < text.length) {
    const match = durationPart.exec(text)
    if (match === null) return undefined
    total += Number(match[1]) * (durationUnits[match[2] as string] as number)
  }
  return total
}

const sizeUnits: Record<string, number> = { '': 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** Byte sizes (`512kb`, `32mb`, or a plain number of bytes), binary multiples. Undefined when invalid. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(value.trim())
  if (match === null) return undefined
  const bytes = Math.floor(Number(match[1]) * (sizeUnits[(match[2] ?? '').toLowerCase()] as number))
  return bytes > 0 ? bytes : undefined
}

/** `decodeURIComponent`, or the text unchanged when it holds a malformed escape. */
export function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
